/* kcp-go 5.6.1 packet encryption (docs/wire.md §2): nonce + CRC-32 header, then
 * the whole packet encrypted in place with CFB (fixed IV, full-block
 * feedback), salsa20, the xor pad, or nothing. */
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "ciphers.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GK_X86_CLMUL 1
#include <immintrin.h>
#endif

enum gk_kind { GK_NONE, GK_XOR, GK_SALSA20, GK_CFB_PYC, GK_CFB_OWN };

/* Leading fields of pycryptodome's BlockBase (src/block_base.h), mirrored
 * with its exact function type so the call through it is well defined. */
struct pyc_block;
typedef int (*pyc_op)(const struct pyc_block *state, const uint8_t *in, uint8_t *out, size_t len);
struct pyc_block {
    pyc_op encrypt;
    pyc_op decrypt;
    int (*destructor)(struct pyc_block *state);
    size_t block_len;
};

struct gk_crypt {
    enum gk_kind kind;
    size_t bs;
    const struct pyc_block *pyc;
    gk_ecb_fn own;
    /* E(IV): every packet's first keystream block, so computed once. */
    uint8_t ks0[16];
    union {
        uint8_t pad[GK_MTU_LIMIT];
        uint32_t salsa_key[8];
        struct gk_tea tea;
        struct gk_xtea xtea;
        struct gk_sm4 sm4;
        struct gk_des3 des3;
        struct gk_twofish twofish;
    } u;
};

static const uint8_t cfb_iv[16] = {
    0xa7, 0x73, 0x4f, 0x9c, 0x12, 0xac, 0x1b, 0x01,
    0xa4, 0x15, 0xf2, 0xc1, 0xfc, 0x78, 0xe6, 0x6b,
};

/* ---- CRC-32/IEEE ------------------------------------------------------ */

static uint32_t crc_tab[8][256];

__attribute__((constructor)) static void crc_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

/* r is the raw register (not inverted). */
static uint32_t crc_slice8(uint32_t r, const uint8_t *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t a = gk_get32le(p) ^ r, b = gk_get32le(p + 4);
        r = crc_tab[7][a & 0xff] ^ crc_tab[6][(a >> 8) & 0xff] ^ crc_tab[5][(a >> 16) & 0xff] ^
            crc_tab[4][a >> 24] ^ crc_tab[3][b & 0xff] ^ crc_tab[2][(b >> 8) & 0xff] ^
            crc_tab[1][(b >> 16) & 0xff] ^ crc_tab[0][b >> 24];
    }
    while (n--)
        r = (r >> 8) ^ crc_tab[0][(r ^ *p++) & 0xff];
    return r;
}

#ifdef GK_X86_CLMUL
/* Carry-less folding (Intel, "Fast CRC Computation for Generic Polynomials
 * Using PCLMULQDQ"), bit-reflected.  Folding a 128-bit lane forward by D
 * bits multiplies its low qword by x^(D+32) mod P and its high qword by
 * x^(D-32) mod P, both bit-reflected and shifted left by one (derived, and
 * checked against zlib in tests).  The register is XORed into the first 4
 * bytes, and the last folded 16 bytes are finished as a message of their
 * own by the table code, which avoids a Barrett reduction. */
#define K128_LO 0x1751997d0LL /* D = 128 */
#define K128_HI 0x0ccaa009eLL
#define K256_LO 0x0f1da05aaLL
#define K256_HI 0x15a546366LL
#define K384_LO 0x03db1ecdcLL
#define K384_HI 0x174359406LL
#define K512_LO 0x154442bd4LL
#define K512_HI 0x1c6e41596LL
#define K2048_LO 0x11542778aLL
#define K2048_HI 0x1322d1430LL

__attribute__((target("pclmul,sse2")))
static inline __m128i fold(__m128i x, __m128i k, __m128i data)
{
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
                                       _mm_clmulepi64_si128(x, k, 0x11)), data);
}

/* Folds the remaining whole 16-byte blocks into x, then finishes. */
__attribute__((target("pclmul,sse2")))
static uint32_t crc_finish(__m128i x, const uint8_t *p, size_t n)
{
    const __m128i k1 = _mm_set_epi64x(K128_HI, K128_LO);
    for (; n >= 16; p += 16, n -= 16)
        x = fold(x, k1, _mm_loadu_si128((const __m128i *)p));
    uint8_t tail[16];
    _mm_storeu_si128((__m128i *)tail, x);
    return crc_slice8(crc_slice8(0, tail, 16), p, n);
}

/* n >= 64: four 128-bit lanes, 64 bytes per step. */
__attribute__((target("pclmul,sse2")))
static uint32_t crc_clmul(uint32_t r, const uint8_t *p, size_t n)
{
    const __m128i k4 = _mm_set_epi64x(K512_HI, K512_LO);
    const __m128i k1 = _mm_set_epi64x(K128_HI, K128_LO);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)r));
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        x0 = fold(x0, k4, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k4, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k4, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k4, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    return crc_finish(fold(fold(fold(x0, k1, x1), k1, x2), k1, x3), p, n);
}

/* n >= 256: the same with 512-bit registers (VPCLMULQDQ), four of them,
 * 256 bytes per step; about twice the 128-bit version on packet sizes. */
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse2")))
static inline __m512i fold512(__m512i x, __m512i k, __m512i data)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), data, 0x96);
}

__attribute__((target("avx512f,vpclmulqdq,pclmul,sse2")))
static uint32_t crc_vpclmul(uint32_t r, const uint8_t *p, size_t n)
{
    const __m512i k16 = _mm512_set_epi64(K2048_HI, K2048_LO, K2048_HI, K2048_LO,
                                         K2048_HI, K2048_LO, K2048_HI, K2048_LO);
    const __m512i k4 = _mm512_set_epi64(K512_HI, K512_LO, K512_HI, K512_LO,
                                        K512_HI, K512_LO, K512_HI, K512_LO);
    __m512i z0 = _mm512_loadu_si512(p), z1 = _mm512_loadu_si512(p + 64);
    __m512i z2 = _mm512_loadu_si512(p + 128), z3 = _mm512_loadu_si512(p + 192);
    z0 = _mm512_xor_si512(z0, _mm512_inserti32x4(_mm512_setzero_si512(),
                                                 _mm_cvtsi32_si128((int)r), 0));
    for (p += 256, n -= 256; n >= 256; p += 256, n -= 256) {
        z0 = fold512(z0, k16, _mm512_loadu_si512(p));
        z1 = fold512(z1, k16, _mm512_loadu_si512(p + 64));
        z2 = fold512(z2, k16, _mm512_loadu_si512(p + 128));
        z3 = fold512(z3, k16, _mm512_loadu_si512(p + 192));
    }
    __m512i z = fold512(fold512(fold512(z0, k4, z1), k4, z2), k4, z3);
    for (; n >= 64; p += 64, n -= 64)
        z = fold512(z, k4, _mm512_loadu_si512(p));
    /* The four lanes sit 48, 32, 16 and 0 bytes before the end of z. */
    __m128i x = _mm512_extracti32x4_epi32(z, 3);
    x = fold(_mm512_extracti32x4_epi32(z, 2), _mm_set_epi64x(K128_HI, K128_LO), x);
    x = fold(_mm512_extracti32x4_epi32(z, 1), _mm_set_epi64x(K256_HI, K256_LO), x);
    x = fold(_mm512_extracti32x4_epi32(z, 0), _mm_set_epi64x(K384_HI, K384_LO), x);
    return crc_finish(x, p, n);
}
#endif

uint32_t gk_crc32(const uint8_t *data, size_t len)
{
#ifdef GK_X86_CLMUL
    if (len >= 256 && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx512f"))
        return ~crc_vpclmul(0xFFFFFFFFu, data, len);
    if (len >= 64 && __builtin_cpu_supports("pclmul"))
        return ~crc_clmul(0xFFFFFFFFu, data, len);
#endif
    return ~crc_slice8(0xFFFFFFFFu, data, len);
}

/* ---- nonce generator (ChaCha20) ---------------------------------------- */

void gk_nonce_init(gk_nonce *ng, const uint8_t seed[32])
{
    for (int i = 0; i < 8; i++)
        ng->key[i] = gk_get32le(seed + 4 * i);
    ng->counter = 0;
    ng->used = sizeof ng->pool;
}

void gk_nonce_next(gk_nonce *ng, uint8_t out[GK_NONCE_SIZE])
{
    if (ng->used >= sizeof ng->pool) {
        gk_chacha20_8blocks(ng->key, ng->counter, ng->pool);
        ng->counter += 8;
        ng->used = 0;
    }
    memcpy(out, ng->pool + ng->used, GK_NONCE_SIZE);
    ng->used += GK_NONCE_SIZE;
}

/* ---- CFB ----------------------------------------------------------------- */

static inline void ecb(const gk_crypt *c, const uint8_t *in, uint8_t *out, size_t len)
{
    if (c->kind == GK_CFB_PYC)
        c->pyc->encrypt(c->pyc, in, out, len);
    else
        c->own(&c->u, in, out, len);
}

/* 32 bytes at a time through a generic vector type (two SSE2 registers, or
 * one AVX2 register in the clone); memcpy keeps unaligned access defined
 * and compiles to plain vector loads. */
typedef uint8_t v32u8 __attribute__((vector_size(32)));
/* dst ^= src over n bytes (long runs: pads, keystreams, CFB decryption). */
GK_CLONES static void xor_run(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        v32u8 a, b;
        memcpy(&a, dst + i, 32);
        memcpy(&b, src + i, 32);
        a ^= b;
        memcpy(dst + i, &a, 32);
    }
    for (; i < n; i++)
        dst[i] ^= src[i];
}

/* One block or less (n <= 16), on CFB encryption's serial path. */
static inline void xor_block(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t a, b;
        memcpy(&a, dst + i, 8);
        memcpy(&b, src + i, 8);
        a ^= b;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++)
        dst[i] ^= src[i];
}

/* Encryption is serial by construction: each keystream block is the
 * encryption of the previous ciphertext block. */
static void cfb_encrypt(const gk_crypt *c, uint8_t *p, size_t len)
{
    const size_t bs = c->bs;
    uint8_t ks[16];
    memcpy(ks, c->ks0, bs);
    for (;;) {
        if (len <= bs) {
            xor_block(p, ks, len);
            return;
        }
        xor_block(p, ks, bs);
        ecb(c, p, ks, bs);
        p += bs;
        len -= bs;
    }
}

/* CFB encryption of up to CFB_LANES packets side by side: their chains are
 * independent, so each step hands the cipher one block from every packet
 * still going in one call (AES-NI then runs them in parallel).  Same bytes
 * as cfb_encrypt on each packet. */
#define CFB_LANES 8
static inline __attribute__((always_inline)) void
cfb_encrypt_lanes_bs(const gk_crypt *c, uint8_t *const *pkts, const size_t *lens, size_t m, const size_t bs)
{
    uint8_t ks[CFB_LANES][16], in[CFB_LANES * 16], out[CFB_LANES * 16];
    size_t lane[CFB_LANES];
    for (size_t i = 0; i < m; i++)
        memcpy(ks[i], c->ks0, bs);
    for (size_t off = 0;; off += bs) {
        size_t k = 0;
        for (size_t i = 0; i < m; i++) {
            if (lens[i] <= off)
                continue;
            size_t rest = lens[i] - off;
            xor_block(pkts[i] + off, ks[i], rest < bs ? rest : bs);
            if (rest > bs) {
                memcpy(in + k * bs, pkts[i] + off, bs);
                lane[k++] = i;
            }
        }
        if (k == 0)
            return;
        ecb(c, in, out, k * bs);
        for (size_t j = 0; j < k; j++)
            memcpy(ks[lane[j]], out + j * bs, bs);
    }
}

/* With the block size a constant (8 or 16: the constructors accept no
 * other), the per-block copies and XORs above compile to a few vector
 * moves instead of libc calls (two memcpy calls per block and lane cost as
 * much as AES-NI itself). */
static void cfb_encrypt_lanes(const gk_crypt *c, uint8_t *const *pkts, const size_t *lens, size_t m)
{
    if (c->bs == 16)
        cfb_encrypt_lanes_bs(c, pkts, lens, m, 16);
    else
        cfb_encrypt_lanes_bs(c, pkts, lens, m, 8);
}

/* Decryption's keystream is E(previous ciphertext block), all known up
 * front, so a whole run of blocks goes to the cipher in one call (AES-NI
 * pipelines 8 at a time), then one XOR pass.  Runs of CFB_RUN blocks bound
 * the stack buffer; the carry is the keystream for the next run. */
#define CFB_RUN 96
static void cfb_decrypt(const gk_crypt *c, uint8_t *p, size_t len)
{
    const size_t bs = c->bs;
    uint8_t ks[(CFB_RUN + 1) * 16];
    memcpy(ks, c->ks0, bs);
    while (len > 0) {
        size_t blocks = len / bs;
        if (blocks == 0) {
            xor_block(p, ks, len);
            return;
        }
        if (blocks > CFB_RUN)
            blocks = CFB_RUN;
        size_t span = blocks * bs;
        int more = len > span;
        size_t produce = more ? blocks : blocks - 1;
        if (produce)
            ecb(c, p, ks + bs, produce * bs);
        xor_run(p, ks, span);
        if (!more)
            return;
        memcpy(ks, ks + span, bs);
        p += span;
        len -= span;
    }
}

/* ---- Salsa20 ------------------------------------------------------------- */

/* The keystream from block 0, XORed over data. */
static void salsa20_xor(const uint32_t key[8], const uint8_t nonce[8], uint8_t *data, size_t len)
{
    uint8_t ks[512];
    for (uint64_t counter = 0; len > 0; counter += 8) {
        size_t n = len < sizeof ks ? len : sizeof ks;
        gk_salsa20_8blocks(key, nonce, counter, ks);
        xor_run(data, ks, n);
        data += n;
        len -= n;
    }
}

/* ---- framing ------------------------------------------------------------- */

static void cipher_forward(const gk_crypt *c, uint8_t *pkt, size_t len)
{
    switch (c->kind) {
    case GK_NONE:
        break;
    case GK_XOR:
        xor_run(pkt, c->u.pad, len < GK_MTU_LIMIT ? len : GK_MTU_LIMIT);
        break;
    case GK_SALSA20:
        if (len > 8)
            salsa20_xor(c->u.salsa_key, pkt, pkt + 8, len - 8);
        break;
    case GK_CFB_PYC:
    case GK_CFB_OWN:
        cfb_encrypt(c, pkt, len);
        break;
    }
}

static void cipher_backward(const gk_crypt *c, uint8_t *pkt, size_t len)
{
    if (c->kind == GK_CFB_PYC || c->kind == GK_CFB_OWN)
        cfb_decrypt(c, pkt, len);
    else
        cipher_forward(c, pkt, len);
}

static void frame(const uint8_t nonce[GK_NONCE_SIZE], uint8_t *pkt, size_t len)
{
    memcpy(pkt, nonce, GK_NONCE_SIZE);
    gk_put32le(pkt + GK_NONCE_SIZE, gk_crc32(pkt + GK_CRYPT_HEADER, len - GK_CRYPT_HEADER));
}

void gk_crypt_seal(const gk_crypt *c, const uint8_t nonce[GK_NONCE_SIZE], uint8_t *pkt, size_t len)
{
    frame(nonce, pkt, len);
    cipher_forward(c, pkt, len);
}

void gk_crypt_encrypt(const gk_crypt *c, gk_nonce *ng, uint8_t *pkt, size_t len)
{
    uint8_t nonce[GK_NONCE_SIZE];
    gk_nonce_next(ng, nonce);
    gk_crypt_seal(c, nonce, pkt, len);
}

void gk_crypt_encrypt_many(const gk_crypt *c, gk_nonce *ng, uint8_t *const *pkts,
                           const size_t *lens, size_t n)
{
    if (c->kind != GK_CFB_PYC && c->kind != GK_CFB_OWN) {
        for (size_t i = 0; i < n; i++)
            gk_crypt_encrypt(c, ng, pkts[i], lens[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t nonce[GK_NONCE_SIZE];
        gk_nonce_next(ng, nonce);
        frame(nonce, pkts[i], lens[i]);
    }
    for (size_t base = 0; base < n; base += CFB_LANES)
        cfb_encrypt_lanes(c, pkts + base, lens + base, n - base < CFB_LANES ? n - base : CFB_LANES);
}

int gk_crypt_decrypt(const gk_crypt *c, uint8_t *pkt, size_t len)
{
    if (len < GK_CRYPT_HEADER)
        return -1;
    cipher_backward(c, pkt, len);
    if (gk_crc32(pkt + GK_CRYPT_HEADER, len - GK_CRYPT_HEADER) != gk_get32le(pkt + GK_NONCE_SIZE))
        return -2;
    return 0;
}

/* ---- construction -------------------------------------------------------- */

static gk_crypt *alloc_crypt(enum gk_kind kind, size_t bs)
{
    gk_crypt *c = calloc(1, sizeof *c);
    if (c) {
        c->kind = kind;
        c->bs = bs;
    }
    return c;
}

static gk_crypt *finish_cfb(gk_crypt *c)
{
    ecb(c, cfb_iv, c->ks0, c->bs);
    return c;
}

gk_crypt *gk_crypt_new_none(void)
{
    return alloc_crypt(GK_NONE, 0);
}

gk_crypt *gk_crypt_new_xor(const uint8_t pad[GK_MTU_LIMIT])
{
    gk_crypt *c = alloc_crypt(GK_XOR, 0);
    if (c)
        memcpy(c->u.pad, pad, GK_MTU_LIMIT);
    return c;
}

gk_crypt *gk_crypt_new_salsa20(const uint8_t key[32])
{
    gk_crypt *c = alloc_crypt(GK_SALSA20, 0);
    if (c)
        for (int i = 0; i < 8; i++)
            c->u.salsa_key[i] = gk_get32le(key + 4 * i);
    return c;
}

gk_crypt *gk_crypt_new_pycryptodome(void *block_base)
{
    const struct pyc_block *b = block_base;
    if (!b || (b->block_len != 8 && b->block_len != 16))
        return NULL;
    gk_crypt *c = alloc_crypt(GK_CFB_PYC, b->block_len);
    if (!c)
        return NULL;
    c->pyc = b;
    return finish_cfb(c);
}

gk_crypt *gk_crypt_new_tea(const uint8_t key[16], unsigned rounds)
{
    gk_crypt *c = alloc_crypt(GK_CFB_OWN, 8);
    if (!c)
        return NULL;
    gk_tea_setkey(&c->u.tea, key, rounds);
    c->own = gk_tea_ecb;
    return finish_cfb(c);
}

gk_crypt *gk_crypt_new_xtea(const uint8_t key[16])
{
    gk_crypt *c = alloc_crypt(GK_CFB_OWN, 8);
    if (!c)
        return NULL;
    gk_xtea_setkey(&c->u.xtea, key);
    c->own = gk_xtea_ecb;
    return finish_cfb(c);
}

gk_crypt *gk_crypt_new_sm4(const uint8_t key[16])
{
    gk_crypt *c = alloc_crypt(GK_CFB_OWN, 16);
    if (!c)
        return NULL;
    gk_sm4_setkey(&c->u.sm4, key);
    c->own = gk_sm4_ecb;
    return finish_cfb(c);
}

gk_crypt *gk_crypt_new_3des(const uint8_t key[24])
{
    gk_crypt *c = alloc_crypt(GK_CFB_OWN, 8);
    if (!c)
        return NULL;
    gk_des3_setkey(&c->u.des3, key);
    c->own = gk_des3_ecb;
    return finish_cfb(c);
}

gk_crypt *gk_crypt_new_twofish(const uint8_t *key, size_t keylen)
{
    gk_crypt *c = alloc_crypt(GK_CFB_OWN, 16);
    if (!c)
        return NULL;
    if (gk_twofish_setkey(&c->u.twofish, key, keylen) != 0) {
        free(c);
        return NULL;
    }
    c->own = gk_twofish_ecb;
    return finish_cfb(c);
}

/* Called through a volatile pointer so the wipe before free() is not
 * optimised away as a dead store. */
static void *(*const volatile wipe)(void *, int, size_t) = memset;

void gk_crypt_free(gk_crypt *c)
{
    if (c) {
        /* Key schedules and pads are key material. */
        wipe(c, 0, sizeof *c);
        free(c);
    }
}

size_t gk_crypt_block_size(const gk_crypt *c)
{
    return c->bs;
}

void gk_crypt_ecb(const gk_crypt *c, const uint8_t *in, uint8_t *out, size_t len)
{
    if (c->bs)
        ecb(c, in, out, len - len % c->bs);
}

void gk_crypt_bench(const gk_crypt *c, gk_nonce *ng, uint8_t *buf, size_t len,
                    uint64_t iterations, int mode)
{
    if (mode == GK_BENCH_SEAL_MANY) {
        uint8_t *pkts[GK_BENCH_MANY];
        size_t lens[GK_BENCH_MANY];
        for (int i = 0; i < GK_BENCH_MANY; i++) {
            pkts[i] = buf + i * len;
            lens[i] = len;
        }
        for (uint64_t i = 0; i < iterations; i++)
            gk_crypt_encrypt_many(c, ng, pkts, lens, GK_BENCH_MANY);
        return;
    }
    for (uint64_t i = 0; i < iterations; i++) {
        switch (mode) {
        case GK_BENCH_SEAL: gk_crypt_encrypt(c, ng, buf, len); break;
        case GK_BENCH_OPEN: (void)gk_crypt_decrypt(c, buf, len); break;
        case GK_BENCH_ENCRYPT: cipher_forward(c, buf, len); break;
        default: cipher_backward(c, buf, len); break;
        }
    }
}
