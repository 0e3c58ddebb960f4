/* Replay filter of a listening socket with crypto: a bounded, time-windowed
 * record of the 16-byte nonces of authentic packets (checked after the CRC
 * matched, so forged packets never enter it).  Every packet's nonce is fresh
 * random bytes, so a nonce seen twice means a replayed datagram (or the
 * network duplicated one).
 *
 * Two generations of an open-addressing table of keyed 64-bit fingerprints:
 * a nonce is looked up in both and recorded in the current one.  The
 * current generation starts small and doubles whenever it is half full,
 * up to `slots`; it becomes the previous one (and the previous one is
 * forgotten) once it is window_ms old, or half full at `slots`.  A replay
 * is therefore caught while it is at most window_ms old and one of the last
 * slots / 2 nonces recorded; older ones are not (see docs/reliability.md).
 * Sans-I/O: time (ms, u32, wrapping) is passed in. */
#ifndef GK_REPLAY_H
#define GK_REPLAY_H
#include <stdint.h>
#include "common.h"

#define GK_REPLAY_SLOTS     262144  /* largest generation: 2 MiB, 131072 nonces before rotating */
#define GK_REPLAY_WINDOW_MS 30000   /* a generation's lifetime */

typedef struct gk_replay gk_replay;

/* slots: a power of two >= 16 (a generation's largest size).  key: 16 secret bytes for the fingerprint
 * hash, so that chosen nonces (possible without a real cipher) cannot pile
 * up in one probe chain.  NULL on allocation failure or a bad slots. */
gk_replay *gk_replay_new(const uint8_t *key, uint32_t slots, uint32_t window_ms);
void gk_replay_free(gk_replay *r);
/* 1 if nonce (GK_NONCE_SIZE bytes) was seen within the window (a replay);
 * otherwise records it and returns 0. */
int gk_replay_check(gk_replay *r, const uint8_t *nonce, uint32_t now);
/* gk_replay_check on n nonces laid end to end, all at time now (one call
 * for a benchmark timed from Python); returns how many were replays. */
uint32_t gk_replay_check_many(gk_replay *r, const uint8_t *nonces, uint32_t n, uint32_t now);

#endif
