/* The nonce replay filter (replay.h). */
#include "replay.h"

#include <stdlib.h>
#include <string.h>

struct gk_replay {
    uint64_t k0, k1;
    uint64_t *current, *previous; /* fingerprints; 0 marks an empty slot */
    uint32_t mask;                /* slots - 1 */
    uint32_t limit;               /* entries of a generation before it rotates */
    uint32_t count;               /* entries in the current generation */
    uint32_t window_ms;
    uint32_t started;             /* when the current generation began */
    int fresh;                    /* nothing recorded yet: started is unset */
};

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The nonces of authentic packets are random, so a keyed multiply-xorshift
 * mix of the two halves is as good as a cryptographic hash here: an attacker
 * who does not know the key cannot aim nonces at one slot. */
static uint64_t fingerprint(const gk_replay *r, const uint8_t *nonce)
{
    uint64_t h = (load64(nonce) ^ r->k0) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
    h = (h ^ load64(nonce + 8) ^ r->k1) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return h ? h : 1;
}

gk_replay *gk_replay_new(const uint8_t *key, uint32_t slots, uint32_t window_ms)
{
    if (slots < 16 || (slots & (slots - 1)))
        return NULL;
    gk_replay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->current = calloc(slots, sizeof(uint64_t));
    r->previous = calloc(slots, sizeof(uint64_t));
    if (!r->current || !r->previous) {
        gk_replay_free(r);
        return NULL;
    }
    memcpy(&r->k0, key, 8);
    memcpy(&r->k1, key + 8, 8);
    r->mask = slots - 1;
    r->limit = slots / 2; /* linear probing stays short below half load */
    r->window_ms = window_ms;
    r->fresh = 1;
    return r;
}

void gk_replay_free(gk_replay *r)
{
    if (!r)
        return;
    free(r->current);
    free(r->previous);
    free(r);
}

static void rotate(gk_replay *r, uint32_t now, int forget_both)
{
    uint64_t *t = r->previous;
    r->previous = r->current;
    r->current = t;
    size_t bytes = ((size_t)r->mask + 1) * sizeof(uint64_t);
    memset(r->current, 0, bytes);
    if (forget_both)
        memset(r->previous, 0, bytes);
    r->count = 0;
    r->started = now;
}

static int contains(const gk_replay *r, const uint64_t *table, uint64_t fp)
{
    for (uint32_t i = (uint32_t)fp & r->mask;; i = (i + 1) & r->mask) {
        if (table[i] == fp)
            return 1;
        if (table[i] == 0)
            return 0;
    }
}

int gk_replay_check(gk_replay *r, const uint8_t *nonce, uint32_t now)
{
    if (r->fresh) {
        r->started = now;
        r->fresh = 0;
    }
    /* unsigned age: the clock only moves forward */
    uint32_t age = now - r->started;
    if (age >= r->window_ms || r->count >= r->limit)
        rotate(r, now, age / 2 >= r->window_ms);
    uint64_t fp = fingerprint(r, nonce);
    /* both tables are far larger than the caches: start the second miss
     * while the first one is waited for */
    __builtin_prefetch(&r->current[(uint32_t)fp & r->mask], 1);
    if (contains(r, r->previous, fp))
        return 1;
    uint32_t i = (uint32_t)fp & r->mask;
    while (r->current[i]) {
        if (r->current[i] == fp)
            return 1;
        i = (i + 1) & r->mask;
    }
    r->current[i] = fp;
    r->count++;
    return 0;
}

uint32_t gk_replay_check_many(gk_replay *r, const uint8_t *nonces, uint32_t n, uint32_t now)
{
    uint32_t seen = 0;
    for (uint32_t i = 0; i < n; i++)
        seen += (uint32_t)gk_replay_check(r, nonces + (size_t)i * GK_NONCE_SIZE, now);
    return seen;
}
