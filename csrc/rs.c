/* Reed-Solomon codec: klauspost's default matrix, fused region kernels from
 * gf256.c, and a small per-codec cache of decoding matrices keyed by which
 * shards were used, since a link tends to repeat the same loss patterns. */
#include "rs.h"

#include <stdlib.h>
#include <string.h>

#include "gf256.h"

/* Enough for every loss pattern of a typical 10/3 link to stay resident;
 * beyond that the least recently used pattern is replaced. */
#define RS_CACHE_SLOTS 32

typedef struct rs_cache_slot {
    uint64_t used[4]; /* bit k set: shard k was a source for this matrix */
    uint64_t stamp;   /* last use, 0 = empty */
} rs_cache_slot;

struct gk_rs {
    int ds, ps;
    int refs;
    gk_rs *next;       /* registry of shared codecs */
    uint8_t *parity;   /* ps x ds rows of the encoding matrix below the identity */
    /* Allocated on the first reconstruction, as many sessions never lose a
     * packet: slots, each slot's rows for the missing data shards, and the
     * Gauss-Jordan work area. */
    rs_cache_slot *slots;
    uint8_t *rows;     /* RS_CACHE_SLOTS x (maxmiss x ds) */
    uint8_t *work;     /* ds x 2ds */
    int maxmiss;       /* min(ds, ps): most data shards one group can lose */
    uint64_t clock;
};

static gk_rs *registry;

/* Gauss-Jordan inversion of the k x k matrix in the left half of w (k x 2k,
 * right half set to the identity here).  Returns -1 if singular, which a
 * Vandermonde-derived square never is. */
static int invert(uint8_t *w, int k)
{
    int stride = 2 * k;
    for (int r = 0; r < k; r++) {
        memset(w + (size_t)r * stride + k, 0, (size_t)k);
        w[(size_t)r * stride + k + r] = 1;
    }
    for (int c = 0; c < k; c++) {
        int p = c;
        while (p < k && w[(size_t)p * stride + c] == 0)
            p++;
        if (p == k)
            return -1;
        uint8_t *pc = w + (size_t)c * stride;
        if (p != c) {
            uint8_t *pp = w + (size_t)p * stride;
            for (int i = 0; i < stride; i++) {
                uint8_t t = pc[i];
                pc[i] = pp[i];
                pp[i] = t;
            }
        }
        uint8_t f = gk_gf_inv(pc[c]);
        for (int i = c; i < stride; i++)
            pc[i] = gk_gf_mul(pc[i], f);
        for (int r = 0; r < k; r++) {
            uint8_t *pr = w + (size_t)r * stride;
            if (r != c && pr[c] != 0)
                gk_gf_muladd_region(pr, pc, pr[c], (size_t)stride);
        }
    }
    return 0;
}

static int build_parity_rows(gk_rs *rs)
{
    int ds = rs->ds, ps = rs->ps;
    uint8_t *w = malloc((size_t)ds * 2 * ds);
    if (!w)
        return -1;
    for (int r = 0; r < ds; r++)
        for (int c = 0; c < ds; c++)
            w[(size_t)r * 2 * ds + c] = gk_gf_exp((uint8_t)r, c);
    if (invert(w, ds) != 0) {
        free(w);
        return -1;
    }
    for (int r = 0; r < ps; r++) {
        uint8_t v[GK_RS_MAX_SHARDS];
        for (int c = 0; c < ds; c++)
            v[c] = gk_gf_exp((uint8_t)(ds + r), c);
        for (int c = 0; c < ds; c++) {
            uint8_t sum = 0;
            for (int j = 0; j < ds; j++)
                sum ^= gk_gf_mul(v[j], w[(size_t)j * 2 * ds + ds + c]);
            rs->parity[(size_t)r * ds + c] = sum;
        }
    }
    free(w);
    return 0;
}

gk_rs *gk_rs_new(int ds, int ps)
{
    if (ds < 1 || ps < 1 || ds + ps > GK_RS_MAX_SHARDS)
        return NULL;
    for (gk_rs *rs = registry; rs; rs = rs->next) {
        if (rs->ds == ds && rs->ps == ps) {
            rs->refs++;
            return rs;
        }
    }
    gk_rs *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->ds = ds;
    rs->ps = ps;
    rs->refs = 1;
    rs->maxmiss = ds < ps ? ds : ps;
    rs->parity = malloc((size_t)ds * ps);
    if (!rs->parity || build_parity_rows(rs) != 0) {
        free(rs->parity);
        free(rs);
        return NULL;
    }
    rs->next = registry;
    registry = rs;
    return rs;
}

void gk_rs_free(gk_rs *rs)
{
    if (!rs || --rs->refs > 0)
        return;
    for (gk_rs **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == rs) {
            *pp = rs->next;
            break;
        }
    }
    free(rs->parity);
    free(rs->slots);
    free(rs->rows);
    free(rs->work);
    free(rs);
}

int gk_rs_data_shards(const gk_rs *rs) { return rs->ds; }
int gk_rs_parity_shards(const gk_rs *rs) { return rs->ps; }

void gk_rs_parity_matrix(const gk_rs *rs, uint8_t *out)
{
    memcpy(out, rs->parity, (size_t)rs->ds * rs->ps);
}

void gk_rs_encode(gk_rs *rs, uint8_t *const *shards, size_t len)
{
    gk_gf_mul_matrix(rs->parity, rs->ds, rs->ps, (const uint8_t *const *)shards,
                     shards + rs->ds, len, 0);
}

/* Row of the encoding matrix for shard k. */
static void matrix_row(const gk_rs *rs, int k, uint8_t *row)
{
    if (k < rs->ds) {
        memset(row, 0, (size_t)rs->ds);
        row[k] = 1;
    } else {
        memcpy(row, rs->parity + (size_t)(k - rs->ds) * rs->ds, (size_t)rs->ds);
    }
}

/* Rows (over the source shards src[0..ds)) that rebuild the missing data
 * shards miss[0..nmiss), from the cache or freshly inverted.  NULL only on
 * allocation failure. */
static const uint8_t *decode_rows(gk_rs *rs, const uint64_t used[4], const int *src,
                                  const int *miss, int nmiss)
{
    int ds = rs->ds;
    size_t slot_bytes = (size_t)rs->maxmiss * ds;
    if (!rs->slots) {
        rs->slots = calloc(RS_CACHE_SLOTS, sizeof *rs->slots);
        rs->rows = malloc(RS_CACHE_SLOTS * slot_bytes);
        rs->work = malloc((size_t)ds * 2 * ds);
        if (!rs->slots || !rs->rows || !rs->work) {
            free(rs->slots);
            free(rs->rows);
            free(rs->work);
            rs->slots = NULL;
            rs->rows = rs->work = NULL;
            return NULL;
        }
    }
    rs->clock++;
    int victim = 0;
    for (int i = 0; i < RS_CACHE_SLOTS; i++) {
        rs_cache_slot *s = &rs->slots[i];
        if (s->stamp && !memcmp(s->used, used, sizeof s->used)) {
            s->stamp = rs->clock;
            return rs->rows + (size_t)i * slot_bytes;
        }
        if (s->stamp < rs->slots[victim].stamp)
            victim = i;
    }
    uint8_t *w = rs->work;
    for (int r = 0; r < ds; r++)
        matrix_row(rs, src[r], w + (size_t)r * 2 * ds);
    if (invert(w, ds) != 0)
        return NULL;
    uint8_t *out = rs->rows + (size_t)victim * slot_bytes;
    for (int m = 0; m < nmiss; m++)
        memcpy(out + (size_t)m * ds, w + (size_t)miss[m] * 2 * ds + ds, (size_t)ds);
    memcpy(rs->slots[victim].used, used, sizeof rs->slots[victim].used);
    rs->slots[victim].stamp = rs->clock;
    return out;
}

int gk_rs_reconstruct(gk_rs *rs, uint8_t *const *shards, const uint8_t *present, size_t len)
{
    int ds = rs->ds, n = rs->ds + rs->ps;
    int src[GK_RS_MAX_SHARDS], miss[GK_RS_MAX_SHARDS];
    int nsrc = 0, nmiss = 0;
    uint64_t used[4] = {0, 0, 0, 0};
    /* The first ds present shards: every present data shard is among them,
     * so the data shards not chosen are exactly the missing ones. */
    for (int k = 0; k < n && nsrc < ds; k++) {
        if (present[k]) {
            src[nsrc++] = k;
            used[k >> 6] |= (uint64_t)1 << (k & 63);
        }
    }
    if (nsrc < ds)
        return -1;
    for (int k = 0; k < ds; k++)
        if (!present[k])
            miss[nmiss++] = k;

    if (nmiss > 0) {
        const uint8_t *rows = decode_rows(rs, used, src, miss, nmiss);
        if (!rows)
            return -1;
        const uint8_t *in[GK_RS_MAX_SHARDS];
        uint8_t *out[GK_RS_MAX_SHARDS];
        for (int i = 0; i < ds; i++)
            in[i] = shards[src[i]];
        for (int m = 0; m < nmiss; m++)
            out[m] = shards[miss[m]];
        gk_gf_mul_matrix(rows, ds, nmiss, in, out, len, 0);
    }
    for (int k = ds; k < n; k++) {
        if (!present[k] && shards[k]) {
            uint8_t *out = shards[k];
            gk_gf_mul_matrix(rs->parity + (size_t)(k - ds) * ds, ds, 1,
                             (const uint8_t *const *)shards, &out, len, 0);
        }
    }
    return 0;
}

void gk_rs_bench(gk_rs *rs, int op, uint8_t *const *shards, const uint8_t *present,
                 size_t len, long iters)
{
    for (long i = 0; i < iters; i++) {
        if (op == 0)
            gk_rs_encode(rs, shards, len);
        else
            gk_rs_reconstruct(rs, shards, present, len);
    }
}
