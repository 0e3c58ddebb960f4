/* KCP ARQ state machine: the ikcp wire format with kcp-go 5.6.1's behaviour
 * (docs/wire.md §4, §7, §8).  Sans-I/O: no sockets, no clock.  The caller
 * passes the current time (ms, u32, wrapping) to every call that needs it and
 * receives finished packets through the output hook. */
#ifndef GK_KCP_H
#define GK_KCP_H
#include <stdint.h>

#define GK_KCP_CMD_PUSH 81
#define GK_KCP_CMD_ACK  82
#define GK_KCP_CMD_WASK 83
#define GK_KCP_CMD_WINS 84

typedef struct gk_kcp gk_kcp;

/* Called by flush for each packet it fills.  buf starts with the `reserved`
 * header bytes (content undefined, for the lower layers to fill), followed by
 * whole KCP segments; len counts both.  buf is the kcp's own scratch buffer:
 * the callee may write into it but must not keep it. */
typedef void (*gk_kcp_output_fn)(uint8_t *buf, int len, void *user);

/* Snapshot of a session's state, for stats and tests. */
typedef struct gk_kcp_info {
    uint32_t conv, mtu, mss, state;
    uint32_t snd_una, snd_nxt, rcv_nxt;
    uint32_t snd_wnd, rcv_wnd, rmt_wnd, cwnd, ssthresh;
    int32_t  rx_srtt, rx_rttvar, rx_rto, rx_minrto;
    uint32_t interval, nodelay, fastresend, nocwnd, stream, dead_link;
    uint32_t nsnd_que, nsnd_buf, nrcv_que, nrcv_buf;
    uint32_t xmit;          /* total retransmissions of this session */
    uint32_t max_seg_xmit;  /* most transmissions of any segment still in flight */
} gk_kcp_info;

/* Returns NULL on allocation failure.  Defaults as kcp-go NewKCP (docs/wire.md §7). */
gk_kcp *gk_kcp_create(uint32_t conv, gk_kcp_output_fn output, void *user);
void gk_kcp_release(gk_kcp *kcp);

/* Header room the lower layers need at the front of every packet (crypto 20,
 * FEC 8): mss = mtu - 24 - reserved.  Returns 0, or -1 if mss would be < 1. */
int gk_kcp_reserve(gk_kcp *kcp, int reserved);
/* Narrowest MTU gk_kcp_setmtu takes (kcp-go's), and the widest window: the
 * wire's wnd field is 16 bits. */
#define GK_KCP_MTU_MIN 50
#define GK_KCP_WND_MAX 65535

/* GK_KCP_MTU_MIN <= mtu <= GK_MTU_LIMIT and mss >= 1, else -1 and nothing
 * changes. */
int gk_kcp_setmtu(gk_kcp *kcp, int mtu);
/* kcp-go NoDelay: a negative argument leaves that setting unchanged;
 * interval clamped to 10..5000. */
void gk_kcp_nodelay(gk_kcp *kcp, int nodelay, int interval, int resend, int nc);
/* Values <= 0 leave that window unchanged; both are capped at 65535 (the
 * wire's wnd field).  No floor, as in kcp-go (ikcp raises rcv_wnd to 128):
 * a message of more fragments than rcv_wnd can then never be read, which is
 * why sessions send one message per segment, as kcp-go's Write does. */
void gk_kcp_wndsize(gk_kcp *kcp, int sndwnd, int rcvwnd);
void gk_kcp_set_stream(gk_kcp *kcp, int stream);
void gk_kcp_set_dead_link(gk_kcp *kcp, uint32_t dead_link);
/* For tests (wrapping sequence numbers): on a kcp that has sent, queued and
 * received nothing, start snd_una, snd_nxt and rcv_nxt at sn.  Returns 0, or
 * -1 if the kcp is not fresh. */
int gk_kcp_set_next_sn(gk_kcp *kcp, uint32_t sn);

/* Queue application bytes.  Message mode: split into ceil(len/mss) fragments
 * numbered by frg (-2 if more than 255).  Stream mode: first top up the last
 * unsent segment to mss.  Returns 0, or < 0 on error (-1 empty buffer, -3 out
 * of memory; nothing is queued then).  Never flushes. */
int gk_kcp_send(gk_kcp *kcp, const uint8_t *buf, int len);
/* Size of the next complete message, or -1 if none is complete yet. */
int gk_kcp_peeksize(const gk_kcp *kcp);
/* Copy the next complete message into buf: returns its size, -1 if none,
 * -3 if len < its size (nothing consumed). */
int gk_kcp_recv(gk_kcp *kcp, uint8_t *buf, int len);

/* Feed one packet's KCP bytes (everything after the FEC header).  regular = 0
 * for FEC-recovered data (no RTT or remote-window update).  Flushes inside as
 * kcp-go does (on freed send window, or ACKs only with ack_nodelay).
 * Returns 0; -1 conv mismatch on the first segment; -2 truncated or bad len;
 * -3 unknown cmd (segments before the bad one stay applied). */
int gk_kcp_input(gk_kcp *kcp, const uint8_t *data, int size, int regular,
                 int ack_nodelay, uint32_t current);
/* on != 0: the flush input makes when it frees send window (ACKs and the
 * data the window now admits) is left to the caller, who sees it in
 * gk_kcp_flush_held and calls gk_kcp_flush soon, or lets the next flush
 * (an application write) carry those ACKs in the same packet. */
void gk_kcp_hold_input_flush(gk_kcp *kcp, int on);
int gk_kcp_flush_held(const gk_kcp *kcp);
/* Checks a whole datagram's KCP bytes without any state, more strictly than
 * input: every segment has a complete header, a known cmd and a len that
 * fits, all segments carry the same conv, and no bytes are left over (kcp-go
 * never sends any).  Returns the commands present as a bit mask (bit
 * cmd - GK_KCP_CMD_PUSH, e.g. GK_KCP_HAS_WINS) and sets *conv, or returns -1
 * (nothing set) for a malformed datagram. */
int gk_kcp_validate(const uint8_t *data, int size, uint32_t *conv);
#define GK_KCP_HAS_WINS 8
/* Emits one packet at once holding a single window-ask (WASK) segment with
 * una 0 and no ACKs: a probe that makes the peer answer with a window tell
 * (WINS) on its next flush, acknowledging nothing on the way. */
void gk_kcp_ask_window_now(gk_kcp *kcp);
/* The same probe on a live conversation: una is this side's receive
 * position, as in every other segment (a gkcp peer takes a una going
 * backwards for a reset, GK_ST_RESET). */
void gk_kcp_ask_window_live(gk_kcp *kcp);
/* kcp-go flush: ACKs, probes, new and due segments.  ack_only sends only
 * pending ACKs.  Returns ms until this session next needs a flush. */
uint32_t gk_kcp_flush(gk_kcp *kcp, int ack_only, uint32_t current);
/* Segments queued or in flight. */
int gk_kcp_waitsnd(const gk_kcp *kcp);
/* Cheap state for the session layer's per-call checks (gk_kcp_get_info
 * walks the send buffer). */
uint32_t gk_kcp_send_window(const gk_kcp *kcp);   /* min(snd_wnd, remote window) */
uint32_t gk_kcp_mss(const gk_kcp *kcp);
uint32_t gk_kcp_interval(const gk_kcp *kcp);
int gk_kcp_rcv_full(const gk_kcp *kcp);           /* receive queue holds rcv_wnd segments */
int gk_kcp_busy(const gk_kcp *kcp);               /* anything queued, in flight, to ACK or to probe
                                                    (a zero remote window included) */
int gk_kcp_dead(const gk_kcp *kcp);               /* a segment reached dead_link transmissions */
/* Make the next flush send a window-tell (WINS) segment. */
void gk_kcp_tell_window(gk_kcp *kcp);
/* 1 if the next flush will send a window tell (the peer asked, or the
 * receive queue drained). */
int gk_kcp_telling_window(const gk_kcp *kcp);
void gk_kcp_get_info(const gk_kcp *kcp, gk_kcp_info *info);

#endif
