/* One packet through the layers, in kcp-go's order (docs/wire.md §1):
 *   out: KCP flush -> FEC header (+ parity) -> nonce + CRC + encryption -> batch
 *   in:  decryption + CRC (gk_pipe_open) -> [sess.c finds or admits the
 *        session] -> FEC (data to KCP at once, parity to the decoder) -> KCP
 *        input -> the session's events (gk_pipe_deliver)
 * The pipeline never looks sessions up (sess.c routes each datagram) and
 * makes no system call: datagrams are queued in the socket's send batch,
 * which it hands out through the socket's write_batch when full; whoever
 * called into the engine writes all dirty batches once, at the end of its
 * call (sess.c, through io.c). */
#include <string.h>

#include "bytes.h"
#include "snmp.h"
#include "sess_impl.h"

static void mark_dirty(gk_udp *u)
{
    if (!u->dirty) {
        u->dirty = 1;
        u->dirty_next = u->eng->dirty;
        u->eng->dirty = u;
    }
}

void gk_pipe_seal(gk_udp *u)
{
    gk_batch *b = &u->tx;
    if (!u->crypt)
        return;
    for (int i = 0; i < b->n; i++) {
        u->seal_pkts[i] = gk_batch_slot(b, i);
        u->seal_lens[i] = (size_t)b->lens[i];
    }
    gk_crypt_encrypt_many(u->crypt, &u->nonce, u->seal_pkts, u->seal_lens, (size_t)b->n);
}

/* Sessions whose input freed send window: their flush (kcp-go makes it
 * inside Input) waits until the readers this input woke have run, so that a
 * reply's flush carries the ACKs in its own packet. */
void gk_pipe_hold(gk_sess *s)
{
    if (!s->held && gk_kcp_flush_held(s->kcp)) {
        s->held = 1;
        s->held_next = s->udp->eng->held;
        s->udp->eng->held = s;
    }
}

void gk_pipe_unhold(gk_sess *s)
{
    if (!s->held)
        return;
    gk_sess **p = &s->udp->eng->held;
    while (*p != s)
        p = &(*p)->held_next;
    *p = s->held_next;
    s->held = 0;
    s->held_next = NULL;
}

void gk_pipe_flush_held(gk_engine *eng, uint32_t now)
{
    while (eng->held) {
        gk_sess *s = eng->held;
        eng->held = s->held_next;
        s->held = 0;
        s->held_next = NULL;
        if (!s->status && gk_kcp_flush_held(s->kcp))
            gk_kcp_flush(s->kcp, 0, now);
    }
}

/* A send slot addressed to s's peer; a full batch is handed out first. */
static uint8_t *tx_slot(gk_sess *s, int len)
{
    gk_udp *u = s->udp;
    if (u->tx.n == u->tx.cap)
        u->write_batch(u);
    int i = u->tx.n++;
    memcpy(&u->tx.addrs[i], &s->peer, s->peerlen);
    u->tx.addrlens[i] = s->peerlen;
    u->tx.lens[i] = len;
    mark_dirty(u);
    return gk_batch_slot(&u->tx, i);
}

void gk_pipe_output(uint8_t *buf, int len, void *user)
{
    gk_sess *s = user;
    int crypt_room = s->udp->crypt ? GK_CRYPT_HEADER : 0;
    uint8_t *const *parity = NULL;
    int parity_len = 0, nparity = 0;

    if (s->fec_enc) {
        nparity = gk_fec_encode(s->fec_enc, buf + crypt_room, len - crypt_room, &parity, &parity_len);
        if (nparity < 0)
            return; /* cannot happen with the room KCP reserves; never send an unwritten header */
    }

    memcpy(tx_slot(s, len), buf, (size_t)len);
    for (int i = 0; i < nparity; i++)
        memcpy(tx_slot(s, crypt_room + parity_len) + crypt_room, parity[i], (size_t)parity_len);
}

/* Only KCP input the session accepts is life from the peer: it has our
 * crypt, key and FEC shape (keepalive, idle timeout, a verified dial). */
static void kcp_feed(gk_sess *s, const uint8_t *data, int len, int regular, uint32_t now)
{
    /* an unproven session acknowledges nothing: it may yet be freed */
    int ack_nodelay = s->cfg.ack_nodelay && !s->unproven;
    if (gk_kcp_input(s->kcp, data, len, regular, ack_nodelay, now) < 0) {
        gk_stats.KCPInErrors++;
        return;
    }
    s->last_rx = now;
    gk_pipe_hold(s);
    if (!s->heard && !s->unproven && !s->closing) {
        s->heard = 1;
        gk_sess_post(s, GK_EV_READ); /* wakes a dial waiting for the peer */
    }
}

/* A peer's una (its receive position) never goes back in a live
 * conversation.  One that does is a stale (duplicated, reordered) datagram,
 * or a peer that forgot the conversation: a kcp-go listener answers our
 * next packet from a brand-new session of the same conv (una 0) once its
 * application closed the old one or its process restarted.  The first such
 * datagram is answered with a window ask, and the session asks once more
 * RESET_CONFIRM_MS later (sess.c); a datagram still behind after that ends
 * it, any other clears the doubt.  Returns 1 if s ended. */
static int peer_reset(gk_sess *s, const uint8_t *kcp, int len, uint32_t now)
{
    if (s->unproven || s->status || len < GK_KCP_OVERHEAD || gk_get32le(kcp) != s->conv)
        return 0;
    uint32_t una = gk_get32le(kcp + 16);
    if (!s->peer_una_known || (int32_t)(una - s->peer_una) >= 0) {
        s->peer_una = una;
        s->peer_una_known = 1;
        s->reset_suspect = s->reset_reasked = 0;
        return 0;
    }
    if (!s->reset_suspect) {
        s->reset_suspect = 1;
        s->suspect_at = now;
        gk_kcp_ask_window_live(s->kcp);
        return 0;
    }
    if ((uint32_t)(now - s->suspect_at) < RESET_CONFIRM_MS)
        return 0;
    gk_stats.PeerResets++;
    gk_sess_end(s, GK_ST_RESET);
    return 1;
}

void gk_pipe_deliver(gk_sess *s, const uint8_t *pkt, int len, int fec_type, uint32_t now)
{
    if (fec_type != GK_FEC_TYPE_PARITY &&
        peer_reset(s, fec_type ? pkt + GK_FEC_HEADER : pkt, fec_type ? len - GK_FEC_HEADER : len, now))
        return;
    if (!s->unproven)
        gk_sess_wake(s, now); /* its ACKs are due within an interval */
    if (!fec_type) {
        kcp_feed(s, pkt, len, 1, now);
    } else {
        if (fec_type == GK_FEC_TYPE_DATA)
            kcp_feed(s, pkt + GK_FEC_HEADER, len - GK_FEC_HEADER, 1, now);
        /* no decoder (up to 3 groups of shards) for an address that has not
         * answered yet; KCP retransmits whatever parity would have rebuilt */
        if (s->unproven)
            return;
        if (!s->fec_dec) {
            s->fec_dec = gk_fec_decoder_new(s->cfg.data_shards, s->cfg.parity_shards);
            if (!s->fec_dec)
                return;
        }
        gk_fec_recovered rec[GK_FEC_MAX_RECOVERED];
        /* a malformed packet returns -1 and is counted by the decoder */
        int n = gk_fec_decode(s->fec_dec, pkt, len, now, rec, GK_FEC_MAX_RECOVERED);
        for (int i = 0; i < n; i++)
            kcp_feed(s, rec[i].data, rec[i].len, 0, now);
    }
    /* A window ask is answered at once, not at the next interval: a gkcp
     * listener accepts a session only once its ask is answered, so this
     * keeps gkcp-to-gkcp accept at one round trip.  (kcp-go answers on its
     * next flush.)  An unproven session never sends anything but asks. */
    if (!s->unproven && !s->status && gk_kcp_telling_window(s->kcp))
        gk_kcp_flush(s->kcp, 0, now);
    gk_sess_check_ready(s);
}

int gk_pipe_open(gk_udp *u, uint8_t **pkt, int *len, uint32_t now)
{
    uint8_t *p = *pkt;
    int n = *len;
    if (u->crypt) {
        int rc = gk_crypt_decrypt(u->crypt, p, (size_t)n);
        if (rc == -2) {
            gk_stats.InCsumErrors++;
            return -1;
        }
        if (rc != 0) {
            gk_stats.InErrs++;
            return -1;
        }
        /* only authentic datagrams are recorded, so forgeries cannot push
         * real nonces out of the window */
        if (u->replay && gk_replay_check(u->replay, p, now)) {
            gk_stats.InReplays++;
            return -1;
        }
        p += GK_CRYPT_HEADER;
        n -= GK_CRYPT_HEADER;
    }
    if (n < GK_KCP_OVERHEAD) {
        gk_stats.InErrs++;
        return -1;
    }
    *pkt = p;
    *len = n;
    /* kcp-go's test, independent of configuration: KCP's bytes 4..5 are cmd
     * and frg, which never read as 0x00F1/0x00F2. */
    uint16_t type = gk_get16le(p + 4);
    return (type == GK_FEC_TYPE_DATA || type == GK_FEC_TYPE_PARITY) ? type : 0;
}
