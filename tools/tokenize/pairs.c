/* pairs: open addressing on a 64-bit key, sized once for the merges list. */
#include "pairs.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static uint64_t key_of(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1; }

/* splitmix64's finalizer: every key bit reaches the low bits the mask keeps */
static uint64_t slot_of(uint64_t key)
{
    key = (key ^ (key >> 30)) * 0xBF58476D1CE4E5B9ull;
    key = (key ^ (key >> 27)) * 0x94D049BB133111EBull;
    return key ^ (key >> 31);
}

void pairs_init(pair_map *m, int64_t expected)
{
    uint64_t size = 16;
    while (size < 2 * (uint64_t)expected + 2) size *= 2;
    m->mask = size - 1;
    m->n = 0;
    m->keys = sl_calloc(size, sizeof *m->keys, "merge table");
    m->rank = sl_malloc(size * sizeof *m->rank, "merge table");
    m->merged = sl_malloc(size * sizeof *m->merged, "merge table");
}

void pairs_put(pair_map *m, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    if (2 * (uint64_t)(m->n + 1) > m->mask + 1) sl_fatal("merge table overfull (%lld merges)", (long long)m->n);
    uint64_t k = key_of(left, right), i = slot_of(k) & m->mask;
    for (; m->keys[i]; i = (i + 1) & m->mask)
        if (m->keys[i] == k) return;
    m->keys[i] = k;
    m->rank[i] = rank;
    m->merged[i] = merged;
    m->n++;
}

int32_t pairs_find(const pair_map *m, int32_t left, int32_t right, int32_t *merged)
{
    if (!m->keys || left < 0 || right < 0) return -1;
    uint64_t k = key_of(left, right);
    for (uint64_t i = slot_of(k) & m->mask; m->keys[i]; i = (i + 1) & m->mask)
        if (m->keys[i] == k) {
            *merged = m->merged[i];
            return m->rank[i];
        }
    return -1;
}

void pairs_free(pair_map *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}
