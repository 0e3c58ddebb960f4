/* The updater's timer heap: every session of an engine ordered by its next
 * flush time (kcp-go's timedsched, one heap instead of a goroutine per CPU).
 * Times are compared as wrapping differences, valid while all due times lie
 * within 24 days of each other. */
#include <stdlib.h>

#include "sess_impl.h"

static int earlier(const gk_sess *a, const gk_sess *b)
{
    return (int32_t)(a->due - b->due) < 0;
}

static void place(gk_engine *eng, int i, gk_sess *s)
{
    eng->heap[i] = s;
    s->heap_index = i;
}

static void sift_up(gk_engine *eng, int i)
{
    gk_sess *s = eng->heap[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!earlier(s, eng->heap[parent]))
            break;
        place(eng, i, eng->heap[parent]);
        i = parent;
    }
    place(eng, i, s);
}

static void sift_down(gk_engine *eng, int i)
{
    gk_sess *s = eng->heap[i];
    for (;;) {
        int child = 2 * i + 1;
        if (child >= eng->heap_len)
            break;
        if (child + 1 < eng->heap_len && earlier(eng->heap[child + 1], eng->heap[child]))
            child++;
        if (!earlier(eng->heap[child], s))
            break;
        place(eng, i, eng->heap[child]);
        i = child;
    }
    place(eng, i, s);
}

int gk_sched_put(gk_engine *eng, gk_sess *s, uint32_t due)
{
    /* The updater sleeps until `planned`; anything due before that must
     * wake it (Python asks gk_engine_pending after its calls). */
    if ((int32_t)(due - eng->planned) < 0)
        eng->wake = 1;
    if (s->heap_index >= 0) {
        uint32_t old = s->due;
        s->due = due;
        if ((int32_t)(due - old) < 0)
            sift_up(eng, s->heap_index);
        else
            sift_down(eng, s->heap_index);
        return 0;
    }
    if (eng->heap_len == eng->heap_cap) {
        int cap = eng->heap_cap ? eng->heap_cap * 2 : 64;
        gk_sess **grown = realloc(eng->heap, (size_t)cap * sizeof(*grown));
        if (!grown)
            return -1;
        eng->heap = grown;
        eng->heap_cap = cap;
    }
    s->due = due;
    place(eng, eng->heap_len++, s);
    sift_up(eng, s->heap_index);
    return 0;
}

void gk_sched_remove(gk_engine *eng, gk_sess *s)
{
    int i = s->heap_index;
    if (i < 0)
        return;
    s->heap_index = -1;
    gk_sess *last = eng->heap[--eng->heap_len];
    if (i == eng->heap_len)
        return;
    place(eng, i, last);
    sift_up(eng, i);
    sift_down(eng, last->heap_index);
}

gk_sess *gk_sched_peek(const gk_engine *eng)
{
    return eng->heap_len ? eng->heap[0] : NULL;
}
