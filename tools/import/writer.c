/* writer: the output model file (root attributes, /config, one dataset or quantized group per
 * tensor), written collectively by every rank: HDF5 creates each object (collective metadata, in
 * table order), and each rank writes its pieces' bytes at the object's offset itself (stream.c).
 * Problems are agreed on after every tensor, so one rank's NaN ends all of them, with the output
 * removed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "h5io.h"
#include "import.h"
#include "quant_store.h"
#include "runtime.h"
#include "stream.h"

struct import_writer {
    hid_t file;
    int fd; /* the same file, for the tensors' bytes */
    char *final_path, *partial_path;
    sl_dtype out_dtype;
    const sl_model_config *cfg;
    quant_format quant;
    stream_buffers *bufs;
    unsigned dtypes_written; /* bit per sl_dtype, for the summary */
    int tensors, quantized;
    int64_t bytes_in; /* of the sources, for the rate */
    double started;
};

/* Rank 0 removes the partial file when the import stops with an error (sl_fatal exits). */
static char *partial_to_remove;
static void remove_partial(void)
{
    if (partial_to_remove) remove(partial_to_remove);
}

static void abandon(import_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    h5_close(w->file);
    w->file = -1;
    if (RT.rank == 0) remove(w->partial_path);
    partial_to_remove = NULL;
}

/* The writer of an import that stopped with an error caught by rt_try, which the fuzz targets run
 * many of in one process (a normal run exits on the error): released when the next one opens. */
static import_writer *unfinished;

static void release(import_writer *w)
{
    if (w->bufs) stream_buffers_free(w->bufs);
    free(w->partial_path);
    free(w->final_path);
    free(w);
}

static void release_unfinished(void)
{
    if (!unfinished) return;
    if (unfinished->fd >= 0) close(unfinished->fd);
    if (unfinished->file >= 0) h5_close_all(unfinished->file);
    release(unfinished);
    unfinished = NULL;
}

void import_agree(import_writer *w, int64_t key, const char *msg)
{
    struct { long key; int rank; } mine = {key < 0 ? LONG_MAX : (long)key, RT.rank}, first;
    MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_LONG_INT, MPI_MINLOC, MPI_COMM_WORLD));
    if (first.key == LONG_MAX) return;
    if (w) abandon(w);
    rt_agree(first.rank != RT.rank, "%s", msg); /* ends every rank */
}

void import_checked(void (*fn)(void *), void *arg)
{
    static char msg[IMPORT_MSG_LEN];
    import_agree(NULL, rt_try(fn, arg, msg, sizeof msg) ? -1 : 0, msg);
}

static void create_file(void *arg)
{
    import_writer *w = arg;
    w->file = h5_create(w->partial_path, "model", MPI_COMM_WORLD);
    w->fd = open(w->partial_path, O_WRONLY);
    if (w->fd < 0) sl_fatal("cannot open %s again to write the tensors: %s", w->partial_path, fileio_strerror(errno));
}

import_writer *writer_open(const char *out_path, const import_options *opt, const import_origin *origin,
                           const sl_model_config *cfg)
{
    release_unfinished();
    import_writer *w = unfinished = sl_calloc(1, sizeof *w, "writer");
    w->started = rt_now();
    w->final_path = strdup(out_path);
    w->partial_path = sl_malloc(strlen(out_path) + 9, "path");
    sprintf(w->partial_path, "%s.partial", out_path);
    w->out_dtype = opt->out_dtype;
    w->cfg = cfg;
    w->quant = opt->quant;
    w->file = w->fd = -1;
    static int remove_registered;
    if (RT.rank == 0) {
        partial_to_remove = w->partial_path;
        if (!remove_registered++) atexit(remove_partial);
    }
    import_checked(create_file, w);
    h5_set_attr_string(w->file, "/", "shardlora_kind", "model");
    h5_set_attr_int(w->file, "/", "format_version", 1);
    h5_set_attr_string(w->file, "/", "source", origin->source);
    h5_set_attr_string(w->file, "/", "source_format", origin->source_format);
    h5_set_attr_string(w->file, "/", "model_name", origin->model_name);
    modelcfg_write(w->file, cfg);
    char name[32];
    if (w->quant.type != QUANT_NONE)
        h5_set_attr_string(w->file, "/", "quantization", quant_format_name(&w->quant, name, sizeof name));
    w->bufs = stream_buffers_new();
    return w;
}

/* This rank's elements of the writer's next tensor (see import.h). */
static void my_part(const import_writer *w, int64_t n, const quant_format *f, int64_t *first, int64_t *count)
{
    const int64_t piece = stream_piece_elems(f), pieces = (n + piece - 1) / piece;
    int64_t p0 = pieces * RT.rank / RT.world, p1 = pieces * (RT.rank + 1) / RT.world;
    if (pieces < RT.world) p0 = 0, p1 = w->tensors % RT.world == RT.rank ? pieces : 0;
    *first = p0 * piece < n ? p0 * piece : n;
    *count = (p1 * piece < n ? p1 * piece : n) - *first;
}

static void note_write(stream_problem *pr, int64_t key, int rc, const char *path, const char *what, const char *tensor)
{
    if (!rc) return;
    char msg[IMPORT_MSG_LEN];
    snprintf(msg, sizeof msg, "cannot write %s of %s to %s: %s (disk full?)", what, tensor, path, fileio_strerror(rc));
    stream_note(pr, key, msg);
}

/* The statistics of blocks [b0, b1) of the quantized tensor at path, from v, at their places in
 * the group at: block absmax as float32, or with double quantization their 8-bit codes and the
 * nested absmax of the groups the blocks cover. */
static void write_block_stats(import_writer *w, const quant_format *f, const quant_store_addrs *at, int64_t b0,
                              int64_t b1, const quant_view *v, const char *path, stream_problem *pr)
{
    if (!f->double_quant) {
        note_write(pr, 0, fileio_pwrite(w->fd, v->absmax, (size_t)(b1 - b0) * sizeof(float),
                                        at->absmax + b0 * (int64_t)sizeof(float)), w->partial_path, "absmax", path);
        return;
    }
    note_write(pr, 0, fileio_pwrite(w->fd, v->absmax_u8, (size_t)(b1 - b0), at->absmax + b0), w->partial_path,
               "absmax", path);
    note_write(pr, 0, fileio_pwrite(w->fd, v->nested_absmax, (size_t)quant_nested_count(f, b0, b1) * sizeof(float),
                                    at->nested_absmax + b0 / QUANT_NESTED_BLOCKS * (int64_t)sizeof(float)),
               w->partial_path, "nested_absmax", path);
}

/* The statistics of a quantized part, once the tensor's offset is known. */
static void write_stats(import_writer *w, const stream_part *p, float offset, stream_problem *pr)
{
    const quant_format *f = p->fmt;
    const int64_t bs = f->blocksize, b0 = p->first / bs;
    const int64_t b1 = p->first + p->count == p->n ? quant_nblocks(f, p->n) : (p->first + p->count) / bs;
    const char *path = p->spec->path;
    quant_view v = {.absmax = p->absmax};
    if (f->double_quant) {
        v.absmax_u8 = sl_malloc((size_t)(b1 - b0), path);
        v.nested_absmax = sl_malloc((size_t)quant_nested_count(f, b0, b1) * sizeof(float), path);
        quant_encode_stats(f, b0, b1, p->absmax, offset, &v);
    }
    write_block_stats(w, f, &p->at, b0, b1, &v, path, pr);
    free(v.absmax_u8), free(v.nested_absmax);
}

void writer_tensor(import_writer *w, const sl_tensor_spec *spec, const import_source *src)
{
    const int64_t n = spec->ndims == 2 ? spec->dims[0] * spec->dims[1] : spec->dims[0];
    const sl_dtype out = w->out_dtype == SL_DTYPE_OTHER ? src->dtype : w->out_dtype;
    const int quantize = w->quant.type != QUANT_NONE && spec->kind == TENSOR_LINEAR;
    quant_sum sum = {{0}};
    stream_part p = {.src = src, .spec = spec, .n = n, .out = out, .fd = w->fd, .out_path = w->partial_path};
    quant_store_info info;
    if (quantize) {
        info = quant_store_describe(&w->quant, spec->dims, sl_dtype_name(out));
        p.fmt = &w->quant, p.at = quant_store_create(w->file, spec->path, &info, w->fd), p.sum = &sum;
    } else {
        p.addr = h5_create_dataset_at(w->file, spec->path, out, spec->ndims, spec->dims);
    }
    my_part(w, n, p.fmt, &p.first, &p.count);
    if (quantize) p.absmax = sl_malloc((size_t)quant_nblocks(p.fmt, p.count) * sizeof(float), spec->path);
    stream_problem pr = {.key = -1};
    stream_run(&p, w->bufs, &pr);
    if (quantize) {
        float offset = 0.0f;
        if (w->quant.double_quant) {
            MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sum.v, QUANT_SUM_LEN, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
            /* every block summed: no rank met a problem, so the offset is the tensor's */
            if (sum.v[0] == info.nblocks) offset = quant_sum_offset(&sum);
        }
        if (pr.key < 0 && p.count > 0 && (!w->quant.double_quant || sum.v[0] == info.nblocks))
            write_stats(w, &p, offset, &pr);
        free(p.absmax);
        import_agree(w, pr.key, pr.msg);
        if (w->quant.double_quant) quant_store_set_offset(w->file, spec->path, offset);
        w->quantized++;
    } else {
        import_agree(w, pr.key, pr.msg);
    }
    w->bytes_in += n * (int64_t)sl_dtype_size(src->dtype);
    w->dtypes_written |= 1u << out;
    w->tensors++;
}

typedef struct {
    void (*fill)(void *ctx, quant_view *q);
    void *ctx;
    quant_view *q;
} fill_call;

static void call_fill(void *arg)
{
    const fill_call *c = arg;
    c->fill(c->ctx, c->q);
}

void writer_quantized(import_writer *w, const sl_tensor_spec *spec, const quant_store_info *info, float offset,
                      void (*fill)(void *ctx, quant_view *q), void *ctx)
{
    const quant_format *f = &info->fmt;
    if (memcmp(f, &w->quant, sizeof w->quant) != 0)
        sl_fatal("internal error: %s is not in the file's quantized format", spec->path);
    const quant_store_addrs at = quant_store_create(w->file, spec->path, info, w->fd);
    const int64_t nb = info->nblocks, groups = quant_nested_count(f, 0, nb);
    stream_problem pr = {.key = -1};
    quant_view q = {0};
    if (w->tensors % RT.world == RT.rank) {
        fill_call c = {fill, ctx, &q};
        if (!rt_try(call_fill, &c, pr.msg, sizeof pr.msg)) pr.key = 0;
    }
    if (pr.key < 0 && q.codes) {
        note_write(&pr, 0, fileio_pwrite(w->fd, q.codes, (size_t)quant_code_bytes(f, info->n, 0, nb), at.codes),
                   w->partial_path, "the codes", spec->path);
        write_block_stats(w, f, &at, 0, nb, &q, spec->path, &pr);
    }
    free(q.codes), free(q.absmax), free(q.absmax_u8), free(q.nested_absmax);
    import_agree(w, pr.key, pr.msg);
    if (f->double_quant) quant_store_set_offset(w->file, spec->path, offset);
    w->bytes_in += quant_code_bytes(f, info->n, 0, nb) + quant_absmax_bytes(f, 0, nb) + groups * (int64_t)sizeof(float);
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

static void summary(const import_writer *w)
{
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
    double s = rt_now() - w->started;
    log_info("read %.2f GB of tensors in %.2f s (%.0f MB/s) on %d rank%s", (double)w->bytes_in / 1e9, s,
             (double)w->bytes_in / 1e6 / (s > 0 ? s : 1), RT.world, RT.world > 1 ? "s" : "");
    log_info("wrote %s", w->final_path);
}

void writer_finish(import_writer *w)
{
    stream_problem pr = {.key = -1};
    if (close(w->fd) != 0) note_write(&pr, 0, errno, w->partial_path, "the tensors", "the model");
    w->fd = -1;
    import_agree(w, pr.key, pr.msg);
    h5_close(w->file);
    w->file = -1;
    if (RT.rank == 0 && rename(w->partial_path, w->final_path) != 0)
        sl_fatal("cannot rename %s to %s (is the directory writable?)", w->partial_path, w->final_path);
    partial_to_remove = NULL;
    summary(w);
    unfinished = NULL;
    release(w);
}
