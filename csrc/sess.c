/* Engine, sockets and sessions: lifecycle, the listener's address table,
 * events for Python, and the API behind gkcp's Session and Listener. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "snmp.h"
#include "sess_impl.h"

/* ---- events ------------------------------------------------------------ */

/* Returns the new event's index, or -1 if memory ran out (the waiter then
 * times out rather than the process dying). */
static int push_event(gk_engine *eng, gk_event ev)
{
    if (eng->nevents == eng->events_cap) {
        int cap = eng->events_cap ? eng->events_cap * 2 : 256;
        gk_event *grown = realloc(eng->events, (size_t)cap * sizeof(*grown));
        if (!grown)
            return -1;
        eng->events = grown;
        eng->events_cap = cap;
    }
    eng->events[eng->nevents] = ev;
    return eng->nevents++;
}

void gk_sess_post(gk_sess *s, uint32_t flags)
{
    if (s->event_index >= 0)
        s->udp->eng->events[s->event_index].flags |= flags;
    else
        s->event_index = push_event(s->udp->eng, (gk_event){s->id, flags, s});
}

int gk_engine_take_events(gk_engine *eng, gk_event *out, int max)
{
    int n = eng->nevents < max ? eng->nevents : max;
    for (int i = 0; i < n; i++) {
        out[i] = eng->events[i];
        if (out[i].sess)
            out[i].sess->event_index = -1;
    }
    int rest = eng->nevents - n;
    if (rest > 0)
        memmove(eng->events, eng->events + n, (size_t)rest * sizeof(gk_event));
    for (int i = 0; i < rest; i++)
        if (eng->events[i].sess)
            eng->events[i].sess->event_index = i;
    eng->nevents = rest;
    return n;
}

static int window_open(const gk_sess *s)
{
    return (uint32_t)gk_kcp_waitsnd(s->kcp) < gk_kcp_send_window(s->kcp);
}

void gk_sess_check_ready(gk_sess *s)
{
    uint32_t flags = 0;
    if (s->want_read && gk_kcp_peeksize(s->kcp) >= 0) {
        s->want_read = 0;
        flags |= GK_EV_READ;
    }
    if (s->want_write && window_open(s)) {
        s->want_write = 0;
        flags |= GK_EV_WRITE;
    }
    if (flags && !s->closing)
        gk_sess_post(s, flags);
}

/* A session with nothing queued, in flight or to acknowledge is parked: its
 * flushes would send nothing, so it leaves the timer heap (or, with an idle
 * timeout or keepalive, waits for the next of those deadlines) until input
 * or a write wakes it.  Busy sessions flush every interval, as in kcp-go;
 * idle ones cost nothing but one wake-up per keepalive probe. */
void gk_sess_wake(gk_sess *s, uint32_t now)
{
    if (s->status)
        return;
    uint32_t due = now + gk_kcp_interval(s->kcp);
    if (s->heap_index < 0 || (int32_t)(s->due - due) > 0)
        gk_sched_put(s->udp->eng, s, due);
}

/* ---- address table --------------------------------------------------------- */

static void addr_key_make(gk_addr_key *key, const struct sockaddr_storage *sa)
{
    memset(key, 0, sizeof(*key));
    key->family = sa->ss_family;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        key->port = in->sin_port;
        memcpy(key->ip, &in->sin_addr, 4);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        key->port = in6->sin6_port;
        key->scope = in6->sin6_scope_id;
        memcpy(key->ip, &in6->sin6_addr, 16);
    }
}

static uint32_t key_hash(const gk_engine *eng, const gk_addr_key *key)
{
    uint64_t words[3];
    memcpy(words, key, sizeof(words));
    uint64_t h = eng->hash_k0;
    for (int i = 0; i < 3; i++) {
        h ^= words[i] + eng->hash_k1;
        h *= 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h ^ (h >> 32));
}

static gk_sess *udp_find(gk_udp *u, const gk_addr_key *key)
{
    if (!u->buckets)
        return NULL;
    gk_sess *s = u->buckets[key_hash(u->eng, key) & (u->nbuckets - 1)];
    while (s && memcmp(&s->key, key, sizeof(*key)) != 0)
        s = s->hash_next;
    return s;
}

static int table_grow(gk_udp *u)
{
    uint32_t n = u->nbuckets ? u->nbuckets * 2 : 64;
    gk_sess **b = calloc(n, sizeof(*b));
    if (!b)
        return -1;
    for (uint32_t i = 0; i < u->nbuckets; i++) {
        gk_sess *s = u->buckets[i];
        while (s) {
            gk_sess *next = s->hash_next;
            uint32_t j = key_hash(u->eng, &s->key) & (n - 1);
            s->hash_next = b[j];
            b[j] = s;
            s = next;
        }
    }
    free(u->buckets);
    u->buckets = b;
    u->nbuckets = n;
    return 0;
}

static int table_insert(gk_udp *u, gk_sess *s)
{
    if ((uint32_t)u->nsess >= u->nbuckets && table_grow(u) < 0)
        return -1;
    uint32_t j = key_hash(u->eng, &s->key) & (u->nbuckets - 1);
    s->hash_next = u->buckets[j];
    u->buckets[j] = s;
    return 0;
}

/* Idempotent: a session ended by a replacing conversation is already out. */
static void table_remove(gk_udp *u, gk_sess *s)
{
    if (!u->buckets)
        return;
    gk_sess **p = &u->buckets[key_hash(u->eng, &s->key) & (u->nbuckets - 1)];
    while (*p && *p != s)
        p = &(*p)->hash_next;
    if (*p)
        *p = s->hash_next;
    s->hash_next = NULL;
}

/* ---- sessions ------------------------------------------------------------ */

/* Re-asks of an unproven session before it expires: the first ask or its
 * answer may be lost, and a peer that only waits (it announced itself, or
 * sent one message and waits for the reply) sends nothing else. */
enum { UNPROVEN_REASKS = 2 };

/* Timer heap entries are compared as wrapping differences, so no deadline
 * goes further ahead than this: all of them then stay within 2^31 ms of
 * each other even with some overdue.  A farther deadline is met by waking
 * once more on the way. */
#define SCHED_HORIZON_MS (1u << 30)

static gk_config clamped(const gk_config *cfg)
{
    gk_config c = *cfg;
    if (c.idle_timeout_ms > GK_DURATION_MAX_MS)
        c.idle_timeout_ms = GK_DURATION_MAX_MS;
    if (c.keepalive_ms > GK_DURATION_MAX_MS)
        c.keepalive_ms = GK_DURATION_MAX_MS;
    if (c.keepalive_timeout_ms > GK_DURATION_MAX_MS)
        c.keepalive_timeout_ms = GK_DURATION_MAX_MS;
    return c;
}

/* Keepalive runs on open, proven sessions that Python still holds. */
static int keepalive_on(const gk_sess *s)
{
    return s->cfg.keepalive_ms && s->cfg.keepalive_timeout_ms && !s->closing && !s->unproven;
}

/* Keepalive deadlines are rounded up to a multiple of this many ms (a power
 * of two), so the updater wakes a few times a second for all idle sessions
 * together and their probes share sendmmsg batches (and the answers
 * recvmmsg batches), instead of one wake-up per session. */
#define KEEPALIVE_SLACK_MS 256u

/* When a silent peer is asked next: keepalive_ms after whichever came
 * last, its last packet or our last ask.  An accepted session waits one
 * slack longer, so that between two gkcp ends the dialer asks first and
 * its ask is life for the listener's side (two datagrams per interval,
 * not four). */
static uint32_t next_probe(const gk_sess *s)
{
    uint32_t since = (int32_t)(s->last_probe - s->last_rx) > 0 ? s->last_probe : s->last_rx;
    return since + s->cfg.keepalive_ms + (s->udp->dialed == s ? 0 : KEEPALIVE_SLACK_MS);
}

/* Ends the session if the peer stayed silent too long, else asks it if a
 * probe is due.  Returns 1 if the session ended. */
static int keepalive_tick(gk_sess *s, uint32_t now)
{
    if (!keepalive_on(s))
        return 0;
    if ((uint32_t)(now - s->last_rx) >= s->cfg.keepalive_timeout_ms) {
        gk_stats.KeepaliveTimeouts++;
        gk_sess_end(s, GK_ST_KEEPALIVE);
        return 1;
    }
    if ((int32_t)(now - next_probe(s)) >= 0) {
        gk_stats.KeepaliveProbes++;
        s->last_probe = now;
        gk_kcp_ask_window_live(s->kcp);
    }
    return 0;
}

/* A peer suspected of a reset (pipeline.c) is asked once more when the
 * doubt is RESET_CONFIRM_MS old; its answer decides. */
static void reset_recheck(gk_sess *s, uint32_t now)
{
    if (s->reset_suspect && !s->reset_reasked && (uint32_t)(now - s->suspect_at) >= RESET_CONFIRM_MS) {
        s->reset_reasked = 1;
        gk_kcp_ask_window_live(s->kcp);
    }
}

/* The earliest time a session with nothing to send must run again for its
 * silence limits (idle timeout, keepalive probe or timeout); 0 in *any if
 * none applies. */
static uint32_t silence_due(const gk_sess *s, int *any)
{
    uint32_t due = 0;
    *any = 0;
    if (s->cfg.idle_timeout_ms) {
        due = s->last_rx + s->cfg.idle_timeout_ms;
        *any = 1;
    }
    if (s->reset_suspect && !s->reset_reasked) {
        uint32_t recheck = s->suspect_at + RESET_CONFIRM_MS;
        if (!*any || (int32_t)(recheck - due) < 0)
            due = recheck;
        *any = 1;
    }
    if (keepalive_on(s)) {
        uint32_t probe = next_probe(s);
        uint32_t dead = s->last_rx + s->cfg.keepalive_timeout_ms;
        uint32_t ka = (int32_t)(dead - probe) < 0 ? dead : probe;
        ka = (ka + KEEPALIVE_SLACK_MS - 1) & ~(KEEPALIVE_SLACK_MS - 1);
        if (!*any || (int32_t)(ka - due) < 0)
            due = ka;
        *any = 1;
    }
    return due;
}

static void count_open(void)
{
    gk_stats.CurrEstab++;
    if (gk_stats.CurrEstab > gk_stats.MaxConn)
        gk_stats.MaxConn = gk_stats.CurrEstab;
}

static void unproven_unlink(gk_sess *s)
{
    gk_udp *u = s->udp;
    if (s->unproven_prev)
        s->unproven_prev->unproven_next = s->unproven_next;
    else
        u->unproven_head = s->unproven_next;
    if (s->unproven_next)
        s->unproven_next->unproven_prev = s->unproven_prev;
    else
        u->unproven_tail = s->unproven_prev;
    s->unproven_prev = s->unproven_next = NULL;
    s->unproven = 0;
    u->nunproven--;
}

static int apply_config(gk_sess *s, const gk_config *cfg)
{
    int fec = gk_fec_shape_ok(cfg->data_shards, cfg->parity_shards);
    int reserved = (s->udp->crypt ? GK_CRYPT_HEADER : 0) + (fec ? GK_FEC_HEADER : 0);
    if (gk_kcp_reserve(s->kcp, reserved) < 0 || gk_kcp_setmtu(s->kcp, cfg->mtu) < 0)
        return -1;
    if (fec && (!s->fec_enc || s->cfg.data_shards != cfg->data_shards ||
                s->cfg.parity_shards != cfg->parity_shards)) {
        gk_fec_encoder *enc = gk_fec_encoder_new(cfg->data_shards, cfg->parity_shards);
        if (!enc)
            return -1;
        gk_fec_encoder_free(s->fec_enc);
        s->fec_enc = enc;
    } else if (!fec && s->fec_enc) {
        gk_fec_encoder_free(s->fec_enc);
        s->fec_enc = NULL;
    }
    gk_kcp_nodelay(s->kcp, cfg->nodelay, cfg->interval, cfg->resend, cfg->nc);
    gk_kcp_wndsize(s->kcp, cfg->sndwnd, cfg->rcvwnd);
    gk_kcp_set_stream(s->kcp, cfg->stream);
    gk_kcp_set_dead_link(s->kcp, cfg->dead_link);
    s->cfg = clamped(cfg);
    return 0;
}

int gk_sess_configure(gk_sess *s, const gk_config *cfg)
{
    if (gk_fec_shape_ok(cfg->data_shards, cfg->parity_shards) !=
        gk_fec_shape_ok(s->cfg.data_shards, s->cfg.parity_shards))
        return -1;
    return apply_config(s, cfg);
}

static void sess_free(gk_sess *s)
{
    gk_udp *u = s->udp;
    gk_engine *eng = u->eng;
    gk_sched_remove(eng, s);
    if (s->event_index >= 0)
        eng->events[s->event_index].sess = NULL;
    gk_pipe_unhold(s);
    if (u->dialed == s)
        u->dialed = NULL;
    else
        table_remove(u, s);
    if (s->unaccepted)
        u->unaccepted--;
    if (s->unproven)
        unproven_unlink(s);
    else
        gk_stats.CurrEstab--;
    if (s->udp_prev)
        s->udp_prev->udp_next = s->udp_next;
    else
        u->all = s->udp_next;
    if (s->udp_next)
        s->udp_next->udp_prev = s->udp_prev;
    gk_kcp_release(s->kcp);
    gk_fec_encoder_free(s->fec_enc);
    gk_fec_decoder_free(s->fec_dec);
    free(s->left);
    u->nsess--;
    eng->nsess--;
    free(s);
}

static gk_sess *sess_new(gk_udp *u, const void *addr, socklen_t addrlen, uint32_t conv, uint32_t now)
{
    gk_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->udp = u;
    s->conv = conv;
    s->heap_index = -1;
    s->event_index = -1;
    s->kcp = gk_kcp_create(conv, gk_pipe_output, s);
    if (!s->kcp || apply_config(s, &u->cfg) < 0) {
        if (s->kcp)
            gk_kcp_release(s->kcp);
        free(s);
        return NULL;
    }
    gk_kcp_hold_input_flush(s->kcp, 1);
    memcpy(&s->peer, addr, addrlen);
    s->peerlen = addrlen;
    addr_key_make(&s->key, &s->peer);
    s->id = u->eng->next_id++;
    s->last_rx = s->last_probe = now;
    if (gk_sched_put(u->eng, s, now) < 0) {
        gk_kcp_release(s->kcp);
        gk_fec_encoder_free(s->fec_enc);
        free(s);
        return NULL;
    }
    s->udp_next = u->all;
    if (u->all)
        u->all->udp_prev = s;
    u->all = s;
    u->nsess++;
    u->eng->nsess++;
    return s;
}

/* A new unproven session for a listening socket (evicting the oldest
 * unproven one when GK_UNPROVEN_MAX are waiting). */
static gk_sess *accept_new(gk_udp *u, const struct sockaddr_storage *from, socklen_t fromlen,
                           uint32_t conv, uint32_t now)
{
    if (u->nunproven >= GK_UNPROVEN_MAX) {
        gk_stats.UnprovenEvicted++;
        sess_free(u->unproven_head);
    }
    gk_sess *s = sess_new(u, from, fromlen, conv, now);
    if (!s)
        return NULL;
    s->unproven = 1;
    s->born = now;
    s->unproven_prev = u->unproven_tail;
    if (u->unproven_tail)
        u->unproven_tail->unproven_next = s;
    else
        u->unproven_head = s;
    u->unproven_tail = s;
    u->nunproven++;
    if (table_insert(u, s) < 0 || gk_sched_put(u->eng, s, now + GK_UNPROVEN_REASK_MS) < 0) {
        sess_free(s);
        return NULL;
    }
    return s;
}

/* The peer of unproven s answered: s joins the backlog and GK_EV_ACCEPT is
 * posted.  Returns -1 if the backlog is full: s is freed (AcceptDrops). */
static int prove(gk_sess *s)
{
    gk_udp *u = s->udp;
    if (u->unaccepted >= u->backlog) {
        gk_stats.AcceptDrops++;
        sess_free(s);
        return -1;
    }
    unproven_unlink(s);
    count_open();
    s->unaccepted = 1;
    u->unaccepted++;
    gk_stats.PassiveOpens++;
    gk_sess_post(s, GK_EV_ACCEPT);
    return 0;
}

/* An unproven session's timer: ask again, then give up. */
static void unproven_tick(gk_sess *s, uint32_t now)
{
    uint32_t age = now - s->born;
    if (age >= GK_UNPROVEN_LIFETIME_MS) {
        gk_stats.UnprovenExpired++;
        sess_free(s);
        return;
    }
    if (s->reasked < UNPROVEN_REASKS && age >= (s->reasked + 1u) * GK_UNPROVEN_REASK_MS) {
        /* a late tick catches up without sending a burst */
        uint32_t due = age / GK_UNPROVEN_REASK_MS;
        s->reasked = (uint8_t)(due < UNPROVEN_REASKS ? due : UNPROVEN_REASKS);
        gk_kcp_ask_window_now(s->kcp);
    }
    uint32_t next = s->reasked < UNPROVEN_REASKS ? (s->reasked + 1u) * GK_UNPROVEN_REASK_MS
                                                 : GK_UNPROVEN_LIFETIME_MS;
    gk_sched_put(s->udp->eng, s, s->born + next);
}

gk_sess *gk_udp_dial(gk_udp *u, const void *addr, int addrlen, uint32_t conv, int announce,
                     uint32_t now)
{
    if (u->listening || u->dialed || addrlen <= 0 || (size_t)addrlen > sizeof(struct sockaddr_storage))
        return NULL;
    gk_sess *s = sess_new(u, addr, (socklen_t)addrlen, conv, now);
    if (!s)
        return NULL;
    u->dialed = s;
    count_open();
    gk_stats.ActiveOpens++;
    if (announce) {
        gk_kcp_tell_window(s->kcp);
        gk_kcp_flush(s->kcp, 0, now);
        gk_udp_write_dirty(u->eng);
    }
    return s;
}

void gk_sess_end(gk_sess *s, int status)
{
    if (s->status)
        return;
    s->status = status;
    gk_stats.DeadLinks += status == GK_ST_DEADLINK || status == GK_ST_IDLE;
    if (s->udp->dialed != s)
        table_remove(s->udp, s);
    /* A lingering session has nobody left to tell: it stays scheduled and
     * the updater frees it at its next due time (GK_EV_FREED).  Taken off
     * the heap, it would never be freed. */
    if (s->closing)
        return;
    gk_sched_remove(s->udp->eng, s);
    s->want_read = s->want_write = 0;
    gk_sess_post(s, GK_EV_DEAD);
}

uint32_t gk_sess_id(const gk_sess *s) { return s->id; }
uint32_t gk_sess_conv(const gk_sess *s) { return s->conv; }
gk_udp *gk_sess_udp(const gk_sess *s) { return s->udp; }
int gk_sess_status(const gk_sess *s) { return s->status; }
int gk_sess_heard(const gk_sess *s) { return s->heard; }

void gk_sess_ask(gk_sess *s, uint32_t now)
{
    if (s->status)
        return;
    s->last_probe = now;
    gk_kcp_ask_window_live(s->kcp);
    gk_udp_write_dirty(s->udp->eng);
}
void gk_sess_get_info(const gk_sess *s, gk_kcp_info *info) { gk_kcp_get_info(s->kcp, info); }
int gk_sess_waitsnd(const gk_sess *s) { return gk_kcp_waitsnd(s->kcp); }

int gk_sess_peer(const gk_sess *s, void *addr, int cap)
{
    if (cap < (int)s->peerlen)
        return -1;
    memcpy(addr, &s->peer, s->peerlen);
    return (int)s->peerlen;
}

void gk_sess_accepted(gk_sess *s)
{
    if (s->unaccepted) {
        s->unaccepted = 0;
        s->udp->unaccepted--;
    }
}

static int read_batches(gk_udp *u, uint32_t now, int max_batches);

int gk_sess_send(gk_sess *s, const uint8_t *buf, int len, uint32_t now)
{
    /* A writer that kept the hub busy for an interval or more (its own work,
     * or a loaded CPU) has left the peer's ACKs unread in the socket; the
     * flush below would retransmit every segment whose RTO they beat.  They
     * are read first. */
    int drained = (int32_t)(now - s->udp->last_read) >= (int32_t)gk_kcp_interval(s->kcp);
    if (drained && !s->status) {
        gk_udp *u = s->udp;
        int rc = read_batches(u, now, 1);
        if (rc < 0 && !u->read_error) {
            u->read_error = rc; /* the kernel reported it once: keep it for Python */
            u->eng->read_errors++;
        }
    }
    if (s->status)
        return -s->status;
    uint32_t limit = gk_kcp_send_window(s->kcp);
    uint32_t waiting = (uint32_t)gk_kcp_waitsnd(s->kcp);
    if (waiting >= limit) {
        s->want_write = 1;
        return 0;
    }
    /* Take what the windows can hold, not the whole buffer as kcp-go does,
     * so a large write cannot queue unbounded memory. */
    int mss = (int)gk_kcp_mss(s->kcp);
    int64_t room = (int64_t)(limit - waiting) * mss;
    int take = len < room ? len : (int)room;
    for (int off = 0; off < take; off += mss) {
        int piece = take - off < mss ? take - off : mss;
        if (gk_kcp_send(s->kcp, buf + off, piece) < 0) {
            take = off;
            break;
        }
    }
    gk_stats.BytesSent += (uint64_t)take;
    waiting = (uint32_t)gk_kcp_waitsnd(s->kcp);
    if (!s->cfg.write_delay || waiting >= limit)
        gk_kcp_flush(s->kcp, 0, now);
    gk_sess_wake(s, now);
    if (take < len)
        s->want_write = 1;
    if (drained)
        gk_engine_flush(s->udp->eng, now);
    else
        gk_udp_write_dirty(s->udp->eng);
    return take;
}

int gk_sess_readable(const gk_sess *s)
{
    if (s->left_len > s->left_off)
        return s->left_len - s->left_off;
    int size = gk_kcp_peeksize(s->kcp);
    return size > 0 ? size : 0;
}

static int take_leftover(gk_sess *s, uint8_t *buf, int len)
{
    int n = s->left_len - s->left_off;
    if (n > len)
        n = len;
    memcpy(buf, s->left + s->left_off, (size_t)n);
    s->left_off += n;
    if (s->left_off == s->left_len) {
        free(s->left);
        s->left = NULL;
        s->left_off = s->left_len = 0;
    }
    return n;
}

int gk_sess_recv(gk_sess *s, uint8_t *buf, int len, uint32_t now)
{
    int total = 0;
    if (s->left)
        total = take_leftover(s, buf, len);
    int was_full = gk_kcp_rcv_full(s->kcp);
    while ((total == 0 || s->cfg.stream) && total < len) {
        int size = gk_kcp_peeksize(s->kcp);
        if (size < 0)
            break;
        if (size <= len - total) {
            gk_kcp_recv(s->kcp, buf + total, size);
            total += size;
            continue;
        }
        if (total > 0)
            break;
        /* The reader's buffer is smaller than the message: keep the rest
         * for the next reads, as a stream socket would. */
        s->left = malloc((size_t)size);
        if (!s->left)
            break;
        s->left_len = size;
        s->left_off = 0;
        gk_kcp_recv(s->kcp, s->left, size);
        total = take_leftover(s, buf, len);
        break;
    }
    if (total == 0) {
        if (s->status)
            return -s->status;
        s->want_read = 1;
        return 0;
    }
    gk_stats.BytesReceived += (uint64_t)total;
    /* A receive queue that was full made us advertise a zero window; tell
     * the peer at once that it has room again instead of leaving it to its
     * window probe, which comes only after seconds. */
    if (was_full && !s->status) {
        gk_kcp_flush(s->kcp, 0, now);
        gk_udp_write_dirty(s->udp->eng);
    }
    return total;
}

int gk_sess_close(gk_sess *s, uint32_t now, uint32_t linger_ms)
{
    gk_engine *eng = s->udp->eng;
    if (!s->status)
        gk_kcp_flush(s->kcp, 0, now);
    gk_udp_write_dirty(eng);
    if (s->status || linger_ms == 0 || gk_kcp_waitsnd(s->kcp) == 0) {
        sess_free(s);
        return 1;
    }
    s->closing = 1;
    s->want_read = s->want_write = 0;
    s->linger_until = now + (linger_ms < GK_DURATION_MAX_MS ? linger_ms : GK_DURATION_MAX_MS);
    return 0;
}

/* ---- engine and sockets ------------------------------------------------------ */

gk_engine *gk_engine_new(const uint8_t *seed)
{
    gk_engine *eng = calloc(1, sizeof(*eng));
    if (!eng)
        return NULL;
    memcpy(&eng->hash_k0, seed, 8);
    memcpy(&eng->hash_k1, seed + 8, 8);
    gk_nonce_init(&eng->seeder, seed + 16);
    eng->next_id = 1;
    return eng;
}

int gk_engine_sessions(const gk_engine *eng) { return eng->nsess; }

uint32_t gk_engine_update(gk_engine *eng, uint32_t now)
{
    gk_sess *s;
    while ((s = gk_sched_peek(eng)) && (int32_t)(now - s->due) >= 0) {
        if (s->unproven) {
            unproven_tick(s, now);
            continue;
        }
        if (s->closing && (s->status || (int32_t)(now - s->linger_until) >= 0 ||
                           gk_kcp_waitsnd(s->kcp) == 0)) {
            uint32_t id = s->id;
            sess_free(s);
            /* Python dropped the session at close; it only needs to know the
             * socket is no longer used by it. */
            push_event(eng, (gk_event){id, GK_EV_FREED, NULL});
            continue;
        }
        uint32_t wait = gk_kcp_flush(s->kcp, 0, now);
        if (s->cfg.dead_link && gk_kcp_dead(s->kcp)) {
            gk_sess_end(s, GK_ST_DEADLINK);
            continue;
        }
        if (s->cfg.idle_timeout_ms && (uint32_t)(now - s->last_rx) >= s->cfg.idle_timeout_ms) {
            gk_sess_end(s, GK_ST_IDLE);
            continue;
        }
        if (keepalive_tick(s, now))
            continue;
        reset_recheck(s, now);
        gk_sess_check_ready(s);
        uint32_t due = now + wait;
        if (!gk_kcp_busy(s->kcp) && !s->closing) {
            int any;
            due = silence_due(s, &any);
            if (!any) {
                gk_sched_remove(eng, s);
                continue;
            }
            if ((int32_t)(due - now) > (int32_t)SCHED_HORIZON_MS)
                due = now + SCHED_HORIZON_MS;
        }
        if (s->closing && (int32_t)(s->linger_until - due) < 0)
            due = s->linger_until;
        gk_sched_put(eng, s, due);
    }
    gk_udp_write_dirty(eng);
    s = gk_sched_peek(eng);
    int32_t wait = s ? (int32_t)(s->due - now) : GK_IDLE_MS;
    if (wait < 0)
        wait = 0;
    eng->planned = now + (uint32_t)wait;
    eng->wake = 0;
    return (uint32_t)wait;
}


int gk_udp_take_error(gk_udp *u)
{
    int rc = u->read_error;
    if (rc) {
        u->read_error = 0;
        u->eng->read_errors--;
    }
    return rc;
}

int gk_engine_pending(gk_engine *eng)
{
    int pending = eng->wake ? GK_PENDING_WAKE : 0;
    eng->wake = 0;
    if (eng->nevents > 0 || eng->read_errors > 0)
        pending |= GK_PENDING_EVENTS;
    return pending;
}

/* A socket's writer: the pipeline seals the batch, io.c writes and empties it. */
static void write_batch(gk_udp *u)
{
    gk_pipe_seal(u);
    gk_io_send(u->fd, &u->tx, u->mmsg);
}

void gk_udp_write_dirty(gk_engine *eng)
{
    while (eng->dirty) {
        gk_udp *u = eng->dirty;
        eng->dirty = u->dirty_next;
        u->dirty = 0;
        u->dirty_next = NULL;
        write_batch(u);
    }
}

gk_udp *gk_udp_new(gk_engine *eng, int fd, int listening, const gk_config *cfg,
                   const gk_crypt *crypt, int batch, int backlog)
{
    gk_udp *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->eng = eng;
    u->fd = fd;
    u->listening = listening;
    u->mmsg = 1;
    u->write_batch = write_batch;
    u->backlog = backlog;
    u->cfg = clamped(cfg);
    u->crypt = crypt;
    /* The socket's nonce key and replay-filter key are drawn from the
     * engine's generator, which was seeded from the OS. */
    uint8_t seed[32], replay_key[GK_NONCE_SIZE];
    gk_nonce_next(&eng->seeder, seed);
    gk_nonce_next(&eng->seeder, seed + GK_NONCE_SIZE);
    gk_nonce_init(&u->nonce, seed);
    gk_nonce_next(&eng->seeder, replay_key);
    if (listening && crypt)
        u->replay = gk_replay_new(replay_key, GK_REPLAY_SLOTS, GK_REPLAY_WINDOW_MS);
    u->seal_pkts = calloc((size_t)batch, sizeof(*u->seal_pkts));
    u->seal_lens = calloc((size_t)batch, sizeof(*u->seal_lens));
    if (gk_batch_init(&u->rx, batch) < 0 || gk_batch_init(&u->tx, batch) < 0 ||
        !u->seal_pkts || !u->seal_lens || (listening && crypt && !u->replay)) {
        gk_batch_free(&u->rx);
        gk_batch_free(&u->tx);
        free(u->seal_pkts);
        free(u->seal_lens);
        gk_replay_free(u->replay);
        free(u);
        return NULL;
    }
    u->eng_next = eng->udps;
    if (eng->udps)
        eng->udps->eng_prev = u;
    eng->udps = u;
    return u;
}

void gk_udp_free(gk_udp *u)
{
    gk_engine *eng = u->eng;
    gk_udp_take_error(u);
    while (u->all)
        sess_free(u->all);
    if (u->eng_prev)
        u->eng_prev->eng_next = u->eng_next;
    else
        eng->udps = u->eng_next;
    if (u->eng_next)
        u->eng_next->eng_prev = u->eng_prev;
    if (u->dirty) {
        gk_udp **p = &eng->dirty;
        while (*p != u)
            p = &(*p)->dirty_next;
        *p = u->dirty_next;
    }
    free(u->buckets);
    gk_replay_free(u->replay);
    free(u->seal_pkts);
    free(u->seal_lens);
    gk_batch_free(&u->rx);
    gk_batch_free(&u->tx);
    free(u);
}

void gk_engine_free(gk_engine *eng)
{
    while (eng->udps)
        gk_udp_free(eng->udps);
    free(eng->heap);
    free(eng->events);
    free(eng);
}

void gk_udp_stop_listening(gk_udp *u)
{
    u->listening = 0;
    while (u->unproven_head)
        sess_free(u->unproven_head);
}

void gk_udp_set_mmsg(gk_udp *u, int on) { u->mmsg = on; }
int gk_udp_sessions(const gk_udp *u) { return u->nsess; }
int gk_udp_unproven(const gk_udp *u) { return u->nunproven; }

/* ---- routing: which session a datagram is for -------------------------- */

/* A datagram from an address without a proven session (s unproven, or NULL
 * for an unknown address on a listening socket).  Returns the session to
 * deliver it to normally if it proved s, else NULL (handled here).  Only a
 * well-formed KCP datagram can create a session, and each datagram of an
 * unproven session is answered by exactly one window ask of 24 bytes plus
 * headers, so spoofed sources cannot make the listener send more than they
 * sent (besides the two re-asks of each session). */
static gk_sess *admit(gk_udp *u, gk_sess *s, const uint8_t *pkt, int len, int fec_type,
                      const struct sockaddr_storage *from, socklen_t fromlen, uint32_t now)
{
    if (fec_type == GK_FEC_TYPE_PARITY) {
        if (!s)
            gk_stats.InErrs++;
        return NULL; /* an unproven session keeps no FEC decoder */
    }
    int off = fec_type ? GK_FEC_HEADER : 0;
    uint32_t conv;
    int cmds = gk_kcp_validate(pkt + off, len - off, &conv);
    if (cmds < 0) {
        gk_stats.KCPInErrors++;
        return NULL;
    }
    if (!s) {
        s = accept_new(u, from, fromlen, conv, now);
        if (!s)
            return NULL;
    } else if (cmds & GK_KCP_HAS_WINS) {
        /* the answer to a window ask sent since this session began */
        return prove(s) == 0 ? s : NULL;
    }
    /* The peer's first flight is kept so that nothing needs resending once
     * it answers, but only a few datagrams of it: memory per unproven
     * session stays small whatever the source sends. */
    if (s->fed < UNPROVEN_FEED_MAX) {
        s->fed++;
        gk_pipe_deliver(s, pkt, len, fec_type, now);
    }
    gk_kcp_ask_window_now(s->kcp);
    return NULL;
}

void gk_udp_input(gk_udp *u, uint8_t *pkt, int len, const struct sockaddr_storage *from,
                  socklen_t fromlen, uint32_t now)
{
    if (len < 0)
        return; /* truncated: counted by io.c */
    gk_sess *dialed = u->listening ? NULL : u->dialed;
    if (dialed) {
        /* only the dialed address, checked before any decryption work */
        gk_addr_key key;
        addr_key_make(&key, from);
        if (memcmp(&key, &dialed->key, sizeof(key)) != 0) {
            gk_stats.InWrongPeer++;
            return;
        }
    }
    int fec_type = gk_pipe_open(u, &pkt, &len, now);
    if (fec_type < 0)
        return;
    const uint8_t *kcp = fec_type ? pkt + GK_FEC_HEADER : pkt;
    int kcp_len = fec_type ? len - GK_FEC_HEADER : len;
    int has_header = fec_type != GK_FEC_TYPE_PARITY && kcp_len >= GK_KCP_OVERHEAD;

    gk_sess *s = dialed;
    if (!s) {
        gk_addr_key key;
        addr_key_make(&key, from);
        s = udp_find(u, &key);
        if (s && has_header && gk_get32le(kcp) != s->conv) {
            /* A new conversation from a known address replaces the old one
             * only if it starts at sn 0 (kcp-go); anything else is stale. */
            if (gk_get32le(kcp + 12) != 0 || s->closing) {
                gk_stats.InErrs++;
                return;
            }
            if (s->unproven)
                sess_free(s);
            else
                gk_sess_end(s, GK_ST_REPLACED);
            s = NULL;
        }
        if (!s && (!has_header || !u->listening)) {
            gk_stats.InErrs++;
            return;
        }
        if ((!s || s->unproven) && !(s = admit(u, s, pkt, len, fec_type, from, fromlen, now)))
            return;
    }
    gk_pipe_deliver(s, pkt, len, fec_type, now);
}

/* Reads and feeds up to max_batches batches; what input makes KCP send
 * (ACKs, data a freed window admits) stays queued in the send batches. */
static int read_batches(gk_udp *u, uint32_t now, int max_batches)
{
    int more = 0;
    u->last_read = now;
    for (int round = 0; round < max_batches; round++) {
        int n = gk_io_recv(u->fd, &u->rx, u->mmsg);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++)
            gk_udp_input(u, gk_batch_slot(&u->rx, i), u->rx.lens[i], &u->rx.addrs[i],
                         u->rx.addrlens[i], now);
        if (n < u->rx.cap) {
            more = 0;
            break;
        }
        more = 1;
    }
    return more;
}

int gk_udp_read(gk_udp *u, uint32_t now, int max_batches)
{
    int rc = read_batches(u, now, max_batches);
    gk_engine_flush(u->eng, now);
    return rc;
}

int gk_udp_read_held(gk_udp *u, uint32_t now, int max_batches)
{
    return read_batches(u, now, max_batches);
}

void gk_engine_flush(gk_engine *eng, uint32_t now)
{
    gk_pipe_flush_held(eng, now);
    gk_udp_write_dirty(eng);
}
