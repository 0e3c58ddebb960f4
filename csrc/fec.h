/* kcp-go's FEC framing (docs/wire.md §3) over the Reed-Solomon code in rs.h.
 * Sans-I/O: packets in, packets out; time is passed in. */
#ifndef GK_FEC_H
#define GK_FEC_H
#include <stdint.h>
#include "common.h"

typedef struct gk_fec_encoder gk_fec_encoder;
typedef struct gk_fec_decoder gk_fec_decoder;

/* 1 if (ds, ps) is a shape FEC can run with: ds >= 1, ps >= 1, ds + ps <= 256
 * (kcp-go runs FEC exactly when reedsolomon.New(ds, ps) succeeds with ps > 0). */
int gk_fec_shape_ok(int ds, int ps);

/* NULL if the shape is not ok or on allocation failure. */
gk_fec_encoder *gk_fec_encoder_new(int ds, int ps);
void gk_fec_encoder_free(gk_fec_encoder *enc);
/* pkt points at the 8 bytes of FEC header room followed by the KCP bytes;
 * len counts both (8 < len <= GK_MTU_LIMIT).  Writes seqid, type 0xF1 and the
 * size field into pkt and keeps a copy of the shard.  When pkt completes a
 * group, returns ps and points *parity at ps encoder-owned packets (each
 * starting with its FEC header, all *parity_len bytes long) valid until the
 * next call; otherwise returns 0. */
int gk_fec_encode(gk_fec_encoder *enc, uint8_t *pkt, int len,
                  uint8_t *const **parity, int *parity_len);
/* Each parity packet has GK_CRYPT_HEADER writable encoder-owned bytes in
 * front of it, so it can be sealed in place: write the crypto header at
 * parity[k] - GK_CRYPT_HEADER and encrypt parity_len + GK_CRYPT_HEADER bytes
 * from there.  Returns -1 (nothing written) for a len out of range. */
/* For tests only: start the seqid counter elsewhere (e.g. just below the wrap). */
void gk_fec_encoder_set_next(gk_fec_encoder *enc, uint32_t next);

/* One group never rebuilds more than min(ds, ps) <= 128 data shards: an out
 * array this long always suffices. */
#define GK_FEC_MAX_RECOVERED 128

/* Recovered KCP payloads (the bytes after a rebuilt shard's size field). */
typedef struct gk_fec_recovered {
    const uint8_t *data;
    int len;
} gk_fec_recovered;

/* ds = ps = 0: FEC not configured; the decoder learns the peer's shape by
 * autotune and never reconstructs before that shape is confirmed. */
gk_fec_decoder *gk_fec_decoder_new(int ds, int ps);
void gk_fec_decoder_free(gk_fec_decoder *dec);
/* Feed one FEC packet (starting at its FEC header; types 0xF1 and 0xF2).
 * The caller has already handed a data packet's KCP bytes to KCP.  Returns
 * the number of payloads recovered into out[0..max_out) (decoder-owned memory,
 * valid until the next call), or -1 for a malformed packet (counted in
 * InErrs).  Counters: FECParityShards, FECRecovered, FECErrs, FECShortShards,
 * FECShapeErrs. */
int gk_fec_decode(gk_fec_decoder *dec, const uint8_t *pkt, int len, uint32_t now,
                  gk_fec_recovered *out, int max_out);
/* For tests only (tests/test_fec.py, the fuzz harness): the shape the
 * decoder groups by ((0,0) if none yet) through ds/ps, returning 1 if it is
 * confirmed (reconstruction allowed), else 0; and the packets waiting in the
 * decoder's queue. */
int gk_fec_decoder_shape(const gk_fec_decoder *dec, int *ds, int *ps);
int gk_fec_decoder_queued(const gk_fec_decoder *dec);

#endif
