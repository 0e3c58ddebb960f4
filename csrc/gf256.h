/* GF(2^8) with polynomial x^8+x^4+x^3+x^2+1 (0x11D), generator 2: the field
 * klauspost/reedsolomon (and so kcp-go's FEC) computes in.  Region kernels
 * run on the best SIMD path the CPU offers, chosen at first use; the
 * environment variable GKCP_GF_KERNEL (portable, avx2, gfni, gfni512) or
 * gk_gf_set_kernel overrides the choice. */
#ifndef GK_GF256_H
#define GK_GF256_H
#include <stddef.h>
#include <stdint.h>

uint8_t gk_gf_mul(uint8_t a, uint8_t b);
/* b != 0 */
uint8_t gk_gf_div(uint8_t a, uint8_t b);
/* a != 0 */
uint8_t gk_gf_inv(uint8_t a);
/* a^n with 0^0 = 1, as klauspost's galExp */
uint8_t gk_gf_exp(uint8_t a, int n);

/* dst ^= c * src over len bytes. */
void gk_gf_muladd_region(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len);
/* dst = c * src over len bytes.  For tests only (tests/test_gf256.py checks
 * the region code against the tables through it). */
void gk_gf_mul_region(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len);

/* Matrix times regions, fused: for each d < ndst,
 *   dst[d] = sum over s < nsrc of coef[d*nsrc + s] * src[s]   (accumulate = 0)
 *   dst[d] ^= that sum                                         (accumulate != 0)
 * over len bytes.  Each source byte is read once per group of up to four
 * destinations.  Regions may have any alignment; no byte outside
 * [p, p+len) is read or written.  dst regions must not overlap sources. */
void gk_gf_mul_matrix(const uint8_t *coef, int nsrc, int ndst,
                      const uint8_t *const *src, uint8_t *const *dst,
                      size_t len, int accumulate);

/* Select a kernel by name; -1 if unknown or the CPU lacks it. */
int gk_gf_set_kernel(const char *name);
/* Name of the kernel in use (selecting the default one if none is yet). */
const char *gk_gf_kernel_name(void);
/* 1 if this CPU can run the named kernel. */
int gk_gf_kernel_supported(const char *name);

#endif
