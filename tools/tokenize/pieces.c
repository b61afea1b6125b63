/* pieces: pieces by id, and piece lookup by hashing. */
#include "pieces.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

void pieces_init(piece_table *v) { memset(v, 0, sizeof *v); }

static void *resize(void *p, size_t bytes, const char *what)
{
    p = realloc(p, bytes);
    if (!p) sl_fatal("out of memory growing the tokenizer's %s to %zu bytes", what, bytes);
    return p;
}

static void fit_ids(piece_table *v, int32_t id)
{
    if (id < v->cap) return;
    int32_t cap = v->cap ? v->cap : 1024;
    while (cap <= id) cap *= 2;
    v->starts = resize(v->starts, (size_t)cap * sizeof *v->starts, "pieces");
    v->lens = resize(v->lens, (size_t)cap * sizeof *v->lens, "pieces");
    v->scores = resize(v->scores, (size_t)cap * sizeof *v->scores, "scores");
    for (int32_t i = v->cap; i < cap; i++) v->lens[i] = -1, v->starts[i] = 0, v->scores[i] = 0;
    v->cap = cap;
}

void pieces_put(piece_table *v, int32_t id, const char *s, int len, float score)
{
    fit_ids(v, id);
    if (!v->bytes || v->n_bytes + len > v->cap_bytes) { /* allocated also for a first piece that is empty */
        int64_t cap = v->cap_bytes ? v->cap_bytes : 1 << 16;
        while (cap < v->n_bytes + len) cap *= 2;
        v->bytes = resize(v->bytes, (size_t)cap, "piece bytes");
        v->cap_bytes = cap;
    }
    memcpy(v->bytes + v->n_bytes, s, (size_t)len);
    v->starts[id] = v->n_bytes;
    v->lens[id] = len;
    v->scores[id] = score;
    v->n_bytes += len;
    if (id >= v->n) v->n = id + 1;
    if (len > v->max_len) v->max_len = len;
}

static uint32_t hash_bytes(const char *s, int len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

void pieces_index(piece_table *v, const uint8_t *findable)
{
    uint32_t size = 1;
    while (size < 2u * (uint32_t)v->n + 2) size *= 2;
    free(v->slots);
    v->slot_mask = size - 1;
    v->slots = sl_malloc(size * sizeof *v->slots, "tokenizer hash table");
    memset(v->slots, 0xff, size * sizeof *v->slots);
    for (int32_t id = 0; id < v->n; id++) {
        if (v->lens[id] < 0 || (findable && !findable[id])) continue;
        if (pieces_find(v, pieces_text(v, id), v->lens[id]) >= 0) continue; /* keep the lowest id */
        uint32_t s = hash_bytes(pieces_text(v, id), v->lens[id]) & v->slot_mask;
        while (v->slots[s] >= 0) s = (s + 1) & v->slot_mask;
        v->slots[s] = id;
    }
}

int32_t pieces_find(const piece_table *v, const char *s, int len)
{
    for (uint32_t i = hash_bytes(s, len) & v->slot_mask;; i = (i + 1) & v->slot_mask) {
        int32_t id = v->slots[i];
        if (id < 0) return -1;
        if (v->lens[id] == len && memcmp(pieces_text(v, id), s, (size_t)len) == 0) return id;
    }
}

void pieces_free(piece_table *v)
{
    free(v->starts);
    free(v->lens);
    free(v->scores);
    free(v->bytes);
    free(v->slots);
    memset(v, 0, sizeof *v);
}
