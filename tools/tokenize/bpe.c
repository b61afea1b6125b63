/* bpe: encoding in O(n log n). The symbols of a word are spans of it in a linked list; candidate
 * merges sit in a heap ordered by priority (lower first), then by leftmost position, which is the
 * order every reference library merges in (rank for tokenizer.json and tiktoken, score for
 * SentencePiece). A popped pair whose spans have changed since it was pushed is stale and skipped.
 * Symbols that are no piece become byte-fallback tokens, or unk: before the merges for tokenizer.json
 * (as Hugging Face does), after them for SentencePiece. */
#include "bpe.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "utf8.h"

#define CACHE_SLOTS 16384 /* a power of two */
#define CACHE_WORD 24     /* longest word kept, in bytes (a word has at most as many ids) */

struct bpe_cached {
    uint8_t len, n_ids; /* len 0: empty slot */
    char word[CACHE_WORD];
    int32_t ids[CACHE_WORD];
};

struct bpe_pair {
    double priority;
    int32_t left, right;          /* symbol positions */
    int32_t left_len, right_len;  /* their spans when pushed, to detect staleness */
    int32_t merged;
};

static int before(const bpe_pair *a, const bpe_pair *b)
{
    return a->priority < b->priority || (a->priority == b->priority && a->left < b->left);
}

static void heap_push(bpe_scratch *s, bpe_pair p)
{
    int64_t i = s->n_heap++;
    while (i > 0 && before(&p, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = p;
}

static bpe_pair heap_pop(bpe_scratch *s)
{
    bpe_pair top = s->heap[0], last = s->heap[--s->n_heap];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= s->n_heap) break;
        if (c + 1 < s->n_heap && before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap > 0) s->heap[i] = last;
    return top;
}

/* Push the merge of symbol l with its right neighbour, when the rule allows one. */
static void consider(const tokenizer *t, bpe_scratch *s, const char *w, int32_t l)
{
    int32_t r = l < 0 ? -1 : s->next[l];
    if (r < 0 || s->frozen[l] || s->frozen[r]) return;
    int32_t merged = -1;
    double priority;
    if (t->rule == MERGE_PAIR_RANK) {
        int32_t rank = pairs_find(&t->pairs, s->id[l], s->id[r], &merged);
        if (rank < 0) return;
        priority = rank;
    } else {
        merged = pieces_find(&t->v, w + s->start[l], s->len[l] + s->len[r]);
        if (merged < 0) return;
        priority = t->rule == MERGE_PIECE_RANK ? (double)merged : -(double)t->v.scores[merged];
    }
    heap_push(s, (bpe_pair){priority, l, r, s->len[l], s->len[r], merged});
}

static void fit(bpe_scratch *s, int64_t n)
{
    if (n <= s->cap) return;
    s->cap = n;
    size_t b = (size_t)n * sizeof(int32_t);
    s->start = realloc(s->start, b), s->len = realloc(s->len, b), s->id = realloc(s->id, b);
    s->prev = realloc(s->prev, b), s->next = realloc(s->next, b), s->frozen = realloc(s->frozen, (size_t)n);
    s->heap = realloc(s->heap, (size_t)(3 * n) * sizeof *s->heap); /* n, then 2 per merge */
    if (!s->start || !s->len || !s->id || !s->prev || !s->next || !s->frozen || !s->heap)
        sl_fatal("out of memory encoding a word of %lld bytes", (long long)n);
}

/* The longest user-defined piece at w[i..n), or -1. */
static int32_t atomic_at(const tokenizer *t, const char *w, int64_t i, int64_t n)
{
    int32_t best = -1;
    for (int k = 0; k < t->n_atomic; k++) {
        int32_t id = t->atomic[k], len = t->v.lens[id];
        if (len <= n - i && (best < 0 || len > t->v.lens[best]) && memcmp(w + i, pieces_text(&t->v, id), (size_t)len) == 0)
            best = id;
    }
    return best;
}

/* Whether byte fallback spells the symbol w[0, len): every byte has its <0xNN> token. */
static int bytes_fall_back(const tokenizer *t, const char *w, int32_t len)
{
    int fallback = t->byte_fallback;
    for (int32_t b = 0; fallback && b < len; b++) fallback = t->byte_id[(uint8_t)w[b]] >= 0;
    return fallback;
}

/* Symbol k: the span [start, start + len) of the word, as piece id (-1: none yet). */
static void add_symbol(bpe_scratch *s, int64_t k, int64_t start, int32_t len, int32_t id, int frozen)
{
    s->start[k] = (int32_t)start, s->len[k] = len, s->id[k] = id, s->frozen[k] = (uint8_t)frozen;
    s->prev[k] = (int32_t)k - 1, s->next[k] = (int32_t)k + 1;
}

/* Hugging Face's BPE (pair ranks) settles a symbol that is no piece before merging, as k's: its
 * bytes' fallback tokens, else unk (one for a run of them with fuse_unk), else nothing, so that its
 * neighbours may merge. Returns the symbols that stand for it. */
static int64_t settle_unknown(const tokenizer *t, bpe_scratch *s, int64_t k, const char *w, int64_t i, int32_t len,
                              int *last_unk)
{
    if (bytes_fall_back(t, w + i, len)) {
        for (int32_t b = 0; b < len; b++) add_symbol(s, k + b, i + b, 1, t->byte_id[(uint8_t)w[i + b]], 0);
        *last_unk = 0;
        return len;
    }
    if (t->unk_id < 0) return 0;
    if (t->fuse_unk && *last_unk) {
        s->len[k - 1] += len;
        return 0;
    }
    add_symbol(s, k, i, len, t->unk_id, 0);
    *last_unk = 1;
    return 1;
}

static int64_t initial_symbols(const tokenizer *t, bpe_scratch *s, const char *w, int64_t n)
{
    int64_t k = 0;
    int last_unk = 0;
    for (int64_t i = 0; i < n;) {
        int32_t atom = t->n_atomic ? atomic_at(t, w, i, n) : -1;
        int32_t len = atom >= 0 ? t->v.lens[atom] : t->units_are_bytes ? 1 : utf8_group_len(w + i, n - i);
        int32_t id = atom >= 0 ? atom : pieces_find(&t->v, w + i, len);
        if (id < 0 && t->rule == MERGE_PAIR_RANK) k += settle_unknown(t, s, k, w, i, len, &last_unk);
        else add_symbol(s, k++, i, len, id, atom >= 0), last_unk = 0;
        i += len;
    }
    if (k > 0) s->next[k - 1] = -1;
    return k;
}

static void merge_all(const tokenizer *t, bpe_scratch *s, const char *w, int64_t n_symbols)
{
    s->n_heap = 0;
    for (int32_t i = 0; i < n_symbols; i++) consider(t, s, w, i);
    while (s->n_heap > 0) {
        bpe_pair p = heap_pop(s);
        if (s->len[p.left] != p.left_len || s->next[p.left] != p.right || s->len[p.right] != p.right_len) continue;
        int32_t after = s->next[p.right];
        s->id[p.left] = p.merged;
        s->len[p.left] += s->len[p.right];
        s->len[p.right] = -1;
        s->next[p.left] = after;
        if (after >= 0) s->prev[after] = p.left;
        consider(t, s, w, s->prev[p.left]);
        consider(t, s, w, p.left);
    }
}

/* A symbol that is no piece: its bytes' fallback tokens, else unk (fused with a preceding one). */
static void emit_unknown(const tokenizer *t, const char *w, int32_t start, int32_t len, int *last_unk, id_list *out)
{
    if (bytes_fall_back(t, w + start, len)) {
        for (int32_t i = 0; i < len; i++) ids_push(out, t->byte_id[(uint8_t)w[start + i]]);
        *last_unk = 0;
    } else if (t->unk_id >= 0 && !(t->fuse_unk && *last_unk)) {
        ids_push(out, t->unk_id);
        *last_unk = 1;
    }
}

static bpe_cached *cache_slot(bpe_scratch *s, const char *w, int64_t n)
{
    if (!s->cache) s->cache = sl_calloc(CACHE_SLOTS, sizeof *s->cache, "word cache");
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint8_t)w[i]) * 16777619u;
    return &s->cache[h & (CACHE_SLOTS - 1)];
}

static void encode_word(const tokenizer *t, bpe_scratch *s, const char *w, int64_t n, id_list *out);

void bpe_word(const tokenizer *t, bpe_scratch *s, const char *w, int64_t n, id_list *out)
{
    if (n <= 0) return;
    if (n > CACHE_WORD) return encode_word(t, s, w, n, out);
    bpe_cached *c = cache_slot(s, w, n);
    if (c->len == n && memcmp(c->word, w, (size_t)n) == 0) {
        for (int i = 0; i < c->n_ids; i++) ids_push(out, c->ids[i]);
        return;
    }
    int64_t before = out->n;
    encode_word(t, s, w, n, out);
    if (out->n - before > CACHE_WORD) return;
    c->len = (uint8_t)n, c->n_ids = (uint8_t)(out->n - before);
    memcpy(c->word, w, (size_t)n);
    memcpy(c->ids, out->v + before, (size_t)c->n_ids * sizeof *c->ids);
}

static void encode_word(const tokenizer *t, bpe_scratch *s, const char *w, int64_t n, id_list *out)
{
    if (n > INT32_MAX / 4) sl_fatal("a word of %lld bytes is too long to encode (at most %d)", (long long)n, INT32_MAX / 4);
    if (t->whole_word_first) {
        int32_t id = pieces_find(&t->v, w, (int)n);
        if (id >= 0) return ids_push(out, id);
    }
    fit(s, n);
    int64_t k = initial_symbols(t, s, w, n);
    if (k == 0) return; /* every symbol unknown, and dropped */
    merge_all(t, s, w, k);
    int last_unk = 0;
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        if (s->id[i] >= 0) ids_push(out, s->id[i]), last_unk = 0;
        else emit_unknown(t, w, s->start[i], s->len[i], &last_unk, out);
    }
}

void bpe_scratch_free(bpe_scratch *s)
{
    free(s->start), free(s->len), free(s->id), free(s->prev), free(s->next), free(s->frozen), free(s->heap), free(s->cache);
    memset(s, 0, sizeof *s);
}
