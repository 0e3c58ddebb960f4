/* GF(2^8) arithmetic and the region kernels behind the Reed-Solomon code.
 *
 * Every kernel computes the same thing, gk_gf_mul_matrix: a small matrix of
 * constants times a set of byte regions.  Fusing the whole matrix into one
 * pass is where the speed is: each source vector is loaded once and
 * multiplied into several destination accumulators held in registers, so
 * memory traffic is one read per source and one write per destination.
 *
 * Multiplication by a constant c is linear over GF(2), so it has two cheap
 * SIMD forms: two 16-entry lookups (low and high nibble, vpshufb) or one
 * 8x8 bit-matrix product (gf2p8affineqb).  gf2p8mulb is not usable: it
 * multiplies in the AES field 0x11B, not in 0x11D. */
#include "gf256.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GK_X86 1
#endif

#define TAIL_MAX_SRC 256

static uint8_t gf_exp_tab[512]; /* doubled so log sums need no reduction */
static uint8_t gf_log_tab[256];
static uint8_t gf_mul_tab[256][256];
static uint8_t gf_nib_tab[256][2][16] __attribute__((aligned(32)));
static uint64_t gf_aff_tab[256];

__attribute__((constructor)) static void gf_init_tables(void)
{
    unsigned x = 1;
    for (int i = 0; i < 255; i++) {
        gf_exp_tab[i] = (uint8_t)x;
        gf_exp_tab[i + 255] = (uint8_t)x;
        gf_log_tab[x] = (uint8_t)i;
        x <<= 1;
        if (x & 0x100)
            x ^= 0x11D;
    }
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b++)
            gf_mul_tab[a][b] = (a && b) ? gf_exp_tab[gf_log_tab[a] + gf_log_tab[b]] : 0;
        for (int n = 0; n < 16; n++) {
            gf_nib_tab[a][0][n] = gf_mul_tab[a][n];
            gf_nib_tab[a][1][n] = gf_mul_tab[a][n << 4];
        }
        /* gf2p8affineqb: output bit i = parity(x & matrix byte 7-i), so byte
         * 7-i lists the input bits j whose image c*2^j has bit i set. */
        uint64_t m = 0;
        for (int i = 0; i < 8; i++) {
            unsigned row = 0;
            for (int j = 0; j < 8; j++)
                row |= (unsigned)((gf_mul_tab[a][1u << j] >> i) & 1u) << j;
            m |= (uint64_t)row << (8 * (7 - i));
        }
        gf_aff_tab[a] = m;
    }
}

uint8_t gk_gf_mul(uint8_t a, uint8_t b) { return gf_mul_tab[a][b]; }

uint8_t gk_gf_div(uint8_t a, uint8_t b)
{
    if (a == 0)
        return 0;
    return gf_exp_tab[gf_log_tab[a] + 255 - gf_log_tab[b]];
}

uint8_t gk_gf_inv(uint8_t a) { return gk_gf_div(1, a); }

uint8_t gk_gf_exp(uint8_t a, int n)
{
    if (n == 0)
        return 1;
    if (a == 0)
        return 0;
    return gf_exp_tab[(gf_log_tab[a] * (unsigned)n) % 255];
}

/* ---- portable ---------------------------------------------------------- */

static void matrix_portable(const uint8_t *coef, int nsrc, int ndst,
                            const uint8_t *const *src, uint8_t *const *dst,
                            size_t len, int accumulate)
{
    for (int d = 0; d < ndst; d++) {
        uint8_t *out = dst[d];
        const uint8_t *row = coef + (size_t)d * nsrc;
        for (int s = 0; s < nsrc; s++) {
            const uint8_t *t = gf_mul_tab[row[s]];
            const uint8_t *in = src[s];
            if (s == 0 && !accumulate) {
                for (size_t i = 0; i < len; i++)
                    out[i] = t[in[i]];
            } else {
                for (size_t i = 0; i < len; i++)
                    out[i] ^= t[in[i]];
            }
        }
    }
}

#ifdef GK_X86

/* The vector kernels share one shape: destinations go in groups of at most
 * GROUP (accumulators that fit the register file next to the constants),
 * the body handles one vector column for a compile-time group size so the
 * accumulators stay in registers, and a tail shorter than a vector goes
 * through zero-padded stack copies (or, when overwriting, one overlapping
 * final column, which is idempotent). */

/* ---- AVX2: split-nibble vpshufb ---------------------------------------- */

__attribute__((target("avx2"), always_inline)) static inline void
avx2_column(const uint8_t *const *tab, int nsrc, const int nd, const uint8_t *const *src,
            uint8_t *const *dst, size_t off, int accumulate)
{
    __m256i acc[4];
    const __m256i mask = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 8
    for (int d = 0; d < nd; d++)
        acc[d] = accumulate ? _mm256_loadu_si256((const __m256i *)(dst[d] + off))
                            : _mm256_setzero_si256();
    for (int s = 0; s < nsrc; s++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(src[s] + off));
        __m256i lo = _mm256_and_si256(x, mask);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi64(x, 4), mask);
#pragma GCC unroll 8
        for (int d = 0; d < nd; d++) {
            const uint8_t *t = tab[s * nd + d];
            __m256i tl = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)t));
            __m256i th = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(t + 16)));
            acc[d] = _mm256_xor_si256(acc[d], _mm256_xor_si256(_mm256_shuffle_epi8(tl, lo),
                                                               _mm256_shuffle_epi8(th, hi)));
        }
    }
#pragma GCC unroll 8
    for (int d = 0; d < nd; d++)
        _mm256_storeu_si256((__m256i *)(dst[d] + off), acc[d]);
}

__attribute__((target("avx2"), always_inline)) static inline void
avx2_run(const uint8_t *const *tab, int nsrc, const int nd, const uint8_t *const *src,
         uint8_t *const *dst, size_t start, size_t end, int accumulate)
{
    for (size_t off = start; off + 32 <= end; off += 32)
        avx2_column(tab, nsrc, nd, src, dst, off, accumulate);
}

__attribute__((target("avx2"))) static void
avx2_columns(const uint8_t *coef, int nsrc, int nd, const uint8_t *const *src,
             uint8_t *const *dst, size_t start, size_t end, int accumulate)
{
    const uint8_t *tab[4 * TAIL_MAX_SRC]; /* source-major nibble tables */
    for (int s = 0; s < nsrc; s++)
        for (int d = 0; d < nd; d++)
            tab[s * nd + d] = gf_nib_tab[coef[d * nsrc + s]][0];
    switch (nd) {
    case 4: avx2_run(tab, nsrc, 4, src, dst, start, end, accumulate); break;
    case 3: avx2_run(tab, nsrc, 3, src, dst, start, end, accumulate); break;
    case 2: avx2_run(tab, nsrc, 2, src, dst, start, end, accumulate); break;
    default: avx2_run(tab, nsrc, 1, src, dst, start, end, accumulate); break;
    }
}

/* ---- GFNI on 256-bit vectors ------------------------------------------- */

__attribute__((target("avx2,gfni"), always_inline)) static inline void
gfni_column(const uint64_t *mat, int nsrc, const int nd, const uint8_t *const *src,
            uint8_t *const *dst, size_t off, int accumulate)
{
    __m256i acc[6];
#pragma GCC unroll 8
    for (int d = 0; d < nd; d++)
        acc[d] = accumulate ? _mm256_loadu_si256((const __m256i *)(dst[d] + off))
                            : _mm256_setzero_si256();
    for (int s = 0; s < nsrc; s++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(src[s] + off));
#pragma GCC unroll 8
        for (int d = 0; d < nd; d++) {
            __m256i m = _mm256_set1_epi64x((long long)mat[s * nd + d]);
            acc[d] = _mm256_xor_si256(acc[d], _mm256_gf2p8affine_epi64_epi8(x, m, 0));
        }
    }
#pragma GCC unroll 8
    for (int d = 0; d < nd; d++)
        _mm256_storeu_si256((__m256i *)(dst[d] + off), acc[d]);
}

__attribute__((target("avx2,gfni"), always_inline)) static inline void
gfni_run(const uint64_t *mat, int nsrc, const int nd, const uint8_t *const *src,
         uint8_t *const *dst, size_t start, size_t end, int accumulate)
{
    for (size_t off = start; off + 32 <= end; off += 32)
        gfni_column(mat, nsrc, nd, src, dst, off, accumulate);
}

__attribute__((target("avx2,gfni"))) static void
gfni_columns(const uint8_t *coef, int nsrc, int nd, const uint8_t *const *src,
             uint8_t *const *dst, size_t start, size_t end, int accumulate)
{
    uint64_t mat[6 * TAIL_MAX_SRC]; /* source-major, so the inner loop walks it */
    for (int s = 0; s < nsrc; s++)
        for (int d = 0; d < nd; d++)
            mat[s * nd + d] = gf_aff_tab[coef[d * nsrc + s]];
    switch (nd) {
    case 6: gfni_run(mat, nsrc, 6, src, dst, start, end, accumulate); break;
    case 5: gfni_run(mat, nsrc, 5, src, dst, start, end, accumulate); break;
    case 4: gfni_run(mat, nsrc, 4, src, dst, start, end, accumulate); break;
    case 3: gfni_run(mat, nsrc, 3, src, dst, start, end, accumulate); break;
    case 2: gfni_run(mat, nsrc, 2, src, dst, start, end, accumulate); break;
    default: gfni_run(mat, nsrc, 1, src, dst, start, end, accumulate); break;
    }
}

/* ---- GFNI on 512-bit vectors, masked tail ------------------------------ */

__attribute__((target("avx512f,avx512bw,gfni"), always_inline)) static inline void
gfni512_column(const uint64_t *mat, int nsrc, const int nd, const uint8_t *const *src,
               uint8_t *const *dst, size_t off, __mmask64 k, int accumulate)
{
    __m512i acc[8];
#pragma GCC unroll 8
    for (int d = 0; d < nd; d++)
        acc[d] = accumulate ? _mm512_maskz_loadu_epi8(k, dst[d] + off) : _mm512_setzero_si512();
    /* Sources in pairs: one vpternlogq folds two products into an
     * accumulator, leaving the affine unit as the only busy port. */
    int s = 0;
    for (; s + 2 <= nsrc; s += 2) {
        __m512i x0 = _mm512_maskz_loadu_epi8(k, src[s] + off);
        __m512i x1 = _mm512_maskz_loadu_epi8(k, src[s + 1] + off);
#pragma GCC unroll 8
        for (int d = 0; d < nd; d++) {
            __m512i p0 = _mm512_gf2p8affine_epi64_epi8(x0, _mm512_set1_epi64((long long)mat[s * nd + d]), 0);
            __m512i p1 = _mm512_gf2p8affine_epi64_epi8(x1, _mm512_set1_epi64((long long)mat[(s + 1) * nd + d]), 0);
            acc[d] = _mm512_ternarylogic_epi64(acc[d], p0, p1, 0x96);
        }
    }
    if (s < nsrc) {
        __m512i x = _mm512_maskz_loadu_epi8(k, src[s] + off);
#pragma GCC unroll 8
        for (int d = 0; d < nd; d++) {
            __m512i m = _mm512_set1_epi64((long long)mat[s * nd + d]);
            acc[d] = _mm512_xor_si512(acc[d], _mm512_gf2p8affine_epi64_epi8(x, m, 0));
        }
    }
#pragma GCC unroll 8
    for (int d = 0; d < nd; d++)
        _mm512_mask_storeu_epi8(dst[d] + off, k, acc[d]);
}

__attribute__((target("avx512f,avx512bw,gfni"), always_inline)) static inline void
gfni512_run(const uint64_t *mat, int nsrc, const int nd, const uint8_t *const *src,
            uint8_t *const *dst, size_t len, int accumulate)
{
    size_t off = 0;
    for (; off + 64 <= len; off += 64)
        gfni512_column(mat, nsrc, nd, src, dst, off, ~(__mmask64)0, accumulate);
    if (off < len)
        gfni512_column(mat, nsrc, nd, src, dst, off, ((__mmask64)1 << (len - off)) - 1, accumulate);
}

__attribute__((target("avx512f,avx512bw,gfni"))) static void
gfni512_group(const uint8_t *coef, int nsrc, int nd, const uint8_t *const *src,
              uint8_t *const *dst, size_t len, int accumulate)
{
    uint64_t mat[8 * TAIL_MAX_SRC]; /* source-major, so the inner loop walks it */
    for (int s = 0; s < nsrc; s++)
        for (int d = 0; d < nd; d++)
            mat[s * nd + d] = gf_aff_tab[coef[d * nsrc + s]];
    switch (nd) {
    case 8: gfni512_run(mat, nsrc, 8, src, dst, len, accumulate); break;
    case 7: gfni512_run(mat, nsrc, 7, src, dst, len, accumulate); break;
    case 6: gfni512_run(mat, nsrc, 6, src, dst, len, accumulate); break;
    case 5: gfni512_run(mat, nsrc, 5, src, dst, len, accumulate); break;
    case 4: gfni512_run(mat, nsrc, 4, src, dst, len, accumulate); break;
    case 3: gfni512_run(mat, nsrc, 3, src, dst, len, accumulate); break;
    case 2: gfni512_run(mat, nsrc, 2, src, dst, len, accumulate); break;
    default: gfni512_run(mat, nsrc, 1, src, dst, len, accumulate); break;
    }
}

typedef void (*columns_fn)(const uint8_t *coef, int nsrc, int nd, const uint8_t *const *src,
                           uint8_t *const *dst, size_t start, size_t end, int accumulate);

/* One group of destinations with a 32-byte-vector kernel: whole columns in
 * place, then the tail. */
static void group_32(columns_fn columns, const uint8_t *coef, int nsrc, int nd,
                     const uint8_t *const *src, uint8_t *const *dst, size_t len, int accumulate)
{
    size_t whole = len & ~(size_t)31;
    columns(coef, nsrc, nd, src, dst, 0, whole, accumulate);
    if (whole == len)
        return;
    if (!accumulate && len >= 32) {
        /* Recomputing a few finished bytes writes the same values again. */
        const uint8_t *s2[TAIL_MAX_SRC];
        uint8_t *d2[8];
        for (int s = 0; s < nsrc; s++)
            s2[s] = src[s] + (len - 32);
        for (int d = 0; d < nd; d++)
            d2[d] = dst[d] + (len - 32);
        columns(coef, nsrc, nd, s2, d2, 0, 32, 0);
        return;
    }
    size_t rem = len - whole;
    uint8_t sbuf[TAIL_MAX_SRC][32];
    uint8_t dbuf[8][32];
    const uint8_t *s2[TAIL_MAX_SRC];
    uint8_t *d2[8];
    for (int s = 0; s < nsrc; s++) {
        memset(sbuf[s] + rem, 0, 32 - rem);
        memcpy(sbuf[s], src[s] + whole, rem);
        s2[s] = sbuf[s];
    }
    for (int d = 0; d < nd; d++) {
        if (accumulate)
            memcpy(dbuf[d], dst[d] + whole, rem);
        d2[d] = dbuf[d];
    }
    columns(coef, nsrc, nd, s2, d2, 0, 32, accumulate);
    for (int d = 0; d < nd; d++)
        memcpy(dst[d] + whole, dbuf[d], rem);
}

static void matrix_avx2(const uint8_t *coef, int nsrc, int ndst, const uint8_t *const *src,
                        uint8_t *const *dst, size_t len, int accumulate)
{
    for (int d = 0; d < ndst; d += 4) {
        int nd = ndst - d < 4 ? ndst - d : 4;
        group_32(avx2_columns, coef + (size_t)d * nsrc, nsrc, nd, src, dst + d, len, accumulate);
    }
}

static void matrix_gfni(const uint8_t *coef, int nsrc, int ndst, const uint8_t *const *src,
                        uint8_t *const *dst, size_t len, int accumulate)
{
    for (int d = 0; d < ndst; d += 6) {
        int nd = ndst - d < 6 ? ndst - d : 6;
        group_32(gfni_columns, coef + (size_t)d * nsrc, nsrc, nd, src, dst + d, len, accumulate);
    }
}

static void matrix_gfni512(const uint8_t *coef, int nsrc, int ndst, const uint8_t *const *src,
                           uint8_t *const *dst, size_t len, int accumulate)
{
    for (int d = 0; d < ndst; d += 8) {
        int nd = ndst - d < 8 ? ndst - d : 8;
        gfni512_group(coef + (size_t)d * nsrc, nsrc, nd, src, dst + d, len, accumulate);
    }
}

static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

static int has_gfni(void) { return has_avx2() && __builtin_cpu_supports("gfni"); }

static int has_gfni512(void)
{
    return has_gfni() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
#endif /* GK_X86 */

static int has_nothing_special(void) { return 1; }

typedef void (*matrix_fn)(const uint8_t *coef, int nsrc, int ndst, const uint8_t *const *src,
                          uint8_t *const *dst, size_t len, int accumulate);

static const struct kernel {
    const char *name;
    int (*supported)(void);
    matrix_fn fn;
} kernels[] = {
    /* best first: the default is the first one the CPU supports */
#ifdef GK_X86
    {"gfni512", has_gfni512, matrix_gfni512},
    {"gfni", has_gfni, matrix_gfni},
    {"avx2", has_avx2, matrix_avx2},
#endif
    {"portable", has_nothing_special, matrix_portable},
};

#define NKERNELS (sizeof kernels / sizeof kernels[0])

static const struct kernel *current;

static const struct kernel *find_kernel(const char *name)
{
    for (size_t i = 0; i < NKERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0)
            return &kernels[i];
    return NULL;
}

static const struct kernel *active(void)
{
    if (current)
        return current;
    const char *want = getenv("GKCP_GF_KERNEL");
    const struct kernel *k = want ? find_kernel(want) : NULL;
    if (k && k->supported()) {
        current = k;
        return current;
    }
    for (size_t i = 0; i < NKERNELS; i++) {
        if (kernels[i].supported()) {
            current = &kernels[i];
            break;
        }
    }
    return current;
}

int gk_gf_kernel_supported(const char *name)
{
    const struct kernel *k = find_kernel(name);
    return k && k->supported();
}

int gk_gf_set_kernel(const char *name)
{
    const struct kernel *k = find_kernel(name);
    if (!k || !k->supported())
        return -1;
    current = k;
    return 0;
}

const char *gk_gf_kernel_name(void) { return active()->name; }

void gk_gf_mul_matrix(const uint8_t *coef, int nsrc, int ndst, const uint8_t *const *src,
                      uint8_t *const *dst, size_t len, int accumulate)
{
    if (len == 0 || ndst <= 0)
        return;
    if (nsrc <= 0) {
        if (!accumulate)
            for (int d = 0; d < ndst; d++)
                memset(dst[d], 0, len);
        return;
    }
    if (nsrc > TAIL_MAX_SRC) /* beyond the vector kernels' tail buffers; RS never needs it */
        matrix_portable(coef, nsrc, ndst, src, dst, len, accumulate);
    else
        active()->fn(coef, nsrc, ndst, src, dst, len, accumulate);
}

void gk_gf_muladd_region(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    gk_gf_mul_matrix(&c, 1, 1, &src, &dst, len, 1);
}

void gk_gf_mul_region(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    gk_gf_mul_matrix(&c, 1, 1, &src, &dst, len, 0);
}
