/* SM4 (GB/T 32907-2016; English text: draft-ribose-cfrg-sm4). */
#include "ciphers.h"

static uint8_t sm4_sbox[256];
/* L(S(b) << 24) for the round function: L is linear and commutes with
 * rotation, so the other three byte positions are rotations of it. */
static uint32_t sm4_t0[256];

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
    uint8_t r = 0;
    while (b) {
        if (b & 1)
            r ^= a;
        a = (uint8_t)((a << 1) ^ ((a & 0x80) ? 0xF5 : 0)); /* x^8+x^7+x^6+x^5+x^4+x^2+1 */
        b >>= 1;
    }
    return r;
}

/* The affine map of the S-box: circulant matrix whose first row is 0xD3
 * (most significant bit first), plus the constant 0xD3. */
static uint8_t sm4_affine(uint8_t x)
{
    uint8_t r = 0;
    for (int i = 0; i < 8; i++) {
        uint8_t row = (uint8_t)((0xD3 >> i) | (0xD3 << (8 - i)));
        r |= (uint8_t)((__builtin_popcount(row & x) & 1) << (7 - i));
    }
    return r ^ 0xD3;
}

/* The S-box table of the standard is affine(inverse(affine(x))) in
 * GF(2^8) mod 0x1F5 (Liu et al., "Structure of SMS4 S-box"); building it
 * from that form avoids transcribing 256 constants.  The published test
 * vectors check the result. */
__attribute__((constructor)) static void sm4_tables(void)
{
    for (int x = 0; x < 256; x++) {
        uint8_t a = sm4_affine((uint8_t)x), inv = a ? 1 : 0;
        /* a^254 = a^-1 */
        for (int e = 0; e < 254 && a; e++)
            inv = gf_mul(inv, a);
        sm4_sbox[x] = sm4_affine(inv);
    }
    for (int b = 0; b < 256; b++) {
        uint32_t s = (uint32_t)sm4_sbox[b] << 24;
        sm4_t0[b] = s ^ gk_rotl32(s, 2) ^ gk_rotl32(s, 10) ^ gk_rotl32(s, 18) ^ gk_rotl32(s, 24);
    }
}

static uint32_t tau(uint32_t a)
{
    return (uint32_t)sm4_sbox[a >> 24] << 24 | (uint32_t)sm4_sbox[(a >> 16) & 0xff] << 16 |
           (uint32_t)sm4_sbox[(a >> 8) & 0xff] << 8 | sm4_sbox[a & 0xff];
}

static inline uint32_t round_t(uint32_t a)
{
    return sm4_t0[a >> 24] ^ gk_rotl32(sm4_t0[(a >> 16) & 0xff], 24) ^
           gk_rotl32(sm4_t0[(a >> 8) & 0xff], 16) ^ gk_rotl32(sm4_t0[a & 0xff], 8);
}

void gk_sm4_setkey(struct gk_sm4 *s, const uint8_t key[16])
{
    static const uint32_t fk[4] = {0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc};
    uint32_t k[4];
    for (int i = 0; i < 4; i++)
        k[i] = gk_get32be(key + 4 * i) ^ fk[i];
    for (int i = 0; i < 32; i++) {
        /* CK: byte j of word i is (4i + j) * 7 mod 256 */
        uint32_t ck = 0;
        for (int j = 0; j < 4; j++)
            ck = ck << 8 | (uint32_t)(((4 * i + j) * 7) & 0xff);
        uint32_t b = tau(k[(i + 1) & 3] ^ k[(i + 2) & 3] ^ k[(i + 3) & 3] ^ ck);
        k[i & 3] ^= b ^ gk_rotl32(b, 13) ^ gk_rotl32(b, 23);
        s->rk[i] = k[i & 3];
    }
}

int gk_sm4_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len)
{
    const uint32_t *rk = ((const struct gk_sm4 *)state)->rk;
    for (size_t off = 0; off + 16 <= len; off += 16) {
        uint32_t x0 = gk_get32be(in + off), x1 = gk_get32be(in + off + 4);
        uint32_t x2 = gk_get32be(in + off + 8), x3 = gk_get32be(in + off + 12);
        for (int i = 0; i < 32; i += 4) {
            x0 ^= round_t(x1 ^ x2 ^ x3 ^ rk[i]);
            x1 ^= round_t(x2 ^ x3 ^ x0 ^ rk[i + 1]);
            x2 ^= round_t(x3 ^ x0 ^ x1 ^ rk[i + 2]);
            x3 ^= round_t(x0 ^ x1 ^ x2 ^ rk[i + 3]);
        }
        gk_put32be(out + off, x3);
        gk_put32be(out + off + 4, x2);
        gk_put32be(out + off + 8, x1);
        gk_put32be(out + off + 12, x0);
    }
    return 0;
}
