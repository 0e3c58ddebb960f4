/* kcp-go's FEC framing (fec.go, autotune.go; docs/wire.md §3) with one safety
 * rule kcp-go lacks: the decoder reconstructs only with a shape it has
 * confirmed, so a peer with another shape can never make it turn parity
 * into "data" (docs/wire.md §3.4, the shape hazard). */
#include "fec.h"

#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "rs.h"
#include "snmp.h"

#define FEC_SEQ_TYPE 6 /* seqid + type; the shard starts after them */
#define FEC_EXPIRE_MS 60000
#define FEC_RX_MULTI 3 /* the decoder keeps 3*n packets, as kcp-go */
#define AUTOTUNE_SLOTS 258

/* Shard buffers hold the longest shard plus zero padding up to a whole
 * number of cache lines.  Encoder slots keep room in front of the shard for
 * the FEC header and a crypto header, so a parity packet can be sealed in
 * place. */
#define SHARD_BUF 1536 /* >= GK_MTU_LIMIT - FEC_SEQ_TYPE, multiple of 64 */
#define SLOT_FRONT 64  /* >= GK_CRYPT_HEADER + FEC_SEQ_TYPE */
#define ENC_SLOT (SLOT_FRONT + SHARD_BUF)

/* kcp-go's _itimediff: sequence order across the 32-bit wrap */
static int32_t seqdiff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

int gk_fec_shape_ok(int ds, int ps)
{
    return ds >= 1 && ps >= 1 && ds + ps <= GK_RS_MAX_SHARDS;
}

/* ---- encoder ------------------------------------------------------------ */

struct gk_fec_encoder {
    int ds, ps, n;
    uint32_t paws; /* seqids wrap to 0 here, always at a group boundary */
    uint32_t next;
    int count;     /* data shards collected in the current group */
    int max_len;   /* longest data packet of the group, from the FEC header */
    gk_rs *rs;
    uint8_t *slab; /* n slots of ENC_SLOT bytes, allocated on first use */
    uint16_t shard_len[GK_RS_MAX_SHARDS];
    uint8_t *shard[GK_RS_MAX_SHARDS];
    uint8_t *parity_pkt[GK_RS_MAX_SHARDS];
};

gk_fec_encoder *gk_fec_encoder_new(int ds, int ps)
{
    if (!gk_fec_shape_ok(ds, ps))
        return NULL;
    gk_fec_encoder *enc = calloc(1, sizeof *enc);
    if (!enc)
        return NULL;
    enc->rs = gk_rs_new(ds, ps);
    if (!enc->rs) {
        free(enc);
        return NULL;
    }
    enc->ds = ds;
    enc->ps = ps;
    enc->n = ds + ps;
    enc->paws = 0xffffffffu / (uint32_t)enc->n * (uint32_t)enc->n;
    return enc;
}

void gk_fec_encoder_free(gk_fec_encoder *enc)
{
    if (!enc)
        return;
    gk_rs_free(enc->rs);
    free(enc->slab);
    free(enc);
}

void gk_fec_encoder_set_next(gk_fec_encoder *enc, uint32_t next)
{
    enc->next = next;
}

static int encoder_slab(gk_fec_encoder *enc)
{
    enc->slab = aligned_alloc(64, (size_t)enc->n * ENC_SLOT);
    if (!enc->slab)
        return -1;
    for (int k = 0; k < enc->n; k++) {
        enc->shard[k] = enc->slab + (size_t)k * ENC_SLOT + SLOT_FRONT;
        enc->parity_pkt[k] = enc->shard[k] - FEC_SEQ_TYPE;
    }
    return 0;
}

int gk_fec_encode(gk_fec_encoder *enc, uint8_t *pkt, int len,
                  uint8_t *const **parity, int *parity_len)
{
    if (len <= GK_FEC_HEADER || len > GK_MTU_LIMIT)
        return -1;
    if (!enc->slab && encoder_slab(enc) != 0)
        return -1;
    gk_put32le(pkt, enc->next);
    gk_put16le(pkt + 4, GK_FEC_TYPE_DATA);
    gk_put16le(pkt + FEC_SEQ_TYPE, (unsigned)(len - FEC_SEQ_TYPE));
    enc->next++;

    int slen = len - FEC_SEQ_TYPE;
    memcpy(enc->shard[enc->count], pkt + FEC_SEQ_TYPE, (size_t)slen);
    enc->shard_len[enc->count] = (uint16_t)slen;
    if (len > enc->max_len)
        enc->max_len = len;
    if (++enc->count < enc->ds)
        return 0;

    size_t L = (size_t)(enc->max_len - FEC_SEQ_TYPE);
    for (int k = 0; k < enc->ds; k++)
        memset(enc->shard[k] + enc->shard_len[k], 0, L - enc->shard_len[k]);
    gk_rs_encode(enc->rs, enc->shard, L);
    for (int k = enc->ds; k < enc->n; k++) {
        gk_put32le(enc->parity_pkt[k], enc->next);
        gk_put16le(enc->parity_pkt[k] + 4, GK_FEC_TYPE_PARITY);
        enc->next = (enc->next + 1) % enc->paws;
    }
    *parity = enc->parity_pkt + enc->ds;
    *parity_len = enc->max_len;
    enc->count = 0;
    enc->max_len = 0;
    return enc->ps;
}

/* ---- decoder ------------------------------------------------------------ */

typedef struct fec_entry {
    uint32_t seqid;
    uint32_t ts;
    uint16_t len; /* shard bytes: the packet after seqid and type */
    uint8_t is_data;
    uint8_t *shard;
} fec_entry;

typedef struct pulse {
    uint32_t seq;
    uint8_t valid;
    uint8_t is_data;
} pulse;

struct gk_fec_decoder {
    int ds, ps, n, rxlimit;
    int confirmed; /* reconstruction allowed: the shape matches the peer's */
    gk_rs *rs;     /* NULL until a shape is known */
    fec_entry *q;  /* ordered by seqid */
    int qlen, qcap;
    uint8_t **spare; /* shard buffers not in the queue */
    int nspare;
    uint8_t *recovered[GK_FEC_MAX_RECOVERED];
    pulse pulses[AUTOTUNE_SLOTS];
};

/* Shape in use; (0,0) behaves as kcp-go's lazy 1/1 for grouping and queue
 * limits but stays unconfirmed, so it never reconstructs. */
static int decoder_set_shape(gk_fec_decoder *dec, int ds, int ps)
{
    gk_rs *rs = NULL;
    if (ds > 0) {
        rs = gk_rs_new(ds, ps);
        if (!rs)
            return -1;
    } else {
        ds = ps = 1;
    }
    int rxlimit = FEC_RX_MULTI * (ds + ps);
    if (rxlimit + 1 > dec->qcap) {
        fec_entry *q = realloc(dec->q, (size_t)(rxlimit + 1) * sizeof *q);
        uint8_t **spare = q ? realloc(dec->spare, (size_t)(rxlimit + 1) * sizeof *spare) : NULL;
        if (q)
            dec->q = q;
        if (spare)
            dec->spare = spare;
        if (!q || !spare) {
            gk_rs_free(rs);
            return -1;
        }
        dec->qcap = rxlimit + 1;
    }
    gk_rs_free(dec->rs);
    dec->rs = rs;
    dec->ds = ds;
    dec->ps = ps;
    dec->n = ds + ps;
    dec->rxlimit = rxlimit;
    return 0;
}

gk_fec_decoder *gk_fec_decoder_new(int ds, int ps)
{
    if (!(ds == 0 && ps == 0) && !gk_fec_shape_ok(ds, ps))
        return NULL;
    gk_fec_decoder *dec = calloc(1, sizeof *dec);
    if (!dec)
        return NULL;
    if (decoder_set_shape(dec, ds, ps) != 0) {
        gk_fec_decoder_free(dec);
        return NULL;
    }
    dec->confirmed = ds > 0;
    return dec;
}

void gk_fec_decoder_free(gk_fec_decoder *dec)
{
    if (!dec)
        return;
    for (int i = 0; i < dec->qlen; i++)
        free(dec->q[i].shard);
    for (int i = 0; i < dec->nspare; i++)
        free(dec->spare[i]);
    for (int i = 0; i < GK_FEC_MAX_RECOVERED; i++)
        free(dec->recovered[i]);
    free(dec->q);
    free(dec->spare);
    gk_rs_free(dec->rs);
    free(dec);
}

int gk_fec_decoder_shape(const gk_fec_decoder *dec, int *ds, int *ps)
{
    *ds = dec->rs ? dec->ds : 0;
    *ps = dec->rs ? dec->ps : 0;
    return dec->confirmed;
}

int gk_fec_decoder_queued(const gk_fec_decoder *dec) { return dec->qlen; }

static uint8_t *take_buffer(gk_fec_decoder *dec)
{
    if (dec->nspare > 0)
        return dec->spare[--dec->nspare];
    return aligned_alloc(64, SHARD_BUF);
}

/* Buffers go back to the spare list; the list holds as many as the queue
 * can, so it never overflows. */
static void drop_range(gk_fec_decoder *dec, int first, int count)
{
    for (int i = first; i < first + count; i++) {
        if (dec->nspare < dec->qcap)
            dec->spare[dec->nspare++] = dec->q[i].shard;
        else
            free(dec->q[i].shard);
    }
    memmove(dec->q + first, dec->q + first + count,
            (size_t)(dec->qlen - first - count) * sizeof *dec->q);
    dec->qlen -= count;
}

static void drop_oldest(gk_fec_decoder *dec)
{
    if (dec->q[0].is_data)
        gk_stats.FECShortShards++;
    drop_range(dec, 0, 1);
}

static int says_data(uint32_t seq, int ds, int n) { return (int)(seq % (uint32_t)n) < ds; }

/* The peer's shape from the autotune ring (kcp-go's autotune.go samples the
 * same ring but reads it differently).  A kcp-go sender's packet types follow
 * seqid mod n < ds exactly, so every sample in the ring must agree with its
 * shape: for the true n, all data seqids have smaller residues than all
 * parity seqids.  The answer counts only if exactly one n <= 256 passes and
 * its boundary leaves no choice of ds; while samples are too few to rule out
 * other shapes there is no answer.  Unlike kcp-go's edge-to-edge run length
 * this needs no loss-free run of n+2 packets, so it settles under heavy loss,
 * and samples of another shape (a peer that changed) block it instead of
 * being measured. */
static int measure_shape(const gk_fec_decoder *dec, int *ds, int *ps)
{
    uint32_t seq[AUTOTUNE_SLOTS];
    uint8_t data[AUTOTUNE_SLOTS];
    int m = 0, ndata = 0;
    for (int i = 0; i < AUTOTUNE_SLOTS; i++) {
        if (dec->pulses[i].valid) {
            seq[m] = dec->pulses[i].seq;
            data[m] = dec->pulses[i].is_data;
            ndata += data[m];
            m++;
        }
    }
    if (ndata == 0 || ndata == m)
        return 0;
    int found = 0;
    for (int n = 2; n <= GK_RS_MAX_SHARDS; n++) {
        int maxd = -1, minp = n;
        for (int i = 0; i < m && maxd < minp; i++) {
            int r = (int)(seq[i] % (uint32_t)n);
            if (data[i]) {
                if (r > maxd)
                    maxd = r;
            } else if (r < minp) {
                minp = r;
            }
        }
        if (maxd >= minp)
            continue;
        if (found || maxd + 1 != minp)
            return 0;
        found = 1;
        *ds = minp;
        *ps = n - minp;
    }
    return found;
}

/* Decides whether this packet's group may be reconstructed: the shape must
 * agree with every packet seen since it was confirmed. */
static void check_shape(gk_fec_decoder *dec, uint32_t seq, int is_data)
{
    pulse *p = &dec->pulses[seq % AUTOTUNE_SLOTS];
    p->seq = seq;
    p->valid = 1;
    p->is_data = (uint8_t)is_data;
    if (says_data(seq, dec->ds, dec->n) != is_data)
        dec->confirmed = 0;
    if (!dec->confirmed) {
        int ds, ps;
        if (measure_shape(dec, &ds, &ps) &&
            ((ds == dec->ds && ps == dec->ps && dec->rs) || decoder_set_shape(dec, ds, ps) == 0))
            dec->confirmed = 1;
    }
    if (!dec->confirmed)
        gk_stats.FECShapeErrs++;
}

/* Looks at the group of the entry just inserted at idx: discards it when
 * all data is there, rebuilds the missing data once ds shards are. */
static int process_group(gk_fec_decoder *dec, int idx, gk_fec_recovered *out, int max_out)
{
    int ds = dec->ds, n = dec->n;
    uint32_t seq = dec->q[idx].seqid;
    int pos = (int)(seq % (uint32_t)n);
    uint32_t begin = seq - (uint32_t)pos;
    int lo = idx - pos < 0 ? 0 : idx - pos;
    int hi = idx + (n - 1 - pos) >= dec->qlen ? dec->qlen - 1 : idx + (n - 1 - pos);
    int first = -1, count = 0, ndata = 0, maxlen = 0;
    uint8_t *shards[GK_RS_MAX_SHARDS];
    uint8_t present[GK_RS_MAX_SHARDS];
    memset(present, 0, (size_t)n);
    for (int i = lo; i <= hi; i++) {
        const fec_entry *e = &dec->q[i];
        int32_t k = seqdiff(e->seqid, begin);
        if (k < 0)
            continue;
        if (k >= n)
            break;
        if ((k < ds) != e->is_data) {
            /* a packet queued before the shape was confirmed contradicts it */
            dec->confirmed = 0;
            gk_stats.FECShapeErrs++;
            return 0;
        }
        if (first < 0)
            first = i;
        count++;
        ndata += e->is_data;
        present[k] = 1;
        shards[k] = e->shard;
        if (e->len > maxlen)
            maxlen = e->len;
    }
    if (ndata == ds) {
        drop_range(dec, first, count);
        return 0;
    }
    if (count < ds)
        return 0;

    int nmiss = 0;
    for (int i = first; i < first + count; i++) {
        const fec_entry *e = &dec->q[i];
        memset(e->shard + e->len, 0, (size_t)(maxlen - e->len));
    }
    for (int k = 0; k < n; k++) {
        if (present[k])
            continue;
        if (k >= ds) {
            shards[k] = NULL;
            continue;
        }
        if (!dec->recovered[nmiss])
            dec->recovered[nmiss] = aligned_alloc(64, SHARD_BUF);
        if (!dec->recovered[nmiss]) {
            drop_range(dec, first, count);
            return 0;
        }
        shards[k] = dec->recovered[nmiss++];
    }
    int nout = 0;
    if (gk_rs_reconstruct(dec->rs, shards, present, (size_t)maxlen) == 0) {
        for (int m = 0; m < nmiss; m++) {
            const uint8_t *r = dec->recovered[m];
            unsigned size = gk_get16le(r);
            if (size < 2 || size > (unsigned)maxlen) {
                gk_stats.FECErrs++;
            } else if (nout < max_out) {
                out[nout].data = r + 2;
                out[nout].len = (int)size - 2;
                nout++;
                gk_stats.FECRecovered++;
            }
        }
    }
    drop_range(dec, first, count);
    return nout;
}

int gk_fec_decode(gk_fec_decoder *dec, const uint8_t *pkt, int len, uint32_t now,
                  gk_fec_recovered *out, int max_out)
{
    if (len < GK_FEC_HEADER || len > GK_MTU_LIMIT) {
        gk_stats.InErrs++;
        return -1;
    }
    unsigned type = gk_get16le(pkt + 4);
    if (type != GK_FEC_TYPE_DATA && type != GK_FEC_TYPE_PARITY) {
        gk_stats.InErrs++;
        return -1;
    }
    int is_data = type == GK_FEC_TYPE_DATA;
    uint32_t seq = gk_get32le(pkt);
    if (!is_data)
        gk_stats.FECParityShards++;
    check_shape(dec, seq, is_data);

    int idx = 0;
    for (int i = dec->qlen - 1; i >= 0; i--) {
        int32_t d = seqdiff(seq, dec->q[i].seqid);
        if (d == 0)
            return 0;
        if (d > 0) {
            idx = i + 1;
            break;
        }
    }
    uint8_t *buf = take_buffer(dec);
    if (!buf)
        return 0;
    if (dec->qlen == dec->qcap) {
        /* only after a shape change shrank the limit below the backlog */
        drop_oldest(dec);
        idx = idx > 0 ? idx - 1 : 0;
    }
    memmove(dec->q + idx + 1, dec->q + idx, (size_t)(dec->qlen - idx) * sizeof *dec->q);
    dec->qlen++;
    fec_entry *e = &dec->q[idx];
    e->seqid = seq;
    e->ts = now;
    e->len = (uint16_t)(len - FEC_SEQ_TYPE);
    e->is_data = (uint8_t)is_data;
    e->shard = buf;
    memcpy(buf, pkt + FEC_SEQ_TYPE, e->len);

    int nout = dec->confirmed ? process_group(dec, idx, out, max_out) : 0;

    if (dec->qlen > dec->rxlimit)
        drop_oldest(dec);
    int expired = 0;
    /* unsigned age: entries are never stamped in the future, and a queue
     * left untouched for over 24 days must still expire */
    while (expired < dec->qlen && now - dec->q[expired].ts > FEC_EXPIRE_MS)
        expired++;
    if (expired > 0)
        drop_range(dec, 0, expired);
    return nout;
}
