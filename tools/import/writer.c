/* writer: the output model file (root attributes, /config, one dataset per tensor), with the
 * checks every importer shares: values must be finite, before and after a dtype conversion. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "import.h"
#include "quant_store.h"
#include "runtime.h"

struct import_writer {
    hid_t file;
    char *final_path, *partial_path;
    sl_dtype out_dtype;
    const sl_model_config *cfg;
    quant_format quant;
    unsigned dtypes_written; /* bit per sl_dtype, for the summary */
    int tensors, quantized;
};

/* Removes the partial file when the import stops with an error (sl_fatal exits). */
static char *partial_to_remove;
static void remove_partial(void)
{
    if (partial_to_remove) remove(partial_to_remove);
}

import_writer *writer_open(const char *out_path, const import_options *opt, const import_origin *origin,
                           const sl_model_config *cfg)
{
    import_writer *w = sl_calloc(1, sizeof *w, "writer");
    w->final_path = strdup(out_path);
    w->partial_path = sl_malloc(strlen(out_path) + 9, "path");
    sprintf(w->partial_path, "%s.partial", out_path);
    w->out_dtype = opt->out_dtype;
    w->cfg = cfg;
    partial_to_remove = w->partial_path;
    atexit(remove_partial);
    w->file = h5_create(w->partial_path, "model", MPI_COMM_NULL);
    h5_set_attr_string(w->file, "/", "shardlora_kind", "model");
    h5_set_attr_int(w->file, "/", "format_version", 1);
    h5_set_attr_string(w->file, "/", "source", origin->source);
    h5_set_attr_string(w->file, "/", "source_format", origin->source_format);
    h5_set_attr_string(w->file, "/", "model_name", origin->model_name);
    modelcfg_write(w->file, cfg);
    w->quant = opt->quant;
    char name[32];
    if (w->quant.type != QUANT_NONE)
        h5_set_attr_string(w->file, "/", "quantization", quant_format_name(&w->quant, name, sizeof name));
    return w;
}

/* Index of the first NaN or Inf among n floats of type t, or -1. */
static int64_t first_nonfinite(const void *data, sl_dtype t, int64_t n)
{
    const uint16_t *h = data;
    const uint32_t *f = data;
    for (int64_t i = 0; i < n; i++) {
        int bad = t == SL_F32 ? (f[i] & 0x7f800000u) == 0x7f800000u
                : t == SL_BF16 ? (h[i] & 0x7f80u) == 0x7f80u
                               : (h[i] & 0x7c00u) == 0x7c00u;
        if (bad) return i;
    }
    return -1;
}

static void check_finite(const sl_tensor_spec *spec, sl_dtype t, const void *data, int64_t n,
                         const char *where, const char *stage)
{
    int64_t bad = first_nonfinite(data, t, n);
    if (bad < 0) return;
    float v;
    sl_to_f32(&v, (const char *)data + bad * (int64_t)sl_dtype_size(t), t, 1);
    char at[96] = "";
    if (spec->ndims == 2)
        snprintf(at, sizeof at, " (row %lld, column %lld)", (long long)(bad / spec->dims[1]),
                 (long long)(bad % spec->dims[1]));
    sl_fatal("%s: value %g at flat index %lld%s%s; a model must hold finite weights", where, v, (long long)bad,
             at, stage);
}

/* src converted to the output type in a new buffer (checked: float16 overflows to Inf). */
static void *convert(const sl_tensor_spec *spec, sl_dtype src_dtype, const void *src, int64_t n,
                     sl_dtype out, const char *where)
{
    float *f32 = sl_malloc((size_t)n * 4, spec->path);
    sl_to_f32(f32, src, src_dtype, (size_t)n);
    if (out == SL_F32) return f32;
    uint16_t *h = sl_malloc((size_t)n * 2, spec->path);
    sl_from_f32(h, f32, out, (size_t)n);
    free(f32);
    check_finite(spec, out, h, n, where, out == SL_F16 ? " after conversion to float16 (out of its range)"
                                                      : " after conversion to bfloat16");
    return h;
}

void writer_tensor(import_writer *w, const sl_tensor_spec *spec, sl_dtype src_dtype, const void *data,
                   const char *where)
{
    int64_t n = spec->ndims == 2 ? spec->dims[0] * spec->dims[1] : spec->dims[0];
    check_finite(spec, src_dtype, data, n, where, " is not finite");
    sl_dtype out = w->out_dtype == SL_DTYPE_OTHER ? src_dtype : w->out_dtype;
    void *converted = out == src_dtype ? NULL : convert(spec, src_dtype, data, n, out, where);
    const void *stored = converted ? converted : data;
    if (w->quant.type != QUANT_NONE && spec->kind == TENSOR_LINEAR) {
        float *f32 = sl_malloc((size_t)n * 4, spec->path);
        sl_to_f32(f32, stored, out, (size_t)n);
        quant_store_quantize(w->file, spec->path, &w->quant, spec->dims, sl_dtype_name(out), f32);
        free(f32);
        w->quantized++;
    } else {
        h5_write(w->file, spec->path, out, out, spec->ndims, spec->dims, stored);
    }
    free(converted);
    w->dtypes_written |= 1u << out;
    w->tensors++;
}

void writer_quantized(import_writer *w, const sl_tensor_spec *spec, const quant_store_info *info,
                      const quant_view *q)
{
    if (memcmp(&info->fmt, &w->quant, sizeof w->quant) != 0)
        sl_fatal("internal error: %s is not in the file's quantized format", spec->path);
    quant_store_write(w->file, spec->path, info, q);
    w->quantized++;
    w->tensors++;
}

static void dtype_summary(const import_writer *w, char *buf, size_t len)
{
    buf[0] = 0;
    for (int t = 0; t < SL_DTYPE_OTHER; t++)
        if (w->dtypes_written & (1u << t))
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? "+" : "", sl_dtype_name(t));
}

void writer_finish(import_writer *w)
{
    h5_close(w->file);
    if (rename(w->partial_path, w->final_path) != 0)
        sl_fatal("cannot rename %s to %s (is the directory writable?)", w->partial_path, w->final_path);
    partial_to_remove = NULL;
    char dtypes[64];
    dtype_summary(w, dtypes, sizeof dtypes);
    const sl_model_config *c = w->cfg;
    int64_t params = modelcfg_param_count(c);
    log_info("architecture %s: %d layers, hidden %d, %d heads (%d kv), vocab %d%s", c->architecture,
             c->num_layers, c->hidden_size, c->num_heads, c->num_kv_heads, c->vocab_size,
             c->tie_word_embeddings ? ", tied embeddings" : "");
    log_info("parameters %lld (%.2fM) in %d tensors, dtype %s", (long long)params, (double)params / 1e6,
             w->tensors, dtypes);
    char name[32];
    if (w->quantized)
        log_info("%d projection weights quantized to %s", w->quantized, quant_format_name(&w->quant, name, sizeof name));
    log_info("wrote %s", w->final_path);
    free(w->partial_path);
    free(w->final_path);
    free(w);
}
