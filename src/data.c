/* data: validation and reading of HDF5 token datasets. */
#include "data.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "runtime.h"

static void check_offsets(const char *path, const int64_t *off, int64_t n_docs, int64_t n_tokens)
{
    if (off[0] != 0)
        sl_fatal("%s: /doc_offsets[0] is %lld (expected 0)", path, (long long)off[0]);
    for (int64_t d = 0; d < n_docs; d++)
        if (off[d + 1] < off[d])
            sl_fatal("%s: /doc_offsets must not decrease, but [%lld] = %lld > [%lld] = %lld", path, (long long)d,
                     (long long)off[d], (long long)d + 1, (long long)off[d + 1]);
    if (off[n_docs] != n_tokens)
        sl_fatal("%s: /doc_offsets ends at %lld (expected the token count, %lld)", path,
                 (long long)off[n_docs], (long long)n_tokens);
}

static void expect_integer(const char *path, const char *dset, h5_shape sh, const char *want)
{
    if (sl_dtype_is_float(sh.dtype) || sh.dtype == SL_DTYPE_OTHER)
        sl_fatal("%s: dataset %s has type %s (expected %s)", path, dset, sl_dtype_name(sh.dtype), want);
}

void data_validate(const char *path, int model_vocab)
{
    sl_dataset d;
    data_open(&d, path);
    if (model_vocab > 0 && d.vocab_size > model_vocab)
        sl_fatal("%s: vocabulary mismatch: the dataset's vocab_size is %d but the model's is %d "
                 "(tokenize with the model's tokenizer)", path, d.vocab_size, model_vocab);
    data_close(&d);
}

void data_open(sl_dataset *d, const char *path)
{
    memset(d, 0, sizeof *d);
    d->path = strdup(path);
    d->file = h5_open(path, "dataset", 0, MPI_COMM_NULL);
    const int64_t any[1] = {-1};
    h5_shape tok = h5_expect_shape(d->file, "/tokens", 1, any);
    expect_integer(path, "/tokens", tok, "int32");
    h5_shape off = h5_expect_shape(d->file, "/doc_offsets", 1, any);
    expect_integer(path, "/doc_offsets", off, "int64");
    if (off.n < 1) sl_fatal("%s: /doc_offsets is empty (expected at least one entry, 0)", path);
    d->n_tokens = tok.n;
    d->n_docs = off.n - 1;
    d->doc_offsets = sl_malloc((size_t)off.n * 8, "document offsets");
    h5_read(d->file, "/doc_offsets", SL_I64, d->doc_offsets);
    check_offsets(path, d->doc_offsets, d->n_docs, d->n_tokens);
    d->vocab_size = (int)h5_attr_int(d->file, "/", "vocab_size");
    if (d->vocab_size <= 0) sl_fatal("%s: attribute vocab_size is %d (expected > 0)", path, d->vocab_size);
    d->bos_id = h5_has_attr(d->file, "/", "bos_id") ? (int)h5_attr_int(d->file, "/", "bos_id") : -1;
    d->eos_id = h5_has_attr(d->file, "/", "eos_id") ? (int)h5_attr_int(d->file, "/", "eos_id") : -1;
    d->pad_id = h5_has_attr(d->file, "/", "pad_id") ? (int)h5_attr_int(d->file, "/", "pad_id") : -1;
    if ((d->has_loss_mask = h5_has(d->file, "/loss_mask"))) {
        h5_shape m = h5_expect_shape(d->file, "/loss_mask", 1, any);
        expect_integer(path, "/loss_mask", m, "uint8");
        if (m.n != d->n_tokens)
            sl_fatal("%s: dataset /loss_mask has %lld entries but /tokens has %lld (expected one per token)", path,
                     (long long)m.n, (long long)d->n_tokens);
        d->loss_mask_dtype = m.dtype;
    }
    if ((d->has_labels = h5_has(d->file, "/labels"))) {
        h5_shape l = h5_expect_shape(d->file, "/labels", 1, any);
        expect_integer(path, "/labels", l, "int32");
        if (l.n != d->n_docs)
            sl_fatal("%s: dataset /labels has %lld entries but /doc_offsets has %lld documents (expected one label "
                     "per document)", path, (long long)l.n, (long long)d->n_docs);
        d->num_labels = h5_has_attr(d->file, "/", "num_labels") ? (int)h5_attr_int(d->file, "/", "num_labels") : 0;
    }
}

void data_close(sl_dataset *d)
{
    h5_close(d->file);
    free(d->doc_offsets);
    free(d->path);
    memset(d, 0, sizeof *d);
}

int64_t data_read(const sl_dataset *d, int64_t start, int64_t count, int32_t *tokens, uint8_t *mask)
{
    h5_read_range(d->file, "/tokens", SL_I32, start, count, tokens);
    if (mask && d->has_loss_mask) h5_read_range(d->file, "/loss_mask", SL_U8, start, count, mask);
    else if (mask) memset(mask, 1, (size_t)count);
    for (int64_t i = 0; i < count; i++)
        if (tokens[i] < 0 || tokens[i] >= d->vocab_size) return start + i;
    return -1;
}

/* Windows of a document of len tokens: one every seq_len tokens while two or more are left (an
 * input and its target). */
static int64_t doc_windows(int64_t len, int seq_len) { return len >= 2 ? (len - 2) / seq_len + 1 : 0; }

int64_t data_eval_windows(const sl_dataset *d, int seq_len, sl_window **out)
{
    int64_t n = 0, cap = 0;
    sl_window *w = NULL;
    for (int64_t doc = 0; doc < d->n_docs; doc++) {
        int64_t begin = d->doc_offsets[doc], end = d->doc_offsets[doc + 1];
        for (int64_t k = 0, s = begin; k < doc_windows(end - begin, seq_len); k++, s += seq_len) {
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                w = realloc(w, (size_t)cap * sizeof *w);
                if (!w) sl_fatal("out of memory listing evaluation windows");
            }
            int64_t len = end - s < seq_len + 1 ? end - s : seq_len + 1;
            w[n++] = (sl_window){.doc = doc, .start = s, .len = (int)len};
        }
    }
    *out = w;
    return n;
}

int64_t data_document_units(const sl_dataset *d, int seq_len, sl_window **out)
{
    sl_window *w = sl_malloc((size_t)(d->n_docs ? d->n_docs : 1) * sizeof *w, "document list");
    int64_t n = 0;
    for (int64_t doc = 0; doc < d->n_docs; doc++) {
        int64_t len = d->doc_offsets[doc + 1] - d->doc_offsets[doc];
        if (len > 0) w[n++] = (sl_window){.doc = doc, .start = d->doc_offsets[doc], .len = len < seq_len ? (int)len : seq_len};
    }
    *out = w;
    return n;
}

/* ---- contents: every value of every dataset, streamed in chunks ----
 * A chunk is read whole (h5_read_range preads contiguous datasets on every thread), then scanned
 * on every thread; the chunks go in file order and each scan keeps the lowest bad index, so the
 * first bad value of the file is the one named, whatever the thread count. */

enum { CHECK_CHUNK = 1 << 24, /* elements per read: 64 MiB of int32 tokens */
       CHECK_PARALLEL_MIN = 1 << 16 };

/* The document holding token t: the last d < n_docs with off[d] <= t (empty documents skipped). */
static int64_t doc_of(const int64_t *off, int64_t n_docs, int64_t t)
{
    int64_t lo = 0, hi = n_docs - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (off[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static void check_tokens(const sl_dataset *d, const data_checks *c, int32_t *buf)
{
    const int limit = d->vocab_size; /* <= the model's: data_validate checked it */
    for (int64_t c0 = 0; c0 < d->n_tokens; c0 += CHECK_CHUNK) {
        int64_t n = d->n_tokens - c0 < CHECK_CHUNK ? d->n_tokens - c0 : CHECK_CHUNK, bad = n;
        h5_read_range(d->file, "/tokens", SL_I32, c0, n, buf);
#pragma omp parallel for schedule(static) reduction(min : bad) if (n >= CHECK_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            if ((buf[i] < 0 || buf[i] >= limit) && i < bad) bad = i;
        if (bad == n) continue;
        int64_t at = c0 + bad;
        long long doc = (long long)doc_of(d->doc_offsets, d->n_docs, at);
        if (buf[bad] >= 0 && buf[bad] < c->model_vocab)
            sl_fatal("%s: dataset /tokens: token id %d at index %lld (document %lld) is outside [0, %d), the file's "
                     "vocab_size attribute (the model's vocabulary is [0, %d): a wrong attribute, or ids from another "
                     "tokenizer)", d->path, buf[bad], (long long)at, doc, limit, c->model_vocab);
        sl_fatal("%s: dataset /tokens: token id %d at index %lld (document %lld) is outside the vocabulary [0, %d) of "
                 "model %s", d->path, buf[bad], (long long)at, doc, c->model_vocab, c->model);
    }
}

static void check_labels(const sl_dataset *d, const data_checks *c, int32_t *buf)
{
    for (int64_t c0 = 0; c0 < d->n_docs; c0 += CHECK_CHUNK) {
        int64_t n = d->n_docs - c0 < CHECK_CHUNK ? d->n_docs - c0 : CHECK_CHUNK, bad = n;
        h5_read_range(d->file, "/labels", SL_I32, c0, n, buf);
#pragma omp parallel for schedule(static) reduction(min : bad) if (n >= CHECK_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            if ((buf[i] < 0 || buf[i] >= c->num_labels) && i < bad) bad = i;
        if (bad < n) /* the sampler's own words, which it also checks at start */
            sl_fatal("%s: dataset /labels: document %lld has label %d, outside [0, %d) (--num-labels)", d->path,
                     (long long)(c0 + bad), buf[bad], c->num_labels);
    }
}

/* /loss_mask values, and which documents (and, with seq_len, which windows) have a loss target:
 * a token after its document's first whose mask is 1. Each such token is the target of exactly
 * one window of its document: number (t - begin - 1) / seq_len (data_eval_windows). */
static void check_mask(const sl_dataset *d, const data_checks *c, data_summary *s, uint8_t *doc_has,
                       const int64_t *first_window, int32_t *wide, uint8_t *mask)
{
    const int64_t *off = d->doc_offsets;
    const int narrow = d->loss_mask_dtype != SL_U8;
    for (int64_t c0 = 0; c0 < d->n_tokens; c0 += CHECK_CHUNK) {
        int64_t n = d->n_tokens - c0 < CHECK_CHUNK ? d->n_tokens - c0 : CHECK_CHUNK, bad = n, targets = 0;
        if (narrow) h5_read_range(d->file, "/loss_mask", SL_I32, c0, n, wide);
        else h5_read_range(d->file, "/loss_mask", SL_U8, c0, n, mask);
#pragma omp parallel reduction(min : bad) reduction(+ : targets) if (n >= CHECK_PARALLEL_MIN)
        {
            int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
            int64_t a = n * id / nt, b = n * (id + 1) / nt, last_doc = -1, last_win = -1;
            int64_t doc = a < b ? doc_of(off, d->n_docs, c0 + a) : 0;
            for (int64_t i = a; i < b; i++) {
                int32_t m = narrow ? wide[i] : mask[i];
                if (m != 0 && m != 1) {
                    if (i < bad) bad = i;
                    continue;
                }
                if (narrow) mask[i] = (uint8_t)m;
                int64_t t = c0 + i;
                while (off[doc + 1] <= t) doc++;
                if (!m || t == off[doc]) continue;
                targets++;
                if (doc != last_doc) {
#pragma omp atomic write
                    doc_has[doc] = 1;
                    last_doc = doc;
                }
                if (s->window_has_target) {
                    int64_t w = first_window[doc] + (t - off[doc] - 1) / c->seq_len;
                    if (w != last_win) {
#pragma omp atomic write
                        s->window_has_target[w] = 1;
                        last_win = w;
                    }
                }
            }
        }
        if (bad < n) {
            int64_t at = c0 + bad;
            long long v = narrow ? (long long)wide[bad] : (long long)mask[bad];
            sl_fatal("%s: dataset /loss_mask: value %lld at index %lld (document %lld) is not 0 or 1 (expected 1 for a "
                     "token that is a loss target, 0 for one that is not)", d->path, v, (long long)at,
                     (long long)doc_of(off, d->n_docs, at));
        }
        s->targets += targets;
    }
}

void data_check_contents(const sl_dataset *d, const data_checks *c, data_summary *s)
{
    double t0 = rt_now();
    memset(s, 0, sizeof *s);
    const int64_t *off = d->doc_offsets;
    int64_t chunk = d->n_tokens < CHECK_CHUNK ? d->n_tokens : CHECK_CHUNK;
    /* one int32 chunk of tokens, of wide mask values, or of labels (empty documents can make those
     * the more) */
    int64_t buf_n = chunk;
    if (c->num_labels > 0 && d->n_docs > buf_n) buf_n = d->n_docs < CHECK_CHUNK ? d->n_docs : CHECK_CHUNK;
    int32_t *buf = sl_malloc((size_t)buf_n * 4, "dataset check");
    check_tokens(d, c, buf);
    if (c->num_labels > 0) check_labels(d, c, buf);
    int64_t *first_window = NULL;
    if (c->seq_len > 0) { /* windows as data_eval_windows lists them, document by document */
        first_window = sl_malloc(((size_t)d->n_docs + 1) * 8, "window index");
        first_window[0] = 0;
        for (int64_t doc = 0; doc < d->n_docs; doc++) {
            int64_t len = off[doc + 1] - off[doc];
            first_window[doc + 1] = first_window[doc] + doc_windows(len, c->seq_len);
        }
        s->n_windows = first_window[d->n_docs];
    }
    int64_t longer = 0; /* documents of 2 or more tokens: the others have no target */
    for (int64_t doc = 0; doc < d->n_docs; doc++) longer += off[doc + 1] - off[doc] >= 2;
    if (d->has_loss_mask) {
        uint8_t *doc_has = sl_calloc((size_t)d->n_docs + 1, 1, "dataset check");
        if (c->seq_len > 0) s->window_has_target = sl_calloc((size_t)s->n_windows + 1, 1, "dataset check");
        uint8_t *mask = sl_malloc((size_t)chunk + 1, "dataset check");
        check_mask(d, c, s, doc_has, first_window, d->loss_mask_dtype != SL_U8 ? buf : NULL, mask);
        for (int64_t doc = 0; doc < d->n_docs; doc++) s->masked_docs += !doc_has[doc] && off[doc + 1] - off[doc] >= 2;
        free(mask);
        free(doc_has);
    } else { /* every token but each document's first */
        for (int64_t doc = 0; doc < d->n_docs; doc++)
            if (off[doc + 1] - off[doc] >= 2) s->targets += off[doc + 1] - off[doc] - 1;
    }
    s->windows_with_target = s->n_windows;
    if (s->window_has_target) {
        s->windows_with_target = 0;
        for (int64_t w = 0; w < s->n_windows; w++) s->windows_with_target += s->window_has_target[w];
    }
    free(first_window);
    free(buf);
    if (c->causal && s->targets == 0) {
        if (longer == 0) sl_fatal("%s: nothing to %s: every document is shorter than 2 tokens", d->path, c->purpose);
        if (longer == d->n_docs)
            sl_fatal("%s: dataset /loss_mask: all %lld documents are fully masked (no token after a document's first "
                     "has loss_mask 1): no loss target to %s", d->path, (long long)d->n_docs, c->purpose);
        sl_fatal("%s: dataset /loss_mask: the %lld documents of 2 or more tokens are all fully masked (no token after "
                 "a document's first has loss_mask 1; the other %lld are shorter): no loss target to %s", d->path,
                 (long long)longer, (long long)(d->n_docs - longer), c->purpose);
    }
    if (c->causal && s->masked_docs > 0)
        log_warn("%s: dataset /loss_mask: %lld of %lld documents are fully masked (no token after a document's first "
                 "has loss_mask 1); they add no loss target", d->path, (long long)s->masked_docs, (long long)d->n_docs);
    log_info("data: checked %s: %lld tokens, %lld documents, %lld loss targets (%.2f s)", d->path,
             (long long)d->n_tokens, (long long)d->n_docs, (long long)s->targets, rt_now() - t0);
}
