/* Standalone check of gf256.c, rs.c and fec.c, meant to run under sanitizers
 * (tests/test_fec.py builds and runs it that way):
 *   cc -std=c11 -Wall -Wextra -g -fsanitize=address,undefined -I../../csrc \
 *      fec_selftest.c ../../csrc/gf256.c ../../csrc/rs.c ../../csrc/fec.c \
 *      ../../csrc/snmp.c && ./a.out
 * Every buffer is malloc'd at its exact size, so a kernel reading or writing
 * one byte past a region trips AddressSanitizer.  Byte equality with
 * klauspost and kcp-go is tested in pytest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fec.h"
#include "gf256.h"
#include "rs.h"
#include "snmp.h"

static int failures;
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static uint8_t *exact(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
    return p;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("FAIL %s (kernel %s)\n", what, gk_gf_kernel_name());
        failures++;
    }
}

static const char *kernels[] = {"gfni512", "gfni", "avx2"};

static void test_kernels(void)
{
    for (int round = 0; round < 300; round++) {
        int nsrc = 1 + (int)(rnd() % 12), ndst = 1 + (int)(rnd() % 10);
        size_t len = round < 200 ? rnd() % 300 : 1400 + rnd() % 9;
        int accumulate = (int)(rnd() & 1);
        uint8_t *coef = exact((size_t)nsrc * ndst);
        uint8_t *src[12], *ref[10], *got[10];
        for (int s = 0; s < nsrc; s++)
            src[s] = exact(len);
        for (int d = 0; d < ndst; d++) {
            ref[d] = exact(len);
            got[d] = malloc(len ? len : 1);
            memcpy(got[d], ref[d], len);
        }
        gk_gf_set_kernel("portable");
        gk_gf_mul_matrix(coef, nsrc, ndst, (const uint8_t *const *)src, ref, len, accumulate);
        for (size_t k = 0; k < sizeof kernels / sizeof *kernels; k++) {
            if (gk_gf_set_kernel(kernels[k]) != 0)
                continue;
            uint8_t *out[10];
            for (int d = 0; d < ndst; d++) {
                out[d] = malloc(len ? len : 1);
                memcpy(out[d], got[d], len);
            }
            gk_gf_mul_matrix(coef, nsrc, ndst, (const uint8_t *const *)src, out, len, accumulate);
            for (int d = 0; d < ndst; d++) {
                check(memcmp(out[d], ref[d], len) == 0, "kernel matches portable");
                free(out[d]);
            }
            /* single-region forms, source and destination offset */
            if (len > 2) {
                uint8_t *a = exact(len - 1), *b = exact(len - 2), *c = malloc(len - 2);
                memcpy(c, a + 1, len - 2);
                gk_gf_muladd_region(a + 1, b, coef[0], len - 2);
                gk_gf_set_kernel("portable");
                gk_gf_muladd_region(c, b, coef[0], len - 2);
                check(memcmp(a + 1, c, len - 2) == 0, "muladd_region");
                free(a);
                free(b);
                free(c);
            }
        }
        free(coef);
        for (int s = 0; s < nsrc; s++)
            free(src[s]);
        for (int d = 0; d < ndst; d++) {
            free(ref[d]);
            free(got[d]);
        }
    }
}

static void test_rs(void)
{
    static const int shapes[][2] = {{1, 1}, {3, 2}, {4, 2}, {10, 3}, {20, 10}, {128, 127}, {255, 1}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
        int ds = shapes[sh][0], ps = shapes[sh][1], n = ds + ps;
        gk_rs *rs = gk_rs_new(ds, ps);
        check(rs != NULL, "rs_new");
        for (int round = 0; round < 6; round++) {
            size_t len = 1 + rnd() % 1500;
            uint8_t **sh_ = malloc(sizeof *sh_ * (size_t)n), **copy = malloc(sizeof *copy * (size_t)n);
            uint8_t *present = malloc((size_t)n);
            for (int k = 0; k < n; k++)
                sh_[k] = exact(len);
            gk_rs_encode(rs, sh_, len);
            for (int k = 0; k < n; k++) {
                copy[k] = malloc(len);
                memcpy(copy[k], sh_[k], len);
                present[k] = 1;
            }
            int lose = 1 + (int)(rnd() % (unsigned)ps);
            for (int i = 0; i < lose; i++) {
                int k = (int)(rnd() % (unsigned)n);
                present[k] = 0;
                memset(sh_[k], 0xAA, len);
            }
            check(gk_rs_reconstruct(rs, sh_, present, len) == 0, "reconstruct");
            for (int k = 0; k < n; k++) {
                check(memcmp(sh_[k], copy[k], len) == 0, "reconstructed shard");
                free(sh_[k]);
                free(copy[k]);
            }
            free(sh_);
            free(copy);
            free(present);
        }
        gk_rs_free(rs);
    }
}

/* Packets of a 10/3 stream through our encoder, each in an exact-size
 * buffer; random loss, swaps and duplicates on the way to two decoders. */
static void test_fec(void)
{
    enum { DS = 10, PS = 3, MSGS = 600, MAXPK = 2 * MSGS };
    gk_fec_encoder *enc = gk_fec_encoder_new(DS, PS);
    gk_fec_decoder *good = gk_fec_decoder_new(DS, PS), *lazy = gk_fec_decoder_new(0, 0);
    uint8_t *pk[MAXPK];
    int pklen[MAXPK], npk = 0;
    uint8_t *msg[MSGS];
    int msglen[MSGS];
    gk_fec_encoder_set_next(enc, 0xFFFFFFFFu / 13 * 13 - 13 * 20);
    for (int m = 0; m < MSGS; m++) {
        msglen[m] = 24 + (int)(rnd() % 1300);
        msg[m] = exact((size_t)msglen[m]);
        int len = 8 + msglen[m];
        uint8_t *p = malloc((size_t)len);
        memcpy(p + 8, msg[m], (size_t)msglen[m]);
        uint8_t *const *parity;
        int plen;
        int r = gk_fec_encode(enc, p, len, &parity, &plen);
        pk[npk] = p;
        pklen[npk++] = len;
        for (int k = 0; k < r; k++) {
            /* the promised crypto-header room in front of each parity packet */
            memset(parity[k] - GK_CRYPT_HEADER, 0x5A, GK_CRYPT_HEADER);
            pk[npk] = malloc((size_t)plen);
            memcpy(pk[npk], parity[k], (size_t)plen);
            pklen[npk++] = plen;
        }
    }
    for (int i = 0; i + 1 < npk; i++) {
        if (rnd() % 20 == 0) {
            uint8_t *t = pk[i];
            int tl = pklen[i];
            pk[i] = pk[i + 1];
            pklen[i] = pklen[i + 1];
            pk[i + 1] = t;
            pklen[i + 1] = tl;
        }
    }
    gk_fec_recovered out[GK_FEC_MAX_RECOVERED];
    int recovered = 0;
    uint32_t now = 0;
    for (int i = 0; i < npk; i++) {
        now += 7;
        int copies = rnd() % 10 == 0 ? 0 : (rnd() % 15 == 0 ? 2 : 1);
        for (int c = 0; c < copies; c++) {
            gk_fec_decoder *decs[2] = {good, lazy};
            for (int d = 0; d < 2; d++) {
                int r = gk_fec_decode(decs[d], pk[i], pklen[i], now, out, GK_FEC_MAX_RECOVERED);
                check(r >= 0, "decode");
                for (int k = 0; k < r; k++) {
                    int found = 0;
                    for (int m = 0; m < MSGS && !found; m++)
                        found = msglen[m] == out[k].len && !memcmp(msg[m], out[k].data, (size_t)out[k].len);
                    check(found, "recovered payload is a real one");
                    recovered += d == 0;
                }
            }
        }
    }
    check(recovered > 0, "losses recovered");
    /* malformed packets, exact-size */
    for (int len = 0; len < 8; len++) {
        uint8_t *p = exact((size_t)len);
        check(gk_fec_decode(good, p, len, now, out, GK_FEC_MAX_RECOVERED) == -1, "short packet");
        free(p);
    }
    /* expiry empties the queue but for the newcomer (a parity seqid ahead) */
    uint8_t *p = malloc(8);
    uint32_t seq = 13 * 100000 + 12;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(seq >> (8 * i));
    memcpy(p + 4, "\xf2\x00\x02\x00", 4);
    gk_fec_decode(good, p, 8, now + 120000, out, GK_FEC_MAX_RECOVERED);
    check(gk_fec_decoder_queued(good) == 1, "expiry");
    free(p);
    for (int i = 0; i < npk; i++)
        free(pk[i]);
    for (int m = 0; m < MSGS; m++)
        free(msg[m]);
    gk_fec_encoder_free(enc);
    gk_fec_decoder_free(good);
    gk_fec_decoder_free(lazy);
}

int main(void)
{
    test_kernels();
    test_rs();
    test_fec();
    printf("%s: FECRecovered %llu FECShapeErrs %llu\n", failures ? "FAILED" : "ok",
           (unsigned long long)gk_stats.FECRecovered, (unsigned long long)gk_stats.FECShapeErrs);
    return failures != 0;
}
