/* stream: a rank's part of a tensor, piece by piece on every thread (see stream.h). A piece goes
 * through one thread's buffers start to end: read, finiteness check, conversion (and its check),
 * then its write, or (quantize_part) block absmax and codes through quant_encode_from, the piece
 * loop that quantization at load and shardlora-init use too. Keys of problems order them as a
 * single pass over the tensor meets them: the source's values (and read errors) at their index,
 * then the converted values (n + index), then writes (2n + first element). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "runtime.h"
#include "stream.h"

enum { PIECE_ELEMS = 1 << 17 };

int64_t stream_piece_elems(const quant_format *fmt)
{
    if (!fmt) return PIECE_ELEMS;
    const int64_t group = (int64_t)fmt->blocksize * QUANT_NESTED_BLOCKS;
    return group * (PIECE_ELEMS / group > 1 ? PIECE_ELEMS / group : 1);
}

void stream_note(stream_problem *p, int64_t key, const char *msg)
{
#pragma omp critical(stream_note)
    if (p->key < 0 || key < p->key) {
        p->key = key;
        snprintf(p->msg, sizeof p->msg, "%s", msg);
    }
}

/* One thread's buffers: the source's values, float32, the converted 16-bit words. */
typedef struct {
    void *raw;
    float *f32;
    uint16_t *out;
    int64_t elems;
} piece_buffers;

struct stream_buffers {
    int threads;
    piece_buffers *t;
    uint8_t *codes; /* a quantized part's codes */
    size_t code_bytes;
};

stream_buffers *stream_buffers_new(void)
{
    stream_buffers *b = sl_calloc(1, sizeof *b, "piece buffers");
    b->threads = omp_get_max_threads();
    b->t = sl_calloc((size_t)b->threads, sizeof *b->t, "piece buffers");
    return b;
}

static void release(piece_buffers *t)
{
    free(t->raw), free(t->f32), free(t->out);
    memset(t, 0, sizeof *t);
}

void stream_buffers_free(stream_buffers *b)
{
    for (int i = 0; i < b->threads; i++) release(&b->t[i]);
    free(b->t);
    free(b->codes);
    free(b);
}

/* Room for pieces of elems elements on every thread (sources are at most 4 bytes an element). */
static void reserve(stream_buffers *b, int64_t elems)
{
    for (int i = 0; i < b->threads; i++) {
        piece_buffers *t = &b->t[i];
        if (t->elems >= elems) continue;
        release(t);
        t->raw = sl_malloc((size_t)elems * 4, "piece buffer");
        t->f32 = sl_malloc((size_t)elems * sizeof(float), "piece buffer");
        t->out = sl_malloc((size_t)elems * sizeof(uint16_t), "piece buffer");
        t->elems = elems;
    }
}

/* The first non-finite value of a piece (data holds its elements from e0 on, of type t). */
static void note_nonfinite(const stream_part *p, const void *data, sl_dtype t, int64_t e0, int64_t local,
                           int converted, stream_problem *pr)
{
    float v;
    sl_to_f32(&v, (const char *)data + local * (int64_t)sl_dtype_size(t), t, 1);
    const int64_t bad = e0 + local;
    char at[96] = "", msg[IMPORT_MSG_LEN];
    if (p->spec->ndims == 2)
        snprintf(at, sizeof at, " (row %lld, column %lld)", (long long)(bad / p->spec->dims[1]),
                 (long long)(bad % p->spec->dims[1]));
    const char *stage = !converted ? " is not finite"
                        : t == SL_F16 ? " after conversion to float16 (out of its range)"
                                      : " after conversion to bfloat16";
    snprintf(msg, sizeof msg, "%s: value %g at flat index %lld%s%s; a model must hold finite weights", p->src->where, v,
             (long long)bad, at, stage);
    stream_note(pr, converted ? p->n + bad : bad, msg);
}

/* Piece [e0, e0 + m) read into raw, checked and in the stored type, in raw, f32 or out (f32 may
 * be raw for a float32 source, out may be raw for a 16-bit one); NULL after a problem. */
static const void *stored_piece(const stream_part *p, int64_t e0, int64_t m, void *raw, float *f32, uint16_t *out,
                                stream_problem *pr)
{
    const import_source *s = p->src;
    char err[512], msg[IMPORT_MSG_LEN];
    if (s->read(s, e0, m, raw, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "%s: cannot read elements [%lld, %lld): %s", s->where, (long long)e0,
                 (long long)(e0 + m), err);
        stream_note(pr, e0, msg);
        return NULL;
    }
    int64_t bad = sl_first_nonfinite(raw, s->dtype, m);
    if (bad >= 0) {
        note_nonfinite(p, raw, s->dtype, e0, bad, 0, pr);
        return NULL;
    }
    if (p->out == s->dtype) return raw;
    sl_to_f32(f32, raw, s->dtype, (size_t)m);
    if (p->out == SL_F32) return f32;
    sl_from_f32(out, f32, p->out, (size_t)m); /* float16 overflows to Inf */
    bad = sl_first_nonfinite(out, p->out, m);
    if (bad >= 0) {
        note_nonfinite(p, out, p->out, e0, bad, 1, pr);
        return NULL;
    }
    return out;
}

static void note_write(const stream_part *p, int rc, int64_t e0, const char *what, stream_problem *pr)
{
    char msg[IMPORT_MSG_LEN];
    snprintf(msg, sizeof msg, "%s: cannot write %s of elements from %lld to %s: %s (disk full?)", p->src->where, what,
             (long long)e0, p->out_path, fileio_strerror(rc));
    stream_note(pr, 2 * p->n + e0, msg);
}

static void float_piece(const stream_part *p, piece_buffers *b, int64_t e0, int64_t m, stream_problem *pr)
{
    const void *data = stored_piece(p, e0, m, b->raw, b->f32, b->out, pr);
    if (!data) return;
    const int64_t size = (int64_t)sl_dtype_size(p->out);
    int rc = fileio_pwrite(p->fd, data, (size_t)(m * size), p->addr + e0 * size);
    if (rc) note_write(p, rc, e0, "the values", pr);
}

typedef struct {
    const stream_part *p;
    stream_problem *pr;
} quant_reader;

/* quant_encode_from's values: the piece as float32, in the stored type's values; zeros after a
 * problem (noted in pr), so the encoder only ever sees finite values. */
static void quant_values(void *ctx, int64_t e0, int64_t count, float *w, uint16_t *words)
{
    const quant_reader *r = ctx;
    const int wide = sl_dtype_size(r->p->src->dtype) == 4;
    const void *data = stored_piece(r->p, e0, count, wide ? (void *)w : (void *)words, w, words, r->pr);
    if (!data) memset(w, 0, (size_t)count * sizeof *w);
    else if (data != w) sl_to_f32(w, data, r->p->out, (size_t)count);
}

/* The part's blocks: absmax into p->absmax, the exact sum into p->sum, the codes written at once. */
static void quantize_part(const stream_part *p, stream_buffers *bufs, stream_problem *pr)
{
    const quant_format *f = p->fmt;
    const int64_t b0 = p->first / f->blocksize, b1 = b0 + (p->count + f->blocksize - 1) / f->blocksize;
    const size_t bytes = (size_t)quant_code_bytes(f, p->n, b0, b1);
    if (bufs->code_bytes < bytes) {
        free(bufs->codes);
        bufs->codes = sl_malloc(bytes, "codes");
        bufs->code_bytes = bytes;
    }
    quant_reader r = {p, pr};
    quant_encode_from(f, p->n, b0, b1, quant_values, &r, p->absmax, bufs->codes, f->double_quant ? p->sum : NULL);
    int rc = fileio_pwrite(p->fd, bufs->codes, bytes, p->at.codes + quant_code_bytes(f, p->n, 0, b0));
    if (rc) note_write(p, rc, p->first, "the codes", pr);
}

void stream_run(const stream_part *p, stream_buffers *bufs, stream_problem *pr)
{
    if (p->count == 0) return;
    if (p->fmt) {
        quantize_part(p, bufs, pr);
        return;
    }
    const int64_t piece = stream_piece_elems(NULL), pieces = (p->count + piece - 1) / piece;
    reserve(bufs, piece);
#pragma omp parallel num_threads(bufs->threads)
    {
        piece_buffers *b = &bufs->t[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < pieces; k++) {
            const int64_t e0 = p->first + k * piece, end = p->first + p->count, m = end - e0 < piece ? end - e0 : piece;
            float_piece(p, b, e0, m, pr);
        }
    }
}
