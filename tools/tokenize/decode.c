/* decode: a dataset's documents back as text, to see what the model will learn from: each token's
 * piece (SentencePiece's visible space as a space, byte-fallback tokens as their byte, special
 * tokens as their text), the loss targets between U+27E6 and U+27E7. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "runtime.h"
#include "tokenize.h"

#define TARGETS_OPEN "\xE2\x9F\xA6"  /* U+27E6 */
#define TARGETS_CLOSE "\xE2\x9F\xA7" /* U+27E7 */

/* The text standing for a space in the tokenizer's pieces, or NULL. */
static const char *space_symbol(const tokenizer *t)
{
    for (int i = 0; i < t->n_norm; i++)
        if (t->norm[i].kind == NORM_REPLACE && !strcmp(t->norm[i].a, " ")) return t->norm[i].b;
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].kind == PRE_METASPACE) return t->pre[i].replacement;
    return NULL;
}

static void put_token(const tokenizer *t, const char *space, int32_t id)
{
    for (int b = 0; t->byte_fallback && b < 256; b++)
        if (t->byte_id[b] == id) return (void)putchar(b);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return (void)fputs(t->added[i].text, stdout);
    for (int i = 0; i < t->n_special; i++)
        if (t->special[i].id == id) return (void)fputs(t->special[i].text, stdout);
    if (!pieces_has(&t->v, id)) return (void)printf("<id %d>", id);
    const char *p = pieces_text(&t->v, id);
    int n = t->v.lens[id];
    size_t ls = space ? strlen(space) : 0;
    for (int i = 0; i < n;)
        if (ls && i + (int)ls <= n && !memcmp(p + i, space, ls)) putchar(' '), i += (int)ls;
        else putchar(p[i++]);
}

static void print_document(const tokenizer *t, const char *space, int64_t d, const int32_t *ids, const uint8_t *mask, int64_t n)
{
    int64_t targets = 0;
    for (int64_t i = 0; mask && i < n; i++) targets += mask[i];
    printf("--- document %lld: %lld tokens, %lld loss targets\n", (long long)d, (long long)n, (long long)(mask ? targets : n));
    int open = 0;
    for (int64_t i = 0; i < n; i++) {
        int target = mask ? mask[i] : 1;
        if (target != open) fputs(target ? TARGETS_OPEN : TARGETS_CLOSE, stdout), open = target;
        put_token(t, space, ids[i]);
    }
    if (open) fputs(TARGETS_CLOSE, stdout);
    putchar('\n');
}

void decode_dataset(const tk_options *o, const tokenizer *tok)
{
    hid_t f = h5_open(o->decode, "dataset", 0, MPI_COMM_NULL);
    h5_shape docs = h5_expect_shape(f, "/doc_offsets", 1, (int64_t[]){-1});
    int64_t *offsets = sl_malloc((size_t)docs.n * sizeof *offsets, "document offsets");
    h5_read(f, "/doc_offsets", SL_I64, offsets);
    int has_mask = h5_has(f, "/loss_mask");
    const char *space = space_symbol(tok);
    int64_t n_docs = docs.n - 1;
    if (o->max_docs && o->max_docs < n_docs) n_docs = o->max_docs;
    for (int64_t d = 0; d < n_docs; d++) {
        int64_t n = offsets[d + 1] - offsets[d];
        if (n < 0) sl_fatal("%s: /doc_offsets decreases at document %lld", o->decode, (long long)d);
        int32_t *ids = sl_malloc((size_t)n * sizeof *ids + 1, "document");
        uint8_t *mask = has_mask ? sl_malloc((size_t)n + 1, "document mask") : NULL;
        h5_read_range(f, "/tokens", SL_I32, offsets[d], n, ids);
        if (mask) h5_read_range(f, "/loss_mask", SL_U8, offsets[d], n, mask);
        print_document(tok, space, d, ids, mask, n);
        free(ids);
        free(mask);
    }
    free(offsets);
    h5_close(f);
}
