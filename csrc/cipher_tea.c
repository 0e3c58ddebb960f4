/* TEA (Wheeler & Needham, 1994) and XTEA (Needham & Wheeler, 1997), 8-byte
 * blocks read as two big-endian words, 128-bit key as four big-endian
 * words, as golang.org/x/crypto reads them. */
#include "ciphers.h"

#define TEA_DELTA 0x9E3779B9u

/* One "cycle" is two Feistel rounds; kcp-go asks for 16 rounds (8 cycles),
 * the published algorithm has 64 (32 cycles). */
void gk_tea_setkey(struct gk_tea *t, const uint8_t key[16], unsigned rounds)
{
    for (int i = 0; i < 4; i++)
        t->k[i] = gk_get32be(key + 4 * i);
    t->cycles = rounds / 2;
}

int gk_tea_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len)
{
    const struct gk_tea *t = state;
    const uint32_t k0 = t->k[0], k1 = t->k[1], k2 = t->k[2], k3 = t->k[3];
    for (size_t off = 0; off + 8 <= len; off += 8) {
        uint32_t v0 = gk_get32be(in + off), v1 = gk_get32be(in + off + 4), sum = 0;
        for (unsigned i = 0; i < t->cycles; i++) {
            sum += TEA_DELTA;
            v0 += ((v1 << 4) + k0) ^ (v1 + sum) ^ ((v1 >> 5) + k1);
            v1 += ((v0 << 4) + k2) ^ (v0 + sum) ^ ((v0 >> 5) + k3);
        }
        gk_put32be(out + off, v0);
        gk_put32be(out + off + 4, v1);
    }
    return 0;
}

/* XTEA's per-round addend sum + k[...] depends only on the key, so the 64
 * of them are computed once. */
void gk_xtea_setkey(struct gk_xtea *t, const uint8_t key[16])
{
    uint32_t k[4], sum = 0;
    for (int i = 0; i < 4; i++)
        k[i] = gk_get32be(key + 4 * i);
    for (int i = 0; i < 64; i += 2) {
        t->rk[i] = sum + k[sum & 3];
        sum += TEA_DELTA;
        t->rk[i + 1] = sum + k[(sum >> 11) & 3];
    }
}

int gk_xtea_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len)
{
    const uint32_t *rk = ((const struct gk_xtea *)state)->rk;
    for (size_t off = 0; off + 8 <= len; off += 8) {
        uint32_t v0 = gk_get32be(in + off), v1 = gk_get32be(in + off + 4);
        for (int i = 0; i < 64; i += 2) {
            v0 += (((v1 << 4) ^ (v1 >> 5)) + v1) ^ rk[i];
            v1 += (((v0 << 4) ^ (v0 >> 5)) + v0) ^ rk[i + 1];
        }
        gk_put32be(out + off, v0);
        gk_put32be(out + off + 4, v1);
    }
    return 0;
}
