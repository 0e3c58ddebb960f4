/* The nonce replay filter (replay.h). */
#include "replay.h"

#include <stdlib.h>
#include <string.h>

/* A generation starts this small and doubles while it fills faster than
 * its window, so a quiet listener keeps a few KiB and a busy one grows to
 * the configured size. */
#define FIRST_SLOTS 1024u

typedef struct {
    uint64_t *slots;   /* fingerprints; 0 marks an empty slot */
    uint32_t mask;     /* slots - 1 */
    uint32_t count;
} generation;

struct gk_replay {
    uint64_t k0, k1;
    generation current, previous;
    uint32_t max_slots;
    uint32_t window_ms;
    uint32_t started;  /* when the current generation began */
    int fresh;         /* nothing recorded yet: started is unset */
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

static int gen_init(generation *g, uint32_t slots)
{
    g->slots = calloc(slots, sizeof(uint64_t));
    g->mask = slots - 1;
    g->count = 0;
    return g->slots ? 0 : -1;
}

gk_replay *gk_replay_new(const uint8_t *key, uint32_t slots, uint32_t window_ms)
{
    if (slots < 16 || (slots & (slots - 1)))
        return NULL;
    gk_replay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    uint32_t first = slots < FIRST_SLOTS ? slots : FIRST_SLOTS;
    if (gen_init(&r->current, first) < 0 || gen_init(&r->previous, first) < 0) {
        gk_replay_free(r);
        return NULL;
    }
    memcpy(&r->k0, key, 8);
    memcpy(&r->k1, key + 8, 8);
    r->max_slots = slots;
    r->window_ms = window_ms;
    r->fresh = 1;
    return r;
}

void gk_replay_free(gk_replay *r)
{
    if (!r)
        return;
    free(r->current.slots);
    free(r->previous.slots);
    free(r);
}

static void gen_clear(generation *g)
{
    memset(g->slots, 0, ((size_t)g->mask + 1) * sizeof(uint64_t));
    g->count = 0;
}

static void gen_put(generation *g, uint64_t fp)
{
    uint32_t i = (uint32_t)fp & g->mask;
    while (g->slots[i])
        i = (i + 1) & g->mask;
    g->slots[i] = fp;
    g->count++;
}

/* Doubles the current generation; -1 (nothing changed) if out of memory. */
static int grow(gk_replay *r)
{
    generation bigger;
    if (gen_init(&bigger, (r->current.mask + 1) * 2) < 0)
        return -1;
    for (uint32_t i = 0; i <= r->current.mask; i++)
        if (r->current.slots[i])
            gen_put(&bigger, r->current.slots[i]);
    free(r->current.slots);
    r->current = bigger;
    return 0;
}

static void rotate(gk_replay *r, uint32_t now, int forget_both)
{
    generation t = r->previous;
    r->previous = r->current;
    /* the next generation will likely need the size this one grew to */
    generation sized;
    if (t.mask < r->previous.mask && gen_init(&sized, r->previous.mask + 1) == 0) {
        free(t.slots);
        t = sized;
    }
    r->current = t;
    gen_clear(&r->current);
    if (forget_both)
        gen_clear(&r->previous);
    r->started = now;
}

/* Linear probing stays short below half load; a table never gets fuller,
 * so every probe sequence ends at an empty slot. */
static int contains(const generation *g, uint64_t fp)
{
    for (uint32_t i = (uint32_t)fp & g->mask;; i = (i + 1) & g->mask) {
        if (g->slots[i] == fp)
            return 1;
        if (g->slots[i] == 0)
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
    if (age >= r->window_ms)
        rotate(r, now, age / 2 >= r->window_ms);
    else if (r->current.count >= (r->current.mask + 1) / 2 &&
             (r->current.mask + 1 >= r->max_slots || grow(r) < 0))
        rotate(r, now, 0);
    uint64_t fp = fingerprint(r, nonce);
    /* both tables may be far larger than the caches: start the second
     * miss while the first one is waited for */
    __builtin_prefetch(&r->current.slots[(uint32_t)fp & r->current.mask], 1);
    if (contains(&r->previous, fp) || contains(&r->current, fp))
        return 1;
    gen_put(&r->current, fp);
    return 0;
}

uint32_t gk_replay_check_many(gk_replay *r, const uint8_t *nonces, uint32_t n, uint32_t now)
{
    uint32_t seen = 0;
    for (uint32_t i = 0; i < n; i++)
        seen += (uint32_t)gk_replay_check(r, nonces + (size_t)i * GK_NONCE_SIZE, now);
    return seen;
}
