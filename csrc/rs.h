/* Systematic Reed-Solomon erasure code over GF(2^8), built the way
 * klauspost/reedsolomon builds its default code (Vandermonde V[r][c] = r^c,
 * made systematic by the inverse of its top square), so parity is
 * byte-identical to kcp-go's.
 *
 * Codecs are shared: gk_rs_new returns the process-wide codec for a shape
 * (reference counted), because a server runs thousands of sessions with one
 * shape and the codec's cache of inverted matrices is worth sharing.  Like
 * the rest of the core this is single-threaded. */
#ifndef GK_RS_H
#define GK_RS_H
#include <stddef.h>
#include <stdint.h>

#define GK_RS_MAX_SHARDS 256

typedef struct gk_rs gk_rs;

/* NULL unless ds >= 1, ps >= 1, ds + ps <= 256 (klauspost's limits with
 * parity), or on allocation failure. */
gk_rs *gk_rs_new(int ds, int ps);
/* Drops one reference; NULL is ignored. */
void gk_rs_free(gk_rs *rs);
/* For tests only (tests/test_fec.py compares the codec's shape and matrix
 * with klauspost's): the shape, and the ps x ds parity rows of the encoding
 * matrix copied into out. */
int gk_rs_data_shards(const gk_rs *rs);
int gk_rs_parity_shards(const gk_rs *rs);
void gk_rs_parity_matrix(const gk_rs *rs, uint8_t *out);

/* shards[0..ds) are read, shards[ds..ds+ps) written; all len bytes long. */
void gk_rs_encode(gk_rs *rs, uint8_t *const *shards, size_t len);
/* present[k] != 0 marks shards[k] as received.  Every missing data shard is
 * rebuilt into shards[k] (which must point at len writable bytes); a missing
 * parity shard is rebuilt only if shards[k] is not NULL.  Returns 0, or -1
 * (nothing written) if fewer than ds shards are present. */
int gk_rs_reconstruct(gk_rs *rs, uint8_t *const *shards, const uint8_t *present, size_t len);

/* Benchmark helper: op 0 runs gk_rs_encode, op 1 gk_rs_reconstruct, iters
 * times in a row, so a caller can time many groups with one foreign call. */
void gk_rs_bench(gk_rs *rs, int op, uint8_t *const *shards, const uint8_t *present,
                 size_t len, long iters);

#endif
