/* Salsa20/20 (Bernstein, "Salsa20 specification", 2005) and its sibling
 * ChaCha20 (RFC 8439), eight blocks at a time: each vector holds one state
 * word of eight consecutive blocks, so the rounds are plain vector adds,
 * XORs and rotates. */
#include "ciphers.h"

typedef uint32_t v8u32 __attribute__((vector_size(32)));

#define ROTV(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QRV(a, b, c, d)          \
    b ^= ROTV(a + d, 7);         \
    c ^= ROTV(b + a, 9);         \
    d ^= ROTV(c + b, 13);        \
    a ^= ROTV(d + c, 18)

/* State words of eight blocks; the block counter (64-bit, low word at
 * index ctr) differs per lane. */
static void load_state(v8u32 s[16], const uint32_t in[16], int ctr, uint64_t counter)
{
    for (int i = 0; i < 16; i++)
        s[i] = (v8u32){0} + in[i];
    for (unsigned lane = 0; lane < 8; lane++) {
        s[ctr][lane] = (uint32_t)(counter + lane);
        s[ctr + 1][lane] = (uint32_t)((counter + lane) >> 32);
    }
}

/* Final addition, then block b's word i to out[64b + 4i], little-endian. */
static void store_blocks(v8u32 x[16], const v8u32 s[16], uint8_t out[512])
{
    uint32_t w[16][8];
    for (int i = 0; i < 16; i++) {
        x[i] += s[i];
        memcpy(w[i], &x[i], sizeof w[i]);
    }
    for (int b = 0; b < 8; b++)
        for (int i = 0; i < 16; i++)
            gk_put32le(out + 64 * b + 4 * i, w[i][b]);
}

GK_CLONES
static void salsa20_8blocks(const uint32_t in[16], uint64_t counter, uint8_t out[512])
{
    v8u32 s[16], x[16];
    load_state(s, in, 8, counter);
    for (int i = 0; i < 16; i++)
        x[i] = s[i];
    for (int r = 0; r < 10; r++) {
        QRV(x[0], x[4], x[8], x[12]);
        QRV(x[5], x[9], x[13], x[1]);
        QRV(x[10], x[14], x[2], x[6]);
        QRV(x[15], x[3], x[7], x[11]);
        QRV(x[0], x[1], x[2], x[3]);
        QRV(x[5], x[6], x[7], x[4]);
        QRV(x[10], x[11], x[8], x[9]);
        QRV(x[15], x[12], x[13], x[14]);
    }
    store_blocks(x, s, out);
}

#define CHACHA_QR(a, b, c, d)                  \
    a += b; d ^= a; d = ROTV(d, 16);           \
    c += d; b ^= c; b = ROTV(b, 12);           \
    a += b; d ^= a; d = ROTV(d, 8);            \
    c += d; b ^= c; b = ROTV(b, 7)

GK_CLONES
void gk_chacha20_8blocks(const uint32_t key[8], uint64_t counter, uint8_t out[512])
{
    const uint32_t in[16] = {
        0x61707865, 0x3320646e, 0x79622d32, 0x6b206574, key[0], key[1], key[2], key[3],
        key[4], key[5], key[6], key[7], 0, 0, 0, 0,
    };
    v8u32 s[16], x[16];
    load_state(s, in, 12, counter);
    for (int i = 0; i < 16; i++)
        x[i] = s[i];
    for (int r = 0; r < 10; r++) {
        CHACHA_QR(x[0], x[4], x[8], x[12]);
        CHACHA_QR(x[1], x[5], x[9], x[13]);
        CHACHA_QR(x[2], x[6], x[10], x[14]);
        CHACHA_QR(x[3], x[7], x[11], x[15]);
        CHACHA_QR(x[0], x[5], x[10], x[15]);
        CHACHA_QR(x[1], x[6], x[11], x[12]);
        CHACHA_QR(x[2], x[7], x[8], x[13]);
        CHACHA_QR(x[3], x[4], x[9], x[14]);
    }
    store_blocks(x, s, out);
}

void gk_salsa20_8blocks(const uint32_t key[8], const uint8_t nonce[8], uint64_t counter, uint8_t out[512])
{
    const uint32_t in[16] = {
        0x61707865, key[0], key[1], key[2], key[3], 0x3320646e,
        gk_get32le(nonce), gk_get32le(nonce + 4), 0, 0,
        0x79622d32, key[4], key[5], key[6], key[7], 0x6b206574,
    };
    salsa20_8blocks(in, counter, out);
}
