/* Internal to crypt.c and the cipher_*.c files: the block ciphers gkcp
 * implements itself because pycryptodome lacks them (or, for salsa20, is
 * slower than kcp-go and allocates per nonce).  Not a cffi header. */
#ifndef GK_CIPHERS_H
#define GK_CIPHERS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bytes.h"

/* Forward ("encrypt") direction over len bytes, a multiple of the block
 * size: the only direction CFB needs.  Same shape as pycryptodome's
 * CipherOperation so both kinds sit behind one call site. */
typedef int (*gk_ecb_fn)(const void *state, const uint8_t *in, uint8_t *out, size_t len);

/* Multi-versioned hot loops: AVX2 where the CPU has it, SSE2 otherwise.
 * gcc only: clang 14 (Debian bookworm) names the clones so that other files
 * cannot link to them. */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__)
#define GK_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define GK_CLONES
#endif

static inline uint32_t gk_rotl32(uint32_t v, unsigned n)
{
    return (v << n) | (v >> ((32 - n) & 31));
}

/* TEA and XTEA: 8-byte blocks, big-endian words (golang.org/x/crypto). */
struct gk_tea { uint32_t k[4]; unsigned cycles; };
void gk_tea_setkey(struct gk_tea *t, const uint8_t key[16], unsigned rounds);
int gk_tea_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len);

struct gk_xtea { uint32_t rk[64]; };
void gk_xtea_setkey(struct gk_xtea *t, const uint8_t key[16]);
int gk_xtea_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len);

/* Triple DES EDE, K1 K2 K3 = key bytes 0-7, 8-15, 16-23: 48 round keys,
 * each as two words (see cipher_des.c). */
struct gk_des3 { uint32_t k[48][2]; };
void gk_des3_setkey(struct gk_des3 *t, const uint8_t key[24]);
int gk_des3_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len);

/* SM4 (GB/T 32907-2016): 16-byte blocks, 128-bit key. */
struct gk_sm4 { uint32_t rk[32]; };
void gk_sm4_setkey(struct gk_sm4 *s, const uint8_t key[16]);
int gk_sm4_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len);

/* Twofish: 16-byte blocks, 128/192/256-bit keys; key-dependent S-boxes
 * folded with the MDS matrix into four 256-entry tables. */
struct gk_twofish { uint32_t k[40]; uint32_t s[4][256]; };
int gk_twofish_setkey(struct gk_twofish *t, const uint8_t *key, size_t keylen);
int gk_twofish_ecb(const void *state, const uint8_t *in, uint8_t *out, size_t len);

/* Eight Salsa20/20 keystream blocks (key 32 bytes, nonce 8) for block
 * counters counter .. counter+7.  The ciphers only make keystreams and
 * blocks; crypt.c applies them (the XOR lives there). */
void gk_salsa20_8blocks(const uint32_t key[8], const uint8_t nonce[8], uint64_t counter, uint8_t out[512]);

/* Eight ChaCha20 blocks (RFC 8439 s2.3) for block counters counter ..
 * counter+7, the 64-bit counter in words 12-13, words 14-15 zero. */
void gk_chacha20_8blocks(const uint32_t key[8], uint64_t counter, uint8_t out[512]);

#endif
