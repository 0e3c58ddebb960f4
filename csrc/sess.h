/* Sessions, the UDP sockets they share, and the engine that schedules them:
 * the C side of gkcp's Python objects (kcp-go's sess.go, updater, readloop).
 * One engine per gevent hub; everything here runs on that hub's thread.
 * Time is passed in (ms, u32, wrapping); syscalls happen only in io.c. */
#ifndef GK_SESS_H
#define GK_SESS_H
#include <stdint.h>
#include "crypt.h"
#include "kcp.h"

typedef struct gk_engine gk_engine;
typedef struct gk_udp gk_udp;
typedef struct gk_sess gk_sess;

/* Everything a session is built with; a listener applies its copy to each
 * new session before that session's first packet is processed. */
typedef struct gk_config {
    int mtu;
    int sndwnd;
    int rcvwnd;
    int nodelay;
    int interval;
    int resend;
    int nc;
    int stream;
    int ack_nodelay;
    int write_delay;
    int data_shards;
    int parity_shards;
    uint32_t dead_link;        /* transmissions of one segment that end the session; 0 = never */
    uint32_t idle_timeout_ms;  /* silence from the peer that ends the session; 0 = never */
    /* Keepalive (0 = off, kcp-go's behaviour): after keepalive_ms without a
     * valid packet from the peer the session asks for its window (WASK, the
     * peer answers WINS on its next flush), again every keepalive_ms, and
     * ends (GK_ST_KEEPALIVE) once the silence reaches keepalive_timeout_ms.
     * An idle session is scheduled only for its next probe. */
    uint32_t keepalive_ms;
    uint32_t keepalive_timeout_ms;
} gk_config;

/* Longest duration (idle_timeout_ms, linger_ms) the core honours, about 24.8
 * days: times are u32 ms compared as wrapping differences, so a deadline
 * must stay less than 2^31 ms ahead.  Larger values are clamped to it. */
#define GK_DURATION_MAX_MS 0x7FFFFFFF

/* A listening socket's sessions start *unproven*: a packet from an unknown
 * address (a whole, well-formed KCP datagram) creates one, its data is kept
 * but not acknowledged, and the listener answers each datagram with one
 * window ask (WASK).  A later datagram from that address holding a window
 * tell (WINS), which kcp-go and gkcp send on their next flush, proves the
 * peer receives what is sent to it: only then is the session counted, put in
 * the backlog and announced (GK_EV_ACCEPT).  Unproven sessions are bounded
 * per socket (the oldest is evicted), asked again twice, and freed if
 * silent for GK_UNPROVEN_LIFETIME_MS. */
#ifndef GK_UNPROVEN_MAX /* the fuzzer builds with a small pool, to reach eviction */
#define GK_UNPROVEN_MAX 1024
#endif
#define GK_UNPROVEN_LIFETIME_MS 4000
#define GK_UNPROVEN_REASK_MS 1000

/* Event flags handed to Python after each entry point. */
#define GK_EV_READ   1   /* a reader that found nothing can now read */
#define GK_EV_WRITE  2   /* a writer that found the window full can now write */
#define GK_EV_ACCEPT 4   /* a new session on a listening socket (sess is valid) */
#define GK_EV_DEAD   8   /* the session ended: see gk_sess_status */
#define GK_EV_FREED  16  /* a lingering closed session is gone (sess is NULL) */

/* Why a session ended (gk_sess_status). */
#define GK_ST_OPEN      0
#define GK_ST_DEADLINK  1  /* a segment reached dead_link transmissions */
#define GK_ST_IDLE      2  /* nothing heard for idle_timeout_ms */
#define GK_ST_REPLACED  3  /* the peer's address started a new conversation */
#define GK_ST_KEEPALIVE 4  /* the peer answered no keepalive probe for keepalive_timeout_ms */
/* GK_ST_RESET: the peer forgot the conversation; twice in a row it
 * acknowledged less than it once had (a closed or restarted peer answering
 * from a fresh session of the same conv). */
#define GK_ST_RESET     5

typedef struct gk_event {
    uint32_t id;
    uint32_t flags;
    gk_sess *sess;   /* NULL once the session is freed */
} gk_event;

/* seed: 48 random bytes: 16 key the address hash (keeps chains short under
 * chosen source addresses), 32 seed the nonce generators. */
gk_engine *gk_engine_new(const uint8_t *seed);
/* Frees every socket and session of the engine (does not close fds). */
void gk_engine_free(gk_engine *eng);
/* Moves up to max pending events to out; returns how many. */
int gk_engine_take_events(gk_engine *eng, gk_event *out, int max);
/* Flushes every session that is due, frees drained or expired lingering
 * sessions, ends dead ones.  Returns ms until the next session is due
 * (GK_IDLE_MS when none is scheduled). */
uint32_t gk_engine_update(gk_engine *eng, uint32_t now);
#define GK_IDLE_MS 1000
/* What the caller should do after its calls into the engine, in one call
 * (the Python driver asks after every batch and every send):
 * GK_PENDING_WAKE (reported once): a session became due before the time the
 * last update returned, so run gk_engine_update sooner; GK_PENDING_EVENTS:
 * events wait for gk_engine_take_events, or a socket error for
 * gk_udp_take_error (a send may read the socket: see gk_sess_send). */
#define GK_PENDING_WAKE   1
#define GK_PENDING_EVENTS 2
int gk_engine_pending(gk_engine *eng);
/* For tests only (leak checks): sessions alive in the engine (open,
 * unaccepted and lingering). */
int gk_engine_sessions(const gk_engine *eng);

/* A UDP socket the caller opened (non-blocking).  listening != 0: sessions
 * are created by incoming packets (at most backlog proven ones waiting for
 * accept), and with crypt a replay filter (replay.h) drops authentic
 * datagrams seen before (InReplays).  crypt may be NULL (no crypto header);
 * it must outlive the socket.
 * batch: datagrams per recvmmsg/sendmmsg. */
gk_udp *gk_udp_new(gk_engine *eng, int fd, int listening, const gk_config *cfg,
                   const gk_crypt *crypt, int batch, int backlog);
/* Frees the socket's state and every session still on it. */
void gk_udp_free(gk_udp *udp);
/* Stop (listening = 0) creating sessions from unknown addresses; unproven
 * sessions are freed. */
void gk_udp_stop_listening(gk_udp *udp);
/* Use recvmmsg/sendmmsg (1, default) or recvfrom/sendto (0). */
void gk_udp_set_mmsg(gk_udp *udp, int on);
/* Reads and processes datagrams until the socket is drained (returns 0) or
 * max_batches batches were read (returns 1: call again after yielding).
 * Returns -errno on a socket error.  The tests' C and cffi drivers use it;
 * gkcp's reader uses gk_udp_read_held. */
int gk_udp_read(gk_udp *udp, uint32_t now, int max_batches);
/* gk_udp_read without the final flush: what input makes KCP send (ACKs,
 * data a freed window admits; kcp-go sends it from Input) waits, so that the
 * replies of the readers it woke carry those ACKs in their own packets (an
 * ACK then costs no datagram, system call and peer wake-up of its own on a
 * request/response path).  The caller must call gk_engine_flush soon after,
 * whatever happens. */
int gk_udp_read_held(gk_udp *udp, uint32_t now, int max_batches);
/* Makes the flushes input left waiting and writes every queued datagram. */
void gk_engine_flush(gk_engine *eng, uint32_t now);
/* The -errno a read made inside gk_sess_send met (0 if none), once. */
int gk_udp_take_error(gk_udp *udp);
/* Busy polling (the busy_poll option): polls the nfds sockets fds without
 * sleeping until one is readable (returns GK_SPIN_READABLE) or budget_us
 * microseconds have passed (GK_SPIN_NOTHING); GK_SPIN_PREEMPTED when the
 * thread lost its CPU meanwhile (two polls more than GK_SPIN_PREEMPT_US
 * apart: other work wants the CPU, and a spinner only delays it; a
 * scheduler's time slice is milliseconds, a hypervisor's hiccup on this VM
 * up to ~100 µs, which must not count); -errno on
 * a poll error, -EINVAL for nfds outside 1..GK_SPIN_MAX_FDS or a budget
 * above GK_SPIN_MAX_US.  The caller is about to sleep in its event loop: a
 * datagram that arrives within the budget is then read without the sleep
 * and wake-up, which costs tens of microseconds when the wake-up crosses
 * CPUs (on virtual machines especially).  The Python binding releases the
 * GIL meanwhile.  Implemented in io.c. */
#define GK_SPIN_MAX_FDS 64
#define GK_SPIN_MAX_US 10000
#define GK_SPIN_PREEMPT_US 500
#define GK_SPIN_NOTHING 0
#define GK_SPIN_READABLE 1
#define GK_SPIN_PREEMPTED 2
int gk_spin_readable(const int *fds, int nfds, uint32_t budget_us);
/* For tests only (bounds and leak checks): the sessions on this socket (any
 * state, unproven ones included), and the unproven ones of a listening
 * socket. */
int gk_udp_sessions(const gk_udp *udp);
int gk_udp_unproven(const gk_udp *udp);

/* A session to addr (a struct sockaddr of addrlen bytes) over udp.  It
 * takes datagrams from addr only: any other source is dropped and counted
 * (InWrongPeer), whether or not the socket is connected.
 * announce: send one window-tell segment at once, so that the peer's
 * listener creates the session before this side writes anything (KCP has no
 * handshake; servers that speak first need it). */
gk_sess *gk_udp_dial(gk_udp *udp, const void *addr, int addrlen, uint32_t conv, int announce,
                     uint32_t now);

uint32_t gk_sess_id(const gk_sess *s);
uint32_t gk_sess_conv(const gk_sess *s);
gk_udp *gk_sess_udp(const gk_sess *s);
int gk_sess_status(const gk_sess *s);
/* Copies the peer's struct sockaddr into addr; returns its length. */
int gk_sess_peer(const gk_sess *s, void *addr, int cap);
/* 1 once a valid KCP packet came from the peer (it has the same crypt and
 * key, and is alive): what a verified dial waits for.  The first
 * one posts GK_EV_READ, so a waiter wakes (a reader finding no data waits
 * again). */
int gk_sess_heard(const gk_sess *s);
/* Sends one window ask (WASK, carrying this side's real una) at once: a
 * dial's connect probe.  kcp-go and gkcp answer it (WINS, or a gkcp
 * listener's own ask while it proves the session). */
void gk_sess_ask(gk_sess *s, uint32_t now);
/* Applies cfg (all fields; idle_timeout_ms clamped to GK_DURATION_MAX_MS).  -1, nothing changed, if the mtu does not fit or
 * the change would alter the header room (FEC on/off): KCP has already cut
 * queued data to the old room. */
int gk_sess_configure(gk_sess *s, const gk_config *cfg);
void gk_sess_get_info(const gk_sess *s, gk_kcp_info *info);
/* Queues up to len bytes as the windows allow and flushes (unless write
 * delay).  If the socket was not read for an interval or more, reads it
 * first (events may follow, for any session of the socket).  Returns bytes taken (0: window full, a GK_EV_WRITE will follow),
 * or -status if the session has ended. */
int gk_sess_send(gk_sess *s, const uint8_t *buf, int len, uint32_t now);
/* Stream mode: as many bytes as are ready, up to len.  Message mode: one
 * message, or its next part if len is smaller.  0: nothing ready (a
 * GK_EV_READ will follow), or -status once the session has ended and
 * everything received was read. */
int gk_sess_recv(gk_sess *s, uint8_t *buf, int len, uint32_t now);
/* Bytes of the next read that are ready now (0 if none).  For the fuzz
 * harness only (tests/fuzz/fuzz_input.c checks a recv then returns data). */
int gk_sess_readable(const gk_sess *s);
/* Segments queued or in flight. */
int gk_sess_waitsnd(const gk_sess *s);
/* An accepted session leaves the backlog. */
void gk_sess_accepted(gk_sess *s);
/* Flushes once more; frees now (returns 1) if nothing is unacknowledged or
 * linger_ms is 0, else keeps retransmitting for up to linger_ms (clamped to
 * GK_DURATION_MAX_MS) and frees
 * later with a GK_EV_FREED event (returns 0).  The caller drops s either way. */
int gk_sess_close(gk_sess *s, uint32_t now, uint32_t linger_ms);

#endif
