/* data: validation and reading of HDF5 token datasets. */
#include "data.h"

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
        const int64_t want[1] = {d->n_tokens};
        expect_integer(path, "/loss_mask", h5_expect_shape(d->file, "/loss_mask", 1, want), "uint8");
    }
    if ((d->has_labels = h5_has(d->file, "/labels"))) {
        const int64_t want[1] = {d->n_docs};
        expect_integer(path, "/labels", h5_expect_shape(d->file, "/labels", 1, want), "int32");
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

int64_t data_eval_windows(const sl_dataset *d, int seq_len, sl_window **out)
{
    int64_t n = 0, cap = 0;
    sl_window *w = NULL;
    for (int64_t doc = 0; doc < d->n_docs; doc++) {
        int64_t begin = d->doc_offsets[doc], end = d->doc_offsets[doc + 1];
        for (int64_t s = begin; end - s >= 2; s += seq_len) {
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
