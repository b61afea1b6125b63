/* corpus: growable token, mask, offset and label arrays, written as /tokens, /doc_offsets,
 * /loss_mask and /labels with the dataset attributes. */
#include "corpus.h"

#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "runtime.h"

static void *grow(void *p, int64_t *cap, int64_t need, size_t elem, const char *what)
{
    if (need <= *cap) return p;
    int64_t cap2 = *cap ? *cap : 1024;
    while (cap2 < need) cap2 *= 2;
    p = realloc(p, (size_t)cap2 * elem);
    if (!p) sl_fatal("out of memory growing %s to %lld elements", what, (long long)cap2);
    *cap = cap2;
    return p;
}

void corpus_init(corpus *c, int64_t max_docs, int32_t bos_id, int32_t eos_id)
{
    memset(c, 0, sizeof *c);
    c->max_docs = max_docs;
    c->bos_id = bos_id;
    c->eos_id = eos_id;
    c->offsets = grow(NULL, &c->cap_offsets, 1, sizeof *c->offsets, "document offsets");
    c->offsets[0] = 0;
}

int corpus_full(const corpus *c) { return c->max_docs > 0 && c->n_docs >= c->max_docs; }

static void push_token(corpus *c, int32_t id, uint8_t target)
{
    c->tokens = grow(c->tokens, &c->cap_tokens, c->n_tokens + 1, sizeof *c->tokens, "tokens");
    c->mask = grow(c->mask, &c->cap_mask, c->n_tokens + 1, sizeof *c->mask, "loss mask");
    c->tokens[c->n_tokens] = id;
    c->mask[c->n_tokens++] = target;
}

void corpus_add(corpus *c, const int32_t *ids, int64_t n, const uint8_t *mask, int32_t label)
{
    if (c->bos_id >= 0) push_token(c, c->bos_id, 0);
    for (int64_t i = 0; i < n; i++) push_token(c, ids[i], mask ? mask[i] : 1);
    if (c->eos_id >= 0) push_token(c, c->eos_id, 1);
    if (mask) c->has_mask = 1;
    c->offsets = grow(c->offsets, &c->cap_offsets, c->n_docs + 2, sizeof *c->offsets, "document offsets");
    c->labels = grow(c->labels, &c->cap_labels, c->n_docs + 1, sizeof *c->labels, "labels");
    c->labels[c->n_docs] = label;
    c->has_labels = label >= 0;
    c->offsets[++c->n_docs] = c->n_tokens;
}

static int32_t num_labels(const corpus *c)
{
    int32_t max = -1;
    for (int64_t d = 0; d < c->n_docs; d++)
        if (c->labels[d] > max) max = c->labels[d];
    return max + 1;
}

static void write_attrs(hid_t f, const corpus *c, const corpus_meta *m)
{
    h5_set_attr_string(f, "/", "shardlora_kind", "dataset");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_int(f, "/", "vocab_size", m->vocab_size);
    h5_set_attr_int(f, "/", "bos_id", m->bos_id);
    h5_set_attr_int(f, "/", "eos_id", m->eos_id);
    h5_set_attr_int(f, "/", "pad_id", m->pad_id);
    h5_set_attr_string(f, "/", "tokenizer", m->tokenizer);
    h5_set_attr_string(f, "/", "source", m->source);
    if (c->has_labels) h5_set_attr_int(f, "/", "num_labels", num_labels(c));
}

void corpus_write(const corpus *c, const char *path, const corpus_meta *meta)
{
    hid_t f = h5_create(path, "output dataset", MPI_COMM_NULL);
    int64_t n = c->n_tokens, d1 = c->n_docs + 1, d = c->n_docs;
    h5_write(f, "/tokens", SL_I32, SL_I32, 1, &n, c->tokens);
    h5_write(f, "/doc_offsets", SL_I64, SL_I64, 1, &d1, c->offsets);
    if (c->has_mask) h5_write(f, "/loss_mask", SL_U8, SL_U8, 1, &n, c->mask);
    if (c->has_labels) h5_write(f, "/labels", SL_I32, SL_I32, 1, &d, c->labels);
    write_attrs(f, c, meta);
    h5_close(f);
}

void corpus_free(corpus *c)
{
    free(c->tokens);
    free(c->mask);
    free(c->offsets);
    free(c->labels);
    memset(c, 0, sizeof *c);
}
