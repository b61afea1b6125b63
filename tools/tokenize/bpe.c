/* bpe: encoding in O(n log n). The naive algorithm rescans every adjacent pair and merges the
 * one with the highest score, leftmost on ties. Here the symbols form a linked list and candidate
 * pairs sit in a max-heap ordered by (score, then leftmost position); a popped pair whose symbols
 * have changed since it was pushed is stale and skipped. Positions keep their order under merges,
 * so the heap picks exactly the pair the naive scan would. */
#include "bpe.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

typedef struct {
    float score;
    int32_t left, right;     /* symbol positions */
    int32_t left_id, right_id; /* their tokens when pushed, to detect staleness */
    int32_t merged;
} pair;

typedef struct {
    const vocab *v;
    int32_t *id, *prev, *next; /* the symbol list; id < 0 once merged away */
    pair *heap;
    int64_t n_heap;
    char *scratch; /* two pieces side by side */
} merger;

static int better(const pair *a, const pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(merger *m, pair p)
{
    int64_t i = m->n_heap++;
    while (i > 0 && better(&p, &m->heap[(i - 1) / 2])) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = p;
}

static pair heap_pop(merger *m)
{
    pair top = m->heap[0], last = m->heap[--m->n_heap];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= m->n_heap) break;
        if (c + 1 < m->n_heap && better(&m->heap[c + 1], &m->heap[c])) c++;
        if (!better(&m->heap[c], &last)) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->n_heap > 0) m->heap[i] = last;
    return top;
}

/* Push the pair starting at symbol l when the concatenation of its pieces is a token. */
static void consider(merger *m, int32_t l)
{
    int32_t r = l < 0 ? -1 : m->next[l];
    if (r < 0) return;
    const vocab *v = m->v;
    int32_t a = m->id[l], b = m->id[r], la = v->lens[a], lb = v->lens[b];
    memcpy(m->scratch, vocab_piece(v, a), (size_t)la);
    memcpy(m->scratch + la, vocab_piece(v, b), (size_t)lb);
    int32_t merged = vocab_find(v, m->scratch, la + lb);
    if (merged >= 0) heap_push(m, (pair){v->scores[merged], l, r, a, b, merged});
}

static int still_valid(const merger *m, const pair *p)
{
    return m->id[p->left] == p->left_id && m->next[p->left] == p->right && m->id[p->right] == p->right_id;
}

static void merge_all(merger *m, int64_t n)
{
    for (int32_t i = 0; i < n; i++) consider(m, i);
    while (m->n_heap > 0) {
        pair p = heap_pop(m);
        if (!still_valid(m, &p)) continue;
        int32_t after = m->next[p.right];
        m->id[p.left] = p.merged;
        m->id[p.right] = -1;
        m->next[p.left] = after;
        if (after >= 0) m->prev[after] = p.left;
        consider(m, m->prev[p.left]);
        consider(m, p.left);
    }
}

/* One symbol per UTF-8 character: a byte and up to three continuation bytes, as llama2.c groups
 * them (without validating); unknown characters become one byte-fallback token per byte. */
static int64_t push_char(const vocab *v, const char *s, int len, int32_t *ids, int64_t n)
{
    int32_t id = vocab_find(v, s, len);
    if (id >= 0) ids[n++] = id;
    else
        for (int i = 0; i < len; i++) ids[n++] = VOCAB_BYTE_FALLBACK + (uint8_t)s[i];
    return n;
}

static int64_t initial_symbols(const vocab *v, const char *text, int64_t len, int32_t *ids)
{
    int64_t n = 0;
    if (len > 0) n = push_char(v, " ", 1, ids, n); /* sentencepiece's dummy prefix */
    for (int64_t i = 0; i < len;) {
        int clen = 1;
        while (clen < 4 && i + clen < len && ((uint8_t)text[i + clen] & 0xC0) == 0x80) clen++;
        n = push_char(v, text + i, clen, ids, n);
        i += clen;
    }
    return n;
}

int64_t bpe_encode(const vocab *v, const char *text, int64_t len, int32_t *ids)
{
    int64_t n = initial_symbols(v, text, len, ids);
    if (n > INT32_MAX / 4) sl_fatal("a document of %lld bytes is too long to encode (at most %d)",
                                    (long long)len, INT32_MAX / 4);
    merger m = {.v = v, .id = ids};
    m.prev = sl_malloc((size_t)(n + 1) * sizeof *m.prev, "merge list");
    m.next = sl_malloc((size_t)(n + 1) * sizeof *m.next, "merge list");
    m.heap = sl_malloc((size_t)(3 * n + 1) * sizeof *m.heap, "merge heap"); /* n, then 2 per merge */
    m.scratch = sl_malloc(2 * (size_t)v->max_len + 1, "merge scratch");
    for (int32_t i = 0; i < n; i++) m.prev[i] = i - 1, m.next[i] = i + 1 < n ? i + 1 : -1;
    merge_all(&m, n);
    int64_t out = 0;
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = m.next[i]) ids[out++] = ids[i];
    free(m.prev);
    free(m.next);
    free(m.heap);
    free(m.scratch);
    return out;
}
