/* Packet encryption framing of kcp-go 5.6.1 (WIRE.md s2): a 16-byte nonce and
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

/* Per-session nonce generator: a CSPRNG keyed from OS randomness passed in
 * by the caller; no nonce repeats within a session. */
typedef struct gk_nonce {
    uint32_t key[8];
    uint64_t counter;
    uint8_t  pool[64];
    unsigned used;
} gk_nonce;
void gk_nonce_init(gk_nonce *ng, const uint8_t seed[32]);
void gk_nonce_next(gk_nonce *ng, uint8_t out[GK_NONCE_SIZE]);

/* CRC-32/IEEE (zlib's). */
uint32_t gk_crc32(const uint8_t *data, size_t len);

/* pkt has GK_CRYPT_HEADER bytes of room at the front; len counts them.
 * Fills the nonce and CRC, then encrypts pkt[0..len) in place. */
void gk_crypt_encrypt(const gk_crypt *c, gk_nonce *ng, uint8_t *pkt, size_t len);
/* Decrypts pkt[0..len) in place and checks the CRC.  Returns 0 if the packet
 * is good, -1 if shorter than the header, -2 on CRC mismatch. */
int gk_crypt_decrypt(const gk_crypt *c, uint8_t *pkt, size_t len);

void gk_crypt_free(gk_crypt *c);

#endif
