/* KCP ARQ core with kcp-go 5.6.1's behaviour (docs/wire.md §4, §5, §7, §8).
 *
 * Layout choices, all for windows of thousands of segments:
 * - The send buffer always covers exactly sn = snd_una .. snd_nxt-1, so it is
 *   a power-of-two ring of segment pointers indexed by sn: a selective ACK is
 *   O(1) and frees the segment at once, leaving NULL as kcp-go's "acked" mark.
 * - The receive buffer holds sn = rcv_nxt .. rcv_nxt+cap-1, so it is a ring
 *   indexed by sn too: out-of-order insertion and duplicate detection are O(1).
 * - Fast-ACK counting is done once per input packet over all its ACKs (see
 *   apply_fastacks) instead of one walk of the send buffer per ACK.
 * - The send and receive queues are singly linked lists with a tail pointer. */
#include "kcp.h"
#include "bytes.h"
#include "common.h"
#include "snmp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    RTO_NODELAY_MIN = 30,
    RTO_NORMAL_MIN = 100,
    RTO_INITIAL = 200,
    RTO_CEILING = 60000,
    WND_SND_INITIAL = 32,
    WND_RCV_INITIAL = 32,
    WND_CEILING = GK_KCP_WND_MAX,
    MTU_INITIAL = 1400,
    MTU_LOWEST = GK_KCP_MTU_MIN,
    MTU_HIGHEST = GK_MTU_LIMIT,
    OVERHEAD = GK_KCP_OVERHEAD,
    INTERVAL_INITIAL = 100,
    DEAD_LINK_INITIAL = 20,
    SSTHRESH_INITIAL = 2,
    SSTHRESH_FLOOR = 2,
    PROBE_FIRST = 7000,
    PROBE_CEILING = 120000,
    ASK_SEND = 1,
    ASK_TELL = 2,
    MAX_FRAGMENTS = 255,
    /* ACKs of one packet gathered before fast-ACK counting; a 1500-byte
     * packet holds at most 62 segments */
    ACK_BATCH = 64
};

typedef struct gk_seg {
    struct gk_seg *next;
    uint32_t sn, ts, resendts, rto, xmit, fastack;
    uint32_t len, cap;
    uint8_t frg;
    uint8_t data[];
} gk_seg;

typedef struct {
    gk_seg *head, *tail;
    uint32_t count;
} seg_list;

typedef struct {
    uint32_t sn, ts;
} ack_item;

struct gk_kcp {
    uint32_t conv, mtu, mss, state, reserved;
    uint32_t snd_una, snd_nxt, rcv_nxt;
    uint32_t snd_wnd, rcv_wnd, rmt_wnd, cwnd, ssthresh, incr;
    int32_t rx_srtt, rx_rttvar;
    uint32_t rx_rto, rx_minrto;
    uint32_t interval, nodelay, nocwnd, stream, dead_link;
    int32_t fastresend;
    uint32_t probe, ts_probe, probe_wait;
    uint32_t xmit_total;
    uint8_t hold_input_flush;  /* see gk_kcp_hold_input_flush */
    uint8_t flush_held;        /* input freed window space; the flush waits for the caller */

    seg_list snd_queue, rcv_queue;
    gk_seg **snd_ring;
    uint32_t snd_mask;
    gk_seg **rcv_ring;
    uint32_t rcv_mask, nrcv_buf;

    ack_item *acks;
    uint32_t nacks, acks_cap;

    uint8_t *buffer;
    uint32_t buffer_cap;
    /* largest payload of any segment made so far: a later setmtu or reserve
     * may shrink mss below it, and flush must still have room to send it */
    uint32_t max_seg_len;

    gk_kcp_output_fn output;
    void *user;
};

/* Wrapping difference a - b as a signed 32-bit value, without relying on
 * implementation-defined narrowing. */
static inline int32_t sdiff(uint32_t a, uint32_t b)
{
    uint32_t d = a - b;
    return d <= (uint32_t)INT32_MAX ? (int32_t)d : -(int32_t)~d - 1;
}

/* Arithmetic right shift (floor division by 2^n), as Go's >> on signed. */
static inline int64_t asr(int64_t v, unsigned n)
{
    return v >= 0 ? v >> n : -((-v - 1) >> n) - 1;
}

static inline uint32_t umin(uint32_t a, uint32_t b) { return a < b ? a : b; }
static inline uint32_t umax(uint32_t a, uint32_t b) { return a > b ? a : b; }

static gk_seg *seg_new(uint32_t cap)
{
    gk_seg *s = malloc(sizeof(gk_seg) + cap);
    if (s) {
        memset(s, 0, sizeof(gk_seg));
        s->cap = cap;
    }
    return s;
}

static void list_push(seg_list *l, gk_seg *s)
{
    s->next = NULL;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->count++;
}

static gk_seg *list_pop(seg_list *l)
{
    gk_seg *s = l->head;
    if (s) {
        l->head = s->next;
        if (!l->head)
            l->tail = NULL;
        l->count--;
    }
    return s;
}

static void list_free(seg_list *l)
{
    gk_seg *s;
    while ((s = list_pop(l)) != NULL)
        free(s);
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t c = 1;
    while (c < n)
        c <<= 1;
    return c;
}

/* Room in the send ring for `need` consecutive sequence numbers. */
static int snd_ring_reserve(gk_kcp *k, uint32_t need)
{
    uint32_t cap = k->snd_mask + 1;
    if (need <= cap)
        return 0;
    uint32_t ncap = pow2_at_least(need);
    gk_seg **ring = calloc(ncap, sizeof(*ring));
    if (!ring)
        return -1;
    for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++)
        ring[sn & (ncap - 1)] = k->snd_ring[sn & k->snd_mask];
    free(k->snd_ring);
    k->snd_ring = ring;
    k->snd_mask = ncap - 1;
    return 0;
}

/* Every buffered receive segment has rcv_nxt <= sn < rcv_nxt + old capacity,
 * so re-homing them by sn keeps them unique in the larger ring. */
static int rcv_ring_reserve(gk_kcp *k, uint32_t wnd)
{
    uint32_t cap = k->rcv_mask + 1;
    if (wnd <= cap)
        return 0;
    uint32_t ncap = pow2_at_least(wnd);
    gk_seg **ring = calloc(ncap, sizeof(*ring));
    if (!ring)
        return -1;
    for (uint32_t i = 0; i < cap; i++) {
        gk_seg *s = k->rcv_ring[i];
        if (s)
            ring[s->sn & (ncap - 1)] = s;
    }
    free(k->rcv_ring);
    k->rcv_ring = ring;
    k->rcv_mask = ncap - 1;
    return 0;
}

static int buffer_reserve(gk_kcp *k, uint32_t mtu, uint32_t reserved, uint32_t seg_len)
{
    uint32_t need = umax(mtu, reserved + OVERHEAD + seg_len);
    if (need <= k->buffer_cap)
        return 0;
    uint8_t *b = malloc(need);
    if (!b)
        return -1;
    free(k->buffer);
    k->buffer = b;
    k->buffer_cap = need;
    return 0;
}

gk_kcp *gk_kcp_create(uint32_t conv, gk_kcp_output_fn output, void *user)
{
    gk_kcp *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->conv = conv;
    k->output = output;
    k->user = user;
    k->mtu = MTU_INITIAL;
    k->mss = MTU_INITIAL - OVERHEAD;
    k->snd_wnd = WND_SND_INITIAL;
    k->rcv_wnd = WND_RCV_INITIAL;
    k->rmt_wnd = WND_RCV_INITIAL;
    k->rx_rto = RTO_INITIAL;
    k->rx_minrto = RTO_NORMAL_MIN;
    k->interval = INTERVAL_INITIAL;
    k->ssthresh = SSTHRESH_INITIAL;
    k->dead_link = DEAD_LINK_INITIAL;
    k->snd_mask = WND_SND_INITIAL - 1;
    k->rcv_mask = WND_RCV_INITIAL - 1;
    k->snd_ring = calloc(WND_SND_INITIAL, sizeof(gk_seg *));
    k->rcv_ring = calloc(WND_RCV_INITIAL, sizeof(gk_seg *));
    k->acks_cap = 64;
    k->acks = malloc(k->acks_cap * sizeof(ack_item));
    if (!k->snd_ring || !k->rcv_ring || !k->acks || buffer_reserve(k, k->mtu, 0, 0)) {
        gk_kcp_release(k);
        return NULL;
    }
    return k;
}

void gk_kcp_release(gk_kcp *k)
{
    if (!k)
        return;
    list_free(&k->snd_queue);
    list_free(&k->rcv_queue);
    if (k->snd_ring)
        for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++)
            free(k->snd_ring[sn & k->snd_mask]);
    if (k->rcv_ring)
        for (uint32_t i = 0; i <= k->rcv_mask; i++)
            free(k->rcv_ring[i]);
    free(k->snd_ring);
    free(k->rcv_ring);
    free(k->acks);
    free(k->buffer);
    free(k);
}

int gk_kcp_reserve(gk_kcp *k, int reserved)
{
    if (reserved < 0 || (uint32_t)reserved + OVERHEAD >= k->mtu)
        return -1;
    if (buffer_reserve(k, k->mtu, (uint32_t)reserved, k->max_seg_len))
        return -1;
    k->reserved = (uint32_t)reserved;
    k->mss = k->mtu - OVERHEAD - k->reserved;
    return 0;
}

int gk_kcp_setmtu(gk_kcp *k, int mtu)
{
    if (mtu < MTU_LOWEST || mtu > MTU_HIGHEST || k->reserved + OVERHEAD >= (uint32_t)mtu)
        return -1;
    /* the buffer only ever grows: shrinking would buy nothing and could fail */
    if (buffer_reserve(k, (uint32_t)mtu, k->reserved, k->max_seg_len))
        return -1;
    k->mtu = (uint32_t)mtu;
    k->mss = k->mtu - OVERHEAD - k->reserved;
    return 0;
}

void gk_kcp_nodelay(gk_kcp *k, int nodelay, int interval, int resend, int nc)
{
    if (nodelay >= 0) {
        k->nodelay = (uint32_t)nodelay;
        k->rx_minrto = nodelay ? RTO_NODELAY_MIN : RTO_NORMAL_MIN;
    }
    if (interval >= 0) {
        if (interval > 5000)
            interval = 5000;
        else if (interval < 10)
            interval = 10;
        k->interval = (uint32_t)interval;
    }
    if (resend >= 0)
        k->fastresend = resend;
    if (nc >= 0)
        k->nocwnd = (uint32_t)nc;
}

void gk_kcp_wndsize(gk_kcp *k, int sndwnd, int rcvwnd)
{
    if (sndwnd > 0)
        k->snd_wnd = umin((uint32_t)sndwnd, WND_CEILING);
    if (rcvwnd > 0) {
        uint32_t w = umin((uint32_t)rcvwnd, WND_CEILING);
        if (rcv_ring_reserve(k, w) == 0)
            k->rcv_wnd = w;
    }
}

void gk_kcp_set_stream(gk_kcp *k, int stream) { k->stream = stream != 0; }

void gk_kcp_set_dead_link(gk_kcp *k, uint32_t dead_link) { k->dead_link = dead_link; }

int gk_kcp_set_next_sn(gk_kcp *k, uint32_t sn)
{
    if (k->snd_nxt != k->snd_una || k->snd_queue.count || k->nrcv_buf || k->rcv_queue.count)
        return -1;
    k->snd_una = k->snd_nxt = k->rcv_nxt = sn;
    return 0;
}

int gk_kcp_send(gk_kcp *k, const uint8_t *buf, int len)
{
    if (len <= 0 || !buf)
        return -1;
    uint32_t rest = (uint32_t)len;
    uint32_t topup = 0;
    gk_seg *last = k->snd_queue.tail;
    if (k->stream && last) {
        uint32_t limit = umin(k->mss, last->cap);
        if (last->len < limit)
            topup = umin(limit - last->len, rest);
    }
    rest -= topup;

    /* Build the new segments aside so a refusal leaves the queue untouched. */
    seg_list fresh = {NULL, NULL, 0};
    if (rest) {
        uint32_t count = (rest + k->mss - 1) / k->mss;
        if (!k->stream && count > MAX_FRAGMENTS)
            return -2;
        if (buffer_reserve(k, k->mtu, k->reserved, umin(rest, k->mss)))
            return -3;
        const uint8_t *p = buf + topup;
        for (uint32_t i = 0; i < count; i++) {
            uint32_t size = umin(rest, k->mss);
            /* stream segments keep room to be topped up by later sends */
            gk_seg *s = seg_new(k->stream ? k->mss : size);
            if (!s) {
                list_free(&fresh);
                return -3;
            }
            memcpy(s->data, p, size);
            s->len = size;
            s->frg = k->stream ? 0 : (uint8_t)(count - i - 1);
            list_push(&fresh, s);
            p += size;
            rest -= size;
        }
        k->max_seg_len = umax(k->max_seg_len, umin((uint32_t)len - topup, k->mss));
    }
    if (topup) {
        memcpy(last->data + last->len, buf, topup);
        last->len += topup;
        k->max_seg_len = umax(k->max_seg_len, last->len);
    }
    if (fresh.head) {
        if (k->snd_queue.tail)
            k->snd_queue.tail->next = fresh.head;
        else
            k->snd_queue.head = fresh.head;
        k->snd_queue.tail = fresh.tail;
        k->snd_queue.count += fresh.count;
    }
    return 0;
}

/* As kcp-go PeekSize: the first segment's frg says how many must be queued;
 * the message then runs to the first segment with frg 0. */
int gk_kcp_peeksize(const gk_kcp *k)
{
    const gk_seg *s = k->rcv_queue.head;
    if (!s)
        return -1;
    if (s->frg == 0)
        return (int)s->len;
    if (k->rcv_queue.count < (uint32_t)s->frg + 1)
        return -1;
    uint32_t total = 0;
    for (; s; s = s->next) {
        total += s->len;
        if (s->frg == 0)
            break;
    }
    return (int)total;
}

/* Move the in-order run at the front of the receive ring to the queue, while
 * the queue is below the receive window. */
static void rcv_deliver(gk_kcp *k)
{
    while (k->rcv_queue.count < k->rcv_wnd) {
        gk_seg **slot = &k->rcv_ring[k->rcv_nxt & k->rcv_mask];
        if (!*slot)
            break;
        list_push(&k->rcv_queue, *slot);
        *slot = NULL;
        k->nrcv_buf--;
        k->rcv_nxt++;
    }
}

int gk_kcp_recv(gk_kcp *k, uint8_t *buf, int len)
{
    int size = gk_kcp_peeksize(k);
    if (size < 0)
        return -1;
    if (size > len)
        return -3;
    int was_full = k->rcv_queue.count >= k->rcv_wnd;
    gk_seg *s;
    uint32_t off = 0;
    while ((s = list_pop(&k->rcv_queue)) != NULL) {
        uint8_t frg = s->frg;
        if (s->len) {
            memcpy(buf + off, s->data, s->len);
            off += s->len;
        }
        free(s);
        if (frg == 0)
            break;
    }
    rcv_deliver(k);
    /* the peer saw wnd 0 and waits for a probe: tell it at once */
    if (was_full && k->rcv_queue.count < k->rcv_wnd)
        k->probe |= ASK_TELL;
    return size;
}

int gk_kcp_waitsnd(const gk_kcp *k)
{
    return (int)(k->snd_nxt - k->snd_una + k->snd_queue.count);
}

uint32_t gk_kcp_send_window(const gk_kcp *k) { return umin(k->snd_wnd, k->rmt_wnd); }
uint32_t gk_kcp_mss(const gk_kcp *k) { return k->mss; }
uint32_t gk_kcp_interval(const gk_kcp *k) { return k->interval; }
int gk_kcp_rcv_full(const gk_kcp *k) { return k->rcv_queue.count >= k->rcv_wnd; }
int gk_kcp_dead(const gk_kcp *k) { return k->state != 0; }
void gk_kcp_tell_window(gk_kcp *k) { k->probe |= ASK_TELL; }
int gk_kcp_telling_window(const gk_kcp *k) { return (k->probe & ASK_TELL) != 0; }

int gk_kcp_busy(const gk_kcp *k)
{
    /* A zero remote window is work too: only flush's window probe can learn
     * that it opened if the peer's window update was lost. */
    return k->snd_queue.count || k->snd_nxt != k->snd_una || k->nacks || k->probe || k->rmt_wnd == 0;
}

void gk_kcp_get_info(const gk_kcp *k, gk_kcp_info *info)
{
    uint32_t most = 0;
    for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++) {
        const gk_seg *s = k->snd_ring[sn & k->snd_mask];
        if (s && s->xmit > most)
            most = s->xmit;
    }
    info->conv = k->conv;
    info->mtu = k->mtu;
    info->mss = k->mss;
    info->state = k->state;
    info->snd_una = k->snd_una;
    info->snd_nxt = k->snd_nxt;
    info->rcv_nxt = k->rcv_nxt;
    info->snd_wnd = k->snd_wnd;
    info->rcv_wnd = k->rcv_wnd;
    info->rmt_wnd = k->rmt_wnd;
    info->cwnd = k->cwnd;
    info->ssthresh = k->ssthresh;
    info->rx_srtt = k->rx_srtt;
    info->rx_rttvar = k->rx_rttvar;
    info->rx_rto = (int32_t)k->rx_rto;
    info->rx_minrto = (int32_t)k->rx_minrto;
    info->interval = k->interval;
    info->nodelay = k->nodelay;
    info->fastresend = (uint32_t)k->fastresend;
    info->nocwnd = k->nocwnd;
    info->stream = k->stream;
    info->dead_link = k->dead_link;
    info->nsnd_que = k->snd_queue.count;
    info->nsnd_buf = k->snd_nxt - k->snd_una;
    info->nrcv_que = k->rcv_queue.count;
    info->nrcv_buf = k->nrcv_buf;
    info->xmit = k->xmit_total;
    info->max_seg_xmit = most;
}

/* ---- input ---- */

int gk_kcp_validate(const uint8_t *data, int size, uint32_t *conv)
{
    if (!data || size < OVERHEAD)
        return -1;
    const uint32_t first = gk_get32le(data);
    const uint8_t *p = data;
    uint32_t left = (uint32_t)size;
    int cmds = 0;
    while (left) {
        if (left < OVERHEAD || gk_get32le(p) != first)
            return -1;
        uint8_t cmd = p[4];
        uint32_t len = gk_get32le(p + 20);
        if (cmd < GK_KCP_CMD_PUSH || cmd > GK_KCP_CMD_WINS || len > left - OVERHEAD)
            return -1;
        cmds |= 1 << (cmd - GK_KCP_CMD_PUSH);
        p += OVERHEAD + len;
        left -= OVERHEAD + len;
    }
    *conv = first;
    return cmds;
}

/* Removes every segment below una; returns how many left the send buffer,
 * selectively ACKed ones included (they still held a slot). */
static uint32_t drop_below(gk_kcp *k, uint32_t una)
{
    uint32_t n = 0;
    while (k->snd_una != k->snd_nxt && sdiff(una, k->snd_una) > 0) {
        gk_seg **slot = &k->snd_ring[k->snd_una & k->snd_mask];
        free(*slot);
        *slot = NULL;
        k->snd_una++;
        n++;
    }
    return n;
}

static void mark_acked(gk_kcp *k, uint32_t sn)
{
    if (sdiff(sn, k->snd_una) < 0 || sdiff(sn, k->snd_nxt) >= 0)
        return;
    gk_seg **slot = &k->snd_ring[sn & k->snd_mask];
    free(*slot);
    *slot = NULL;
}

/* kcp-go's conservative fast ACK: an ACK for sn counts towards every older
 * segment (seg.sn < sn) that was last sent no later than the ACKed one
 * (seg.ts <= ts).  Doing it per packet gives each segment the same total as
 * kcp-go's per-ACK walk: segments dropped by a later una in the packet would
 * have been the only ones to differ.
 *
 * Walk the segments from the highest ACKed sn down, admitting each ACK into
 * a ts-sorted set once the walk is below its sn, and count the set's members
 * with ts >= seg.ts by binary search.  ts are compared relative to `ref`,
 * which is exact while every value is within 2^30 of it; rare segments
 * outside that band are counted one by one. */
static void apply_fastacks(gk_kcp *k, ack_item *acks, uint32_t n)
{
    uint32_t keep = 0, top = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (sdiff(acks[i].sn, k->snd_una) <= 0 || sdiff(acks[i].sn, k->snd_nxt) >= 0)
            continue;
        uint32_t off = acks[i].sn - k->snd_una;
        top = umax(top, off);
        acks[keep++] = acks[i];
    }
    if (!keep)
        return;
    /* insertion sort by sn offset, descending */
    for (uint32_t i = 1; i < keep; i++) {
        ack_item a = acks[i];
        uint32_t j = i;
        while (j > 0 && acks[j - 1].sn - k->snd_una < a.sn - k->snd_una) {
            acks[j] = acks[j - 1];
            j--;
        }
        acks[j] = a;
    }
    const uint32_t ref = acks[0].ts;
    const int32_t band = 1 << 30;
    int32_t key[ACK_BATCH];
    uint32_t raw[ACK_BATCH];
    uint32_t nactive = 0, next = 0, exact = 1;
    for (uint32_t i = 0; i < keep; i++)
        if (sdiff(acks[i].ts, ref) > band || sdiff(acks[i].ts, ref) < -band)
            exact = 0;

    for (uint32_t off = top; off-- > 0;) {
        while (next < keep && acks[next].sn - k->snd_una > off) {
            int32_t kk = sdiff(acks[next].ts, ref);
            uint32_t j = nactive++;
            while (j > 0 && key[j - 1] > kk) {
                key[j] = key[j - 1];
                raw[j] = raw[j - 1];
                j--;
            }
            key[j] = kk;
            raw[j] = acks[next].ts;
            next++;
        }
        gk_seg *s = k->snd_ring[(k->snd_una + off) & k->snd_mask];
        if (!s)
            continue;
        int32_t sk = sdiff(s->ts, ref);
        if (exact && sk >= -band && sk <= band) {
            uint32_t lo = 0, hi = nactive;
            while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                if (key[mid] < sk)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            s->fastack += nactive - lo;
        } else {
            for (uint32_t j = 0; j < nactive; j++)
                if (sdiff(s->ts, raw[j]) <= 0)
                    s->fastack++;
        }
    }
}

static void ack_push(gk_kcp *k, uint32_t sn, uint32_t ts)
{
    if (k->nacks == k->acks_cap) {
        ack_item *a = realloc(k->acks, 2 * k->acks_cap * sizeof(*a));
        if (!a)
            return; /* unACKed data is simply sent again by the peer */
        k->acks = a;
        k->acks_cap *= 2;
    }
    k->acks[k->nacks].sn = sn;
    k->acks[k->nacks].ts = ts;
    k->nacks++;
}

/* Returns 1 for a duplicate, 0 if stored, -1 if out of memory. */
static int store_push(gk_kcp *k, uint32_t sn, uint8_t frg, const uint8_t *data, uint32_t len)
{
    gk_seg **slot = &k->rcv_ring[sn & k->rcv_mask];
    if (*slot)
        return 1;
    gk_seg *s = seg_new(len);
    if (!s)
        return -1;
    s->sn = sn;
    s->frg = frg;
    s->len = len;
    if (len)
        memcpy(s->data, data, len);
    *slot = s;
    k->nrcv_buf++;
    return 0;
}

static void update_rtt(gk_kcp *k, int32_t rtt)
{
    if (k->rx_srtt == 0) {
        k->rx_srtt = rtt;
        k->rx_rttvar = rtt / 2;
    } else {
        int64_t srtt = k->rx_srtt, var = k->rx_rttvar;
        int64_t delta = (int64_t)rtt - srtt;
        srtt += asr(delta, 3);
        if (delta < 0)
            delta = -delta;
        /* a sample below the expected range gets 1/8 of the usual weight */
        if (rtt < srtt - var)
            var += asr(delta - var, 5);
        else
            var += asr(delta - var, 2);
        k->rx_srtt = (int32_t)srtt;
        k->rx_rttvar = (int32_t)var;
    }
    uint32_t rto = (uint32_t)k->rx_srtt + umax(k->interval, (uint32_t)k->rx_rttvar << 2);
    k->rx_rto = umin(umax(k->rx_minrto, rto), RTO_CEILING);
}

static void grow_cwnd(gk_kcp *k)
{
    if (k->cwnd >= k->rmt_wnd)
        return;
    uint32_t mss = k->mss;
    if (k->cwnd < k->ssthresh) {
        k->cwnd++;
        k->incr += mss;
    } else {
        if (k->incr < mss)
            k->incr = mss;
        k->incr += (mss * mss) / k->incr + mss / 16;
        if ((k->cwnd + 1) * mss <= k->incr)
            k->cwnd = (k->incr + mss - 1) / mss;
    }
    if (k->cwnd > k->rmt_wnd) {
        k->cwnd = k->rmt_wnd;
        k->incr = k->rmt_wnd * mss;
    }
}

int gk_kcp_input(gk_kcp *k, const uint8_t *data, int size, int regular,
                 int ack_nodelay, uint32_t current)
{
    if (!data || size < OVERHEAD)
        return -2;
    const uint32_t una_before = k->snd_una;
    const uint8_t *p = data;
    uint32_t left = (uint32_t)size;
    ack_item batch[ACK_BATCH];
    uint32_t nbatch = 0, nsegs = 0, latest = 0;
    int got_ack = 0, slid = 0, rc = 0;

    /* A bad segment ends the packet as in kcp-go: what came before it stays
     * applied, but the packet is not counted, sampled for RTT, allowed to
     * grow cwnd or flushed. */
    while (left >= OVERHEAD) {
        if (gk_get32le(p) != k->conv) {
            rc = -1;
            break;
        }
        uint8_t cmd = p[4], frg = p[5];
        uint16_t wnd = gk_get16le(p + 6);
        uint32_t ts = gk_get32le(p + 8), sn = gk_get32le(p + 12), una = gk_get32le(p + 16);
        uint32_t len = gk_get32le(p + 20);
        if (len > left - OVERHEAD) {
            rc = -2;
            break;
        }
        if (cmd < GK_KCP_CMD_PUSH || cmd > GK_KCP_CMD_WINS) {
            rc = -3;
            break;
        }
        const uint8_t *payload = p + OVERHEAD;
        p += OVERHEAD + len;
        left -= OVERHEAD + len;

        /* FEC-recovered packets may be stale: only live ones set the window */
        if (regular)
            k->rmt_wnd = wnd;
        if (drop_below(k, una))
            slid = 1;

        if (cmd == GK_KCP_CMD_ACK) {
            mark_acked(k, sn);
            if (nbatch == ACK_BATCH) {
                apply_fastacks(k, batch, nbatch);
                nbatch = 0;
            }
            batch[nbatch].sn = sn;
            batch[nbatch].ts = ts;
            nbatch++;
            got_ack = 1;
            latest = ts;
        } else if (cmd == GK_KCP_CMD_PUSH) {
            int repeat = 1;
            if (sdiff(sn, k->rcv_nxt + k->rcv_wnd) < 0) {
                int stored = 1;
                if (sdiff(sn, k->rcv_nxt) >= 0) {
                    stored = store_push(k, sn, frg, payload, len);
                    /* also after a duplicate, as kcp-go: a window raised
                     * since the last delivery may admit more */
                    rcv_deliver(k);
                }
                if (stored >= 0)
                    ack_push(k, sn, ts);
                repeat = stored != 0;
            }
            if (regular && repeat)
                gk_stats.RepeatSegs++;
        } else if (cmd == GK_KCP_CMD_WASK) {
            k->probe |= ASK_TELL;
        }
        nsegs++;
    }
    if (nbatch)
        apply_fastacks(k, batch, nbatch);
    if (rc)
        return rc;
    gk_stats.InSegs += nsegs;

    /* the last ACK's ts is the freshest echo of our clock */
    if (got_ack && regular && sdiff(current, latest) >= 0)
        update_rtt(k, sdiff(current, latest));

    if (!k->nocwnd && sdiff(k->snd_una, una_before) > 0)
        grow_cwnd(k);

    if (slid && k->hold_input_flush)
        k->flush_held = 1;
    else if (slid)
        gk_kcp_flush(k, 0, current);
    else if (ack_nodelay && k->nacks)
        gk_kcp_flush(k, 1, current);
    return 0;
}

/* ---- flush ---- */

typedef struct {
    gk_kcp *k;
    uint32_t pos;
} packer;

/* Emit the packet being built if `need` more bytes would not fit the MTU. */
static inline void make_room(packer *pk, uint32_t need)
{
    gk_kcp *k = pk->k;
    if (pk->pos + need > k->mtu && pk->pos > k->reserved) {
        if (k->output)
            k->output(k->buffer, (int)pk->pos, k->user);
        pk->pos = k->reserved;
    }
}

static inline void finish(packer *pk)
{
    gk_kcp *k = pk->k;
    if (pk->pos > k->reserved && k->output)
        k->output(k->buffer, (int)pk->pos, k->user);
    pk->pos = k->reserved;
}

static inline uint8_t *put_header(packer *pk, uint8_t cmd, uint8_t frg, uint16_t wnd,
                                  uint32_t ts, uint32_t sn, uint32_t una, uint32_t len)
{
    uint8_t *p = pk->k->buffer + pk->pos;
    gk_put32le(p, pk->k->conv);
    p[4] = cmd;
    p[5] = frg;
    gk_put16le(p + 6, wnd);
    gk_put32le(p + 8, ts);
    gk_put32le(p + 12, sn);
    gk_put32le(p + 16, una);
    gk_put32le(p + 20, len);
    pk->pos += OVERHEAD;
    gk_stats.OutSegs++;
    return p + OVERHEAD;
}

/* The free receive window advertised in every segment; kcp-go truncates it
 * to 16 bits, and so does the wire. */
static uint16_t wnd_unused(const gk_kcp *k)
{
    return k->rcv_queue.count < k->rcv_wnd ? (uint16_t)(k->rcv_wnd - k->rcv_queue.count) : 0;
}

static void ask_window(gk_kcp *k, uint32_t una)
{
    packer pk = {k, k->reserved};
    put_header(&pk, GK_KCP_CMD_WASK, 0, wnd_unused(k), 0, 0, una, 0);
    finish(&pk);
}

/* una 0 acknowledges nothing: a conversation numbers its segments from 0,
 * and nothing may look acknowledged before the session is proven */
void gk_kcp_ask_window_now(gk_kcp *k) { ask_window(k, 0); }

void gk_kcp_ask_window_live(gk_kcp *k) { ask_window(k, k->rcv_nxt); }

void gk_kcp_hold_input_flush(gk_kcp *k, int on) { k->hold_input_flush = on != 0; }
int gk_kcp_flush_held(const gk_kcp *k) { return k->flush_held; }

uint32_t gk_kcp_flush(gk_kcp *k, int ack_only, uint32_t current)
{
    packer pk = {k, k->reserved};
    if (!ack_only)
        k->flush_held = 0;
    const uint16_t wnd = wnd_unused(k);
    const uint32_t una = k->rcv_nxt;
    uint32_t probe_sn = 0, probe_ts = 0;

    /* ACKs for sn below rcv_nxt are covered by una: keep only the last */
    for (uint32_t i = 0; i < k->nacks; i++) {
        const ack_item *a = &k->acks[i];
        if (sdiff(a->sn, k->rcv_nxt) >= 0 || i + 1 == k->nacks) {
            make_room(&pk, OVERHEAD);
            put_header(&pk, GK_KCP_CMD_ACK, 0, wnd, a->ts, a->sn, una, 0);
            probe_sn = a->sn;
            probe_ts = a->ts;
        }
    }
    k->nacks = 0;
    if (ack_only) {
        finish(&pk);
        return k->interval;
    }

    if (k->rmt_wnd == 0) {
        if (k->probe_wait == 0) {
            k->probe_wait = PROBE_FIRST;
            k->ts_probe = current + k->probe_wait;
        } else if (sdiff(current, k->ts_probe) >= 0) {
            if (k->probe_wait < PROBE_FIRST)
                k->probe_wait = PROBE_FIRST;
            k->probe_wait = umin(k->probe_wait + k->probe_wait / 2, PROBE_CEILING);
            k->ts_probe = current + k->probe_wait;
            k->probe |= ASK_SEND;
        }
    } else {
        k->ts_probe = 0;
        k->probe_wait = 0;
    }
    if (k->probe & ASK_SEND) {
        make_room(&pk, OVERHEAD);
        put_header(&pk, GK_KCP_CMD_WASK, 0, wnd, probe_ts, probe_sn, una, 0);
    }
    if (k->probe & ASK_TELL) {
        make_room(&pk, OVERHEAD);
        put_header(&pk, GK_KCP_CMD_WINS, 0, wnd, probe_ts, probe_sn, una, 0);
    }
    k->probe = 0;

    uint32_t limit = umin(k->snd_wnd, k->rmt_wnd);
    if (!k->nocwnd)
        limit = umin(limit, k->cwnd);

    uint32_t fresh = 0;
    while (k->snd_queue.head && sdiff(k->snd_nxt, k->snd_una + limit) < 0) {
        if (snd_ring_reserve(k, k->snd_nxt - k->snd_una + 1))
            break; /* out of memory: the window simply stays smaller */
        gk_seg *s = list_pop(&k->snd_queue);
        s->sn = k->snd_nxt;
        k->snd_ring[k->snd_nxt & k->snd_mask] = s;
        k->snd_nxt++;
        fresh++;
    }

    const uint32_t resend = k->fastresend > 0 ? (uint32_t)k->fastresend : UINT32_MAX;
    uint32_t lost = 0, fast = 0, early = 0;
    int32_t next_due = (int32_t)k->interval;

    for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++) {
        gk_seg *s = k->snd_ring[sn & k->snd_mask];
        if (!s)
            continue;
        int send = 1;
        if (s->xmit == 0) {
            s->rto = k->rx_rto;
        } else if (s->fastack >= resend) {
            s->rto = k->rx_rto;
            fast++;
        } else if (s->fastack > 0 && fresh == 0) {
            /* nothing new will draw more ACKs, so do not wait for `resend` */
            s->rto = k->rx_rto;
            early++;
        } else if (sdiff(current, s->resendts) >= 0) {
            s->rto += k->nodelay ? k->rx_rto / 2 : k->rx_rto;
            lost++;
        } else {
            send = 0;
        }
        if (send) {
            s->fastack = 0;
            s->resendts = current + s->rto;
            s->xmit++;
            s->ts = current;
            make_room(&pk, OVERHEAD + s->len);
            uint8_t *body = put_header(&pk, GK_KCP_CMD_PUSH, s->frg, wnd, s->ts, s->sn, una, s->len);
            if (s->len)
                memcpy(body, s->data, s->len);
            pk.pos += s->len;
            if (s->xmit >= k->dead_link)
                k->state = UINT32_MAX;
        }
        int32_t due = sdiff(s->resendts, current);
        if (due > 0 && due < next_due)
            next_due = due;
    }
    finish(&pk);

    uint32_t retrans = lost + fast + early;
    gk_stats.LostSegs += lost;
    gk_stats.FastRetransSegs += fast;
    gk_stats.EarlyRetransSegs += early;
    gk_stats.RetransSegs += retrans;
    k->xmit_total += retrans;

    if (!k->nocwnd) {
        /* rate halving (RFC 6937) after fast or early retransmission */
        if (fast + early) {
            k->ssthresh = umax((k->snd_nxt - k->snd_una) / 2, SSTHRESH_FLOOR);
            /* with fast resend off, resend is 2^32-1 and this wraps to
             * ssthresh-1 exactly as in kcp-go */
            k->cwnd = k->ssthresh + resend;
            k->incr = k->cwnd * k->mss;
        }
        if (lost) {
            k->ssthresh = umax(limit / 2, SSTHRESH_FLOOR);
            k->cwnd = 1;
            k->incr = k->mss;
        }
        if (k->cwnd < 1) {
            k->cwnd = 1;
            k->incr = k->mss;
        }
    }
    return (uint32_t)next_due;
}
