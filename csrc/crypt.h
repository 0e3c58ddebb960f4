/* Packet encryption framing of kcp-go 5.6.1 (docs/wire.md §2): a 16-byte nonce and
 * a CRC-32 at the front of every packet, then the whole packet encrypted in
 * place.  Sans-I/O: keys and random seeds come from the caller. */
#ifndef GK_CRYPT_H
#define GK_CRYPT_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

/* One configured cipher: immutable after creation, shared by every session
 * of a socket. */
typedef struct gk_crypt gk_crypt;

/* Per-session nonce generator: ChaCha20 (RFC 8439 block function, 64-bit
 * block counter in words 12-13, words 14-15 zero) keyed by 32 bytes of OS
 * randomness passed in by the caller; each nonce is the next 16 keystream
 * bytes, made 8 blocks (32 nonces) at a time.  A session would need about 2^64 packets before a repeat became
 * likely (a keystream is not a permutation, so repeats are improbable rather
 * than impossible: kcp-go's AES iteration has the same property). */
typedef struct gk_nonce {
    uint32_t key[8];
    uint64_t counter;
    uint8_t  pool[512];
    unsigned used;
} gk_nonce;
void gk_nonce_init(gk_nonce *ng, const uint8_t seed[32]);
void gk_nonce_next(gk_nonce *ng, uint8_t out[GK_NONCE_SIZE]);

/* CRC-32/IEEE (zlib's). */
uint32_t gk_crc32(const uint8_t *data, size_t len);

/* pkt has GK_CRYPT_HEADER bytes of room at the front; len counts them.
 * Fills the nonce and CRC, then encrypts pkt[0..len) in place. */
void gk_crypt_encrypt(const gk_crypt *c, gk_nonce *ng, uint8_t *pkt, size_t len);
/* gk_crypt_encrypt on n packets (each its own nonce, in order), with the
 * CFB chains of up to 8 packets interleaved so the block cipher gets 8
 * independent blocks per call: several times faster for AES.  Same bytes
 * as n gk_crypt_encrypt calls with the same generator. */
void gk_crypt_encrypt_many(const gk_crypt *c, gk_nonce *ng, uint8_t *const *pkts,
                           const size_t *lens, size_t n);
/* Decrypts pkt[0..len) in place and checks the CRC.  Returns 0 if the packet
 * is good, -1 if shorter than the header, -2 on CRC mismatch. */
int gk_crypt_decrypt(const gk_crypt *c, uint8_t *pkt, size_t len);

/* Constructors; NULL when out of memory or (twofish) a bad key length.
 * Key rules beyond that are gkcp/crypt.py's job. */
gk_crypt *gk_crypt_new_none(void);
/* pad: kcp-go's 1500-byte PBKDF2 pad; copied. */
gk_crypt *gk_crypt_new_xor(const uint8_t pad[GK_MTU_LIMIT]);
gk_crypt *gk_crypt_new_salsa20(const uint8_t key[32]);
/* block_base: a pycryptodome BlockBase * from one of its *_start_operation
 * functions (AES, Blowfish, CAST).  Borrowed, not owned: the caller
 * frees it with the matching *_stop_operation only after gk_crypt_free. */
gk_crypt *gk_crypt_new_pycryptodome(void *block_base);
/* kcp-go uses rounds = 16; 64 is standard TEA (for published vectors). */
gk_crypt *gk_crypt_new_tea(const uint8_t key[16], unsigned rounds);
gk_crypt *gk_crypt_new_xtea(const uint8_t key[16]);
gk_crypt *gk_crypt_new_sm4(const uint8_t key[16]);
/* 3DES EDE; K1 K2 K3 = bytes 0-7, 8-15, 16-23 (equal keys: single DES). */
gk_crypt *gk_crypt_new_3des(const uint8_t key[24]);
gk_crypt *gk_crypt_new_twofish(const uint8_t *key, size_t keylen);
void gk_crypt_free(gk_crypt *c);

/* Cipher block size: 8 or 16, or 0 for none/xor/salsa20. */
size_t gk_crypt_block_size(const gk_crypt *c);

/* gk_crypt_encrypt with the nonce given: for known-answer tests. */
void gk_crypt_seal(const gk_crypt *c, const uint8_t nonce[GK_NONCE_SIZE], uint8_t *pkt, size_t len);

/* The block cipher alone in ECB direction "encrypt" over len bytes (a
 * multiple of the block size): for known-answer tests of the ciphers. */
void gk_crypt_ecb(const gk_crypt *c, const uint8_t *in, uint8_t *out, size_t len);

/* Benchmark loop, timed by the caller: runs one operation `iterations` times
 * over buf[0..len) in place.  mode 0: gk_crypt_encrypt; 1: gk_crypt_decrypt;
 * 2: cipher only (no nonce, no CRC) forward; 3: cipher only backward;
 * 4: gk_crypt_encrypt_many over GK_BENCH_MANY packets of len bytes laid
 * end to end in buf (which must hold GK_BENCH_MANY * len bytes). */
#define GK_BENCH_SEAL 0
#define GK_BENCH_OPEN 1
#define GK_BENCH_ENCRYPT 2
#define GK_BENCH_DECRYPT 3
#define GK_BENCH_SEAL_MANY 4
#define GK_BENCH_MANY 16
void gk_crypt_bench(const gk_crypt *c, gk_nonce *ng, uint8_t *buf, size_t len,
                    uint64_t iterations, int mode);

#endif
