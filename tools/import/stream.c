/* stream: a rank's part of a tensor, piece by piece on every thread (see stream.h). A piece goes
 * through one thread's buffers start to end: read, finiteness check, conversion (and its check),
 * then write, or block absmax and codes, so it stays in that core's cache. Keys of problems order
 * them as a single pass over the tensor meets them: the source's values (and read errors) at their
 * index, then the converted values (n + index), then writes (2n + first element). */
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

/* One thread's buffers: the source's words, float32, the converted 16-bit words, the codes. */
typedef struct {
    void *words;
    float *f32;
    uint16_t *out;
    uint8_t *codes;
    int64_t elems;
} piece_buffers;

struct stream_buffers {
    int threads;
    piece_buffers *t;
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
    free(t->words), free(t->f32), free(t->out), free(t->codes);
    memset(t, 0, sizeof *t);
}

void stream_buffers_free(stream_buffers *b)
{
    for (int i = 0; i < b->threads; i++) release(&b->t[i]);
    free(b->t);
    free(b);
}

/* Room for pieces of elems elements on every thread (sources are at most 4 bytes an element). */
static void reserve(stream_buffers *b, int64_t elems)
{
    for (int i = 0; i < b->threads; i++) {
        piece_buffers *t = &b->t[i];
        if (t->elems >= elems) continue;
        release(t);
        t->words = sl_malloc((size_t)elems * 4, "piece buffer");
        t->f32 = sl_malloc((size_t)elems * sizeof(float), "piece buffer");
        t->out = sl_malloc((size_t)elems * sizeof(uint16_t), "piece buffer");
        t->codes = sl_malloc((size_t)elems, "piece buffer");
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

/* Piece [e0, e0 + m) read, checked and in the stored type (in one of b's buffers); NULL after a problem. */
static const void *stored_piece(const stream_part *p, piece_buffers *b, int64_t e0, int64_t m, stream_problem *pr)
{
    const import_source *s = p->src;
    char err[512], msg[IMPORT_MSG_LEN];
    if (s->read(s, e0, m, b->words, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "%s: cannot read elements [%lld, %lld): %s", s->where, (long long)e0,
                 (long long)(e0 + m), err);
        stream_note(pr, e0, msg);
        return NULL;
    }
    int64_t bad = sl_first_nonfinite(b->words, s->dtype, m);
    if (bad >= 0) {
        note_nonfinite(p, b->words, s->dtype, e0, bad, 0, pr);
        return NULL;
    }
    if (p->out == s->dtype) return b->words;
    sl_to_f32(b->f32, b->words, s->dtype, (size_t)m);
    if (p->out == SL_F32) return b->f32;
    sl_from_f32(b->out, b->f32, p->out, (size_t)m); /* float16 overflows to Inf */
    bad = sl_first_nonfinite(b->out, p->out, m);
    if (bad >= 0) {
        note_nonfinite(p, b->out, p->out, e0, bad, 1, pr);
        return NULL;
    }
    return b->out;
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
    const void *data = stored_piece(p, b, e0, m, pr);
    if (!data) return;
    const int64_t size = (int64_t)sl_dtype_size(p->out);
    int rc = fileio_pwrite(p->fd, data, (size_t)(m * size), p->addr + e0 * size);
    if (rc) note_write(p, rc, e0, "the values", pr);
}

/* Blocks of the piece: absmax into the part's array, codes written at once, the exact sum into sum. */
static void quant_piece(const stream_part *p, piece_buffers *b, int64_t e0, int64_t m, quant_sum *sum,
                        stream_problem *pr)
{
    const void *data = stored_piece(p, b, e0, m, pr);
    if (!data) return;
    const float *x = data;
    if (p->out != SL_F32) {
        sl_to_f32(b->f32, data, p->out, (size_t)m);
        x = b->f32;
    }
    const quant_format *f = p->fmt;
    const int64_t b0 = e0 / f->blocksize, b1 = b0 + (m + f->blocksize - 1) / f->blocksize;
    float *absmax = p->absmax + (b0 - p->first / f->blocksize);
    quant_block_absmax(f, x, p->n, b0, b1, absmax);
    quant_encode_codes(f, x, p->n, b0, b1, absmax, b->codes);
    int rc = fileio_pwrite(p->fd, b->codes, (size_t)quant_code_bytes(f, p->n, b0, b1),
                           p->at.codes + quant_code_bytes(f, p->n, 0, b0));
    if (rc) note_write(p, rc, e0, "the codes", pr);
    if (f->double_quant) quant_sum_add(sum, absmax, b1 - b0);
}

void stream_run(const stream_part *p, stream_buffers *bufs, stream_problem *pr)
{
    if (p->count == 0) return;
    const int64_t piece = stream_piece_elems(p->fmt), pieces = (p->count + piece - 1) / piece;
    reserve(bufs, piece);
#pragma omp parallel num_threads(bufs->threads)
    {
        piece_buffers *b = &bufs->t[omp_get_thread_num()];
        quant_sum sum = {{0}};
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < pieces; k++) {
            const int64_t e0 = p->first + k * piece, end = p->first + p->count, m = end - e0 < piece ? end - e0 : piece;
            if (p->fmt) quant_piece(p, b, e0, m, &sum, pr);
            else float_piece(p, b, e0, m, pr);
        }
        if (p->fmt && p->fmt->double_quant) {
#pragma omp critical(stream_sum)
            for (int i = 0; i < QUANT_SUM_LEN; i++) p->sum->v[i] += sum.v[i];
        }
    }
}
