/* Twofish (Schneier, Kelsey, Whiting, Wagner, Hall, Ferguson: "Twofish: A
 * 128-Bit Block Cipher", 1998).  Section numbers refer to that paper. */
#include "ciphers.h"

/* 4.3.5: the 4-bit permutations t0..t3 that build q0 and q1. */
static const uint8_t q_t[2][4][16] = {
    {{0x8, 0x1, 0x7, 0xD, 0x6, 0xF, 0x3, 0x2, 0x0, 0xB, 0x5, 0x9, 0xE, 0xC, 0xA, 0x4},
     {0xE, 0xC, 0xB, 0x8, 0x1, 0x2, 0x3, 0x5, 0xF, 0x4, 0xA, 0x6, 0x7, 0x0, 0x9, 0xD},
     {0xB, 0xA, 0x5, 0xE, 0x6, 0xD, 0x9, 0x0, 0xC, 0x8, 0xF, 0x3, 0x2, 0x4, 0x7, 0x1},
     {0xD, 0x7, 0xF, 0x4, 0x1, 0x2, 0x6, 0xE, 0x9, 0xB, 0x3, 0x0, 0x8, 0x5, 0xC, 0xA}},
    {{0x2, 0x8, 0xB, 0xD, 0xF, 0x7, 0x6, 0xE, 0x3, 0x1, 0x9, 0x4, 0x0, 0xA, 0xC, 0x5},
     {0x1, 0xE, 0x2, 0xB, 0x4, 0xC, 0x3, 0x7, 0x6, 0xD, 0xA, 0x5, 0xF, 0x9, 0x0, 0x8},
     {0x4, 0xC, 0x7, 0x5, 0x1, 0x6, 0x9, 0xA, 0x0, 0xE, 0xD, 0x8, 0x2, 0xB, 0x3, 0xF},
     {0xB, 0x9, 0x5, 0x1, 0xC, 0x3, 0xD, 0xE, 0x6, 0x4, 0x7, 0xF, 0x2, 0x0, 0x8, 0xA}},
};

/* 4.2: the MDS matrix over GF(2^8) mod x^8+x^6+x^5+x^3+1. */
static const uint8_t mds[4][4] = {
    {0x01, 0xEF, 0x5B, 0x5B},
    {0x5B, 0xEF, 0xEF, 0x01},
    {0xEF, 0x5B, 0x01, 0xEF},
    {0xEF, 0x01, 0xEF, 0x5B},
};

/* 4.3: the RS matrix over GF(2^8) mod x^8+x^6+x^3+x^2+1. */
static const uint8_t rs[4][8] = {
    {0x01, 0xA4, 0x55, 0x87, 0x5A, 0x58, 0xDB, 0x9E},
    {0xA4, 0x56, 0x82, 0xF3, 0x1E, 0xC6, 0x68, 0xE5},
    {0x02, 0xA1, 0xFC, 0xC1, 0x47, 0xAE, 0x3D, 0x19},
    {0xA4, 0x55, 0x87, 0x5A, 0x58, 0xDB, 0x9E, 0x03},
};

static uint8_t q_perm[2][256];

static uint8_t ror4(uint8_t x)
{
    return (uint8_t)(((x >> 1) | (x << 3)) & 0xF);
}

__attribute__((constructor)) static void twofish_q(void)
{
    for (int which = 0; which < 2; which++)
        for (int x = 0; x < 256; x++) {
            const uint8_t(*t)[16] = q_t[which];
            uint8_t a = (uint8_t)(x >> 4), b = (uint8_t)(x & 0xF);
            uint8_t a1 = a ^ b, b1 = (uint8_t)((a ^ ror4(b) ^ (a << 3)) & 0xF);
            uint8_t a2 = t[0][a1], b2 = t[1][b1];
            uint8_t a3 = a2 ^ b2, b3 = (uint8_t)((a2 ^ ror4(b2) ^ (a2 << 3)) & 0xF);
            q_perm[which][x] = (uint8_t)(t[3][b3] << 4 | t[2][a3]);
        }
}

static uint8_t gf_mul(uint8_t a, uint8_t b, unsigned poly)
{
    uint8_t r = 0;
    while (b) {
        if (b & 1)
            r ^= a;
        a = (uint8_t)((a << 1) ^ ((a & 0x80) ? (poly & 0xFF) : 0));
        b >>= 1;
    }
    return r;
}

/* 4.3.2, the q-box chain of h for byte position j: which permutation each
 * stage uses (outermost stage last), for k = 4 key words. */
static const uint8_t h_q[4][5] = {
    {1, 1, 0, 0, 1}, /* y0: q1 (k=4), q1 (k>=3), q0, q0, q1 */
    {0, 1, 1, 0, 0},
    {0, 0, 0, 1, 1},
    {1, 0, 1, 1, 0},
};

/* The q-chain of h for one byte position, with key bytes l[i] (byte j of
 * key word i), before the MDS multiply. */
static uint8_t h_byte(uint8_t y, int j, const uint32_t *l, int k)
{
    for (int i = k - 1; i >= 0; i--)
        y = q_perm[h_q[j][3 - i]][y] ^ (uint8_t)(l[i] >> (8 * j));
    return q_perm[h_q[j][4]][y];
}

static uint32_t mds_column(int j, uint8_t y)
{
    uint32_t z = 0;
    for (int i = 0; i < 4; i++)
        z |= (uint32_t)gf_mul(mds[i][j], y, 0x169) << (8 * i);
    return z;
}

static uint32_t h_func(uint32_t x, const uint32_t *l, int k)
{
    uint32_t z = 0;
    for (int j = 0; j < 4; j++)
        z ^= mds_column(j, h_byte((uint8_t)(x >> (8 * j)), j, l, k));
    return z;
}

int gk_twofish_setkey(struct gk_twofish *t, const uint8_t *key, size_t keylen)
{
    if (keylen != 16 && keylen != 24 && keylen != 32)
        return -1;
    const int k = (int)(keylen / 8);
    uint32_t me[4], mo[4], s[4];
    for (int i = 0; i < k; i++) {
        me[i] = gk_get32le(key + 8 * i);
        mo[i] = gk_get32le(key + 8 * i + 4);
        uint32_t w = 0;
        for (int r = 0; r < 4; r++) {
            uint8_t acc = 0;
            for (int c = 0; c < 8; c++)
                acc ^= gf_mul(rs[r][c], key[8 * i + c], 0x14D);
            w |= (uint32_t)acc << (8 * r);
        }
        /* 4.3: S is taken in reverse order. */
        s[k - 1 - i] = w;
    }
    for (int i = 0; i < 20; i++) {
        uint32_t a = h_func(0x02020202u * (uint32_t)i, me, k);
        uint32_t b = gk_rotl32(h_func(0x02020202u * (uint32_t)i + 0x01010101u, mo, k), 8);
        t->k[2 * i] = a + b;
        t->k[2 * i + 1] = gk_rotl32(a + 2 * b, 9);
    }
    /* 4.3.3/7.1: g with the key-dependent S-boxes, one table per input byte
     * with the MDS column folded in. */
    for (int j = 0; j < 4; j++)
        for (int x = 0; x < 256; x++)
            t->s[j][x] = mds_column(j, h_byte((uint8_t)x, j, s, k));
    return 0;
}

static inline uint32_t g(const struct gk_twofish *t, uint32_t x)
{
    return t->s[0][x & 0xff] ^ t->s[1][(x >> 8) & 0xff] ^ t->s[2][(x >> 16) & 0xff] ^ t->s[3][x >> 24];
}

int gk_twofish_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len)
{
    const struct gk_twofish *t = state;
    const uint32_t *K = t->k;
    for (size_t off = 0; off + 16 <= len; off += 16) {
        uint32_t r0 = gk_get32le(in + off) ^ K[0], r1 = gk_get32le(in + off + 4) ^ K[1];
        uint32_t r2 = gk_get32le(in + off + 8) ^ K[2], r3 = gk_get32le(in + off + 12) ^ K[3];
        /* Two rounds per step so the halves swap roles without copies. */
        for (int r = 0; r < 16; r += 2) {
            uint32_t t0 = g(t, r0), t1 = g(t, gk_rotl32(r1, 8));
            r2 = gk_rotl32(r2 ^ (t0 + t1 + K[2 * r + 8]), 31);
            r3 = gk_rotl32(r3, 1) ^ (t0 + 2 * t1 + K[2 * r + 9]);
            t0 = g(t, r2);
            t1 = g(t, gk_rotl32(r3, 8));
            r0 = gk_rotl32(r0 ^ (t0 + t1 + K[2 * r + 10]), 31);
            r1 = gk_rotl32(r1, 1) ^ (t0 + 2 * t1 + K[2 * r + 11]);
        }
        gk_put32le(out + off, r2 ^ K[4]);
        gk_put32le(out + off + 4, r3 ^ K[5]);
        gk_put32le(out + off + 8, r0 ^ K[6]);
        gk_put32le(out + off + 12, r1 ^ K[7]);
    }
    return 0;
}
