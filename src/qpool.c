/* qpool: sharded quantization at load time, gathering and dequantization. */
#include "qpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "fsdp.h"
#include "h5io.h"
#include "quant_store.h"
#include "runtime.h"
#include "weights.h"

static int64_t group_blocks(const qpool *q) { return q->fmt.double_quant ? QUANT_NESTED_BLOCKS : 1; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

void qpool_add(qpool *q, const char *path, int ndims, const int64_t *dims)
{
    if (q->n_members == QPOOL_MAX_MEMBERS) sl_fatal("internal error: more than %d quantized tensors in a unit", QPOOL_MAX_MEMBERS);
    qpool_member *m = &q->members[q->n_members++];
    snprintf(m->path, sizeof m->path, "%s", path);
    m->ndims = ndims;
    m->numel = 1;
    for (int i = 0; i < ndims; i++) m->dims[i] = dims[i], m->numel *= dims[i];
    m->offset = q->numel;
    q->numel += m->numel;
}

void qpool_plan(qpool *q, const quant_format *fmt)
{
    q->fmt = *fmt;
    int64_t blocks = 0, g = group_blocks(q);
    for (int i = 0; i < q->n_members; i++) {
        q->members[i].block_start = blocks;
        blocks += round_up(quant_nblocks(fmt, q->members[i].numel), g); /* groups never straddle tensors */
    }
    q->nblocks = round_up(blocks, g * RT.world);
    q->shard_blocks = q->nblocks / RT.world;
    q->code_stride = fmt->type == QUANT_INT8 ? fmt->blocksize : fmt->blocksize / 2;
}

/* This rank's blocks of member m, as member-local [b0, b1); empty when b1 <= b0. */
static void my_blocks(const qpool *q, const qpool_member *m, int64_t *b0, int64_t *b1)
{
    int64_t lo = (int64_t)RT.rank * q->shard_blocks, hi = lo + q->shard_blocks, n = quant_nblocks(&q->fmt, m->numel);
    *b0 = lo > m->block_start ? lo - m->block_start : 0;
    *b1 = hi - m->block_start < n ? hi - m->block_start : n;
    if (*b0 > n) *b0 = n;
    if (*b1 < *b0) *b1 = *b0;
}

static void alloc_shard(qpool *q)
{
    size_t sb = (size_t)q->shard_blocks;
    q->codes = sl_calloc(sb, (size_t)q->code_stride, "quantized weights");
    if (!q->fmt.double_quant) q->absmax = sl_calloc(sb, sizeof(float), "quantization statistics");
    else {
        q->absmax_u8 = sl_calloc(sb, 1, "quantization statistics");
        q->nested = sl_calloc(sb / QUANT_NESTED_BLOCKS, sizeof(float), "quantization statistics");
    }
}

static quant_view shard_view(qpool *q, const qpool_member *m, int64_t b0)
{
    int64_t at = m->block_start + b0 - (int64_t)RT.rank * q->shard_blocks; /* block index in the shard */
    quant_view v = {.codes = q->codes + at * q->code_stride, .offset = m->dq_offset};
    if (!q->fmt.double_quant) v.absmax = q->absmax + at;
    else v.absmax_u8 = q->absmax_u8 + at, v.nested_absmax = q->nested + at / QUANT_NESTED_BLOCKS;
    return v;
}

/* The values a member is quantized from: a non-finite one, noted by the source, is passed on as
 * 0, so the encoder only sees finite values and the error is told after, by every rank. */
static void read_checked(void *ctx, int64_t e0, int64_t count, float *w, uint16_t *words)
{
    for (int64_t i = weights_source_read(ctx, e0, count, w, words); i < count; i++)
        if (!isfinite(w[i])) w[i] = 0.0f;
}

/* Phase 1 and the codes of member m's blocks [b0, b1) of this rank, read piece by piece
 * (collective: empty ranges too); a non-finite value is noted in bad. */
static void encode_member(qpool *q, qpool_member *m, hid_t file, int64_t b0, int64_t b1, float *absmax,
                          quant_sum *sum, weights_first_bad *bad)
{
    const int64_t e0 = b0 * q->fmt.blocksize, count = quant_block_elems(&q->fmt, m->numel, b0, b1);
    weights_source src;
    weights_source_open(&src, file, m->path, count ? e0 : 0, count);
    if (b1 > b0)
        quant_encode_from(&q->fmt, m->numel, b0, b1, read_checked, &src, absmax, shard_view(q, m, b0).codes,
                          q->fmt.double_quant ? sum : NULL);
    weights_source_close(&src);
    weights_note_bad(bad, &src);
}

/* Member i of a pre-quantized file as stored (the model's validation probed it), and this rank's
 * blocks of it. */
static qpool_member *stored_member(qpool *q, int i, hid_t file, quant_store_info *info, int64_t *b0, int64_t *b1)
{
    qpool_member *m = &q->members[i];
    if (!h5_is_group(file, m->path))
        sl_fatal("%s: %s is not quantized, but other weights of the file are (expected every projection quantized)",
                 h5_name(file), m->path);
    quant_store_read_info(file, m->path, info);
    my_blocks(q, m, b0, b1);
    return m;
}

/* A pre-quantized file: each rank reads its own blocks of every member as stored, all members'
 * arrays in one batch. */
static void read_stored(qpool *q, hid_t file)
{
    h5_batch batch = {0};
    for (int i = 0; i < q->n_members; i++) {
        quant_store_info info;
        int64_t b0, b1;
        qpool_member *m = stored_member(q, i, file, &info, &b0, &b1);
        quant_view v = shard_view(q, m, b0);
        quant_store_queue(&batch, file, m->path, &info, b0, b1, &v);
        m->dq_offset = v.offset;
    }
    h5_batch_finish(&batch);
}

/* Bytes of this rank's three block arrays (see qpool.h). */
static void shard_array_bytes(const qpool *q, size_t bytes[3])
{
    const size_t sb = (size_t)q->shard_blocks;
    const int dq = q->fmt.double_quant;
    bytes[0] = sb * (size_t)q->code_stride;
    bytes[1] = sb * (dq ? 1 : sizeof(float));
    bytes[2] = dq ? sb / QUANT_NESTED_BLOCKS * sizeof(float) : 0;
}

/* The blocks go where the backend computes once; they never change, so a backend off the host
 * keeps no host copy. */
static void shard_to_backend(qpool *q)
{
    size_t bytes[3];
    shard_array_bytes(q, bytes);
    const int dq = q->fmt.double_quant;
    const void *host[3] = {q->codes, dq ? (void *)q->absmax_u8 : (void *)q->absmax, q->nested};
    for (int i = 0; i < 3 && bytes[i]; i++) {
        q->shard_buf[i] = BE->mirror_alloc(bytes[i], "quantized weights");
        q->shard_dev[i] = BE->mirror(q->shard_buf[i], host[i], bytes[i]);
    }
    if (BE->host_memory) return;
    free(q->codes), free(q->absmax), free(q->absmax_u8), free(q->nested);
    q->codes = q->absmax_u8 = NULL, q->absmax = q->nested = NULL;
}

/* A float file (or a recipe): quantize this rank's blocks as they are read. */
static void quantize_blocks(qpool *q, hid_t file)
{
    float *am[QPOOL_MAX_MEMBERS] = {0};
    quant_sum *sums = sl_calloc((size_t)q->n_members, sizeof *sums, "quantization sums");
    weights_first_bad bad = weights_no_bad();
    for (int i = 0; i < q->n_members; i++) { /* phase 1 and the codes: own blocks, partial sums */
        qpool_member *m = &q->members[i];
        int64_t b0, b1;
        my_blocks(q, m, &b0, &b1);
        am[i] = sl_malloc((size_t)(b1 - b0 + 1) * sizeof(float), "block absmax");
        encode_member(q, m, file, b0, b1, am[i], &sums[i], &bad);
    }
    weights_agree_finite(file, &bad);
    if (q->fmt.double_quant) { /* phase 2: exact whole-tensor means */
        comm_allreduce_sum_i64(&sums[0].v[0], (int64_t)q->n_members * QUANT_SUM_LEN);
        for (int i = 0; i < q->n_members; i++) q->members[i].dq_offset = quant_sum_offset(&sums[i]);
    }
    for (int i = 0; i < q->n_members; i++) { /* phase 3: own blocks' statistics */
        qpool_member *m = &q->members[i];
        int64_t b0, b1;
        my_blocks(q, m, &b0, &b1);
        quant_view v = shard_view(q, m, b0);
        if (b1 > b0) quant_encode_stats(&q->fmt, b0, b1, am[i], m->dq_offset, &v);
        free(am[i]);
    }
    free(sums);
}

/* A pre-quantized file on a backend off the host: each member's blocks are read in runs that fill
 * a staging buffer and sent on while the next run is read, with no host copy. Every rank makes as
 * many reads as a whole shard takes runs, for files whose reads are collective. */
static void read_stored_staged(qpool *q, hid_t file, staging *st)
{
    size_t bytes[3];
    shard_array_bytes(q, bytes);
    for (int i = 0; i < 3 && bytes[i]; i++) {
        q->shard_buf[i] = BE->mirror_alloc(bytes[i], "quantized weights");
        BE->zero(q->shard_buf[i], bytes[i]); /* the padding blocks */
        q->shard_dev[i] = q->shard_buf[i];
    }
    const int dq = q->fmt.double_quant;
    const size_t stat_bytes = dq ? 1 : sizeof(float);
    int64_t run = (int64_t)st->bytes / ((int64_t)q->code_stride + (int64_t)stat_bytes + 1); /* + 1: nested, 4 per 256 */
    if (dq) run = run / QUANT_NESTED_BLOCKS * QUANT_NESTED_BLOCKS;
    if (run < 1) sl_fatal("internal error: a staging buffer of %zu bytes holds no run of quantized blocks", st->bytes);
    const size_t absmax_at = (size_t)run * (size_t)q->code_stride, nested_at = absmax_at + (size_t)run * stat_bytes;
    for (int i = 0; i < q->n_members; i++) {
        quant_store_info info;
        int64_t b0, b1;
        qpool_member *m = stored_member(q, i, file, &info, &b0, &b1);
        for (int64_t k = 0; k < (q->shard_blocks + run - 1) / run; k++) {
            const int64_t c0 = b0 + k * run < b1 ? b0 + k * run : b1, c1 = c0 + run < b1 ? c0 + run : b1;
            char *buf = staging_next(st);
            quant_view v = {.codes = (uint8_t *)buf};
            if (dq) v.absmax_u8 = (uint8_t *)buf + absmax_at, v.nested_absmax = (float *)(buf + nested_at);
            else v.absmax = (float *)(buf + absmax_at);
            quant_store_read(file, m->path, &info, c0, c1, &v);
            m->dq_offset = v.offset;
            const int64_t at = m->block_start + c0 - (int64_t)RT.rank * q->shard_blocks; /* in the shard */
            if (c1 > c0) {
                staging_send(st, (uint8_t *)q->shard_buf[0] + at * q->code_stride, 0,
                             (size_t)quant_code_bytes(&q->fmt, m->numel, c0, c1));
                staging_send(st, (uint8_t *)q->shard_buf[1] + (size_t)at * stat_bytes, absmax_at,
                             (size_t)(c1 - c0) * stat_bytes);
                if (dq)
                    staging_send(st, (float *)q->shard_buf[2] + at / QUANT_NESTED_BLOCKS, nested_at,
                                 (size_t)quant_nested_count(&q->fmt, c0, c1) * sizeof(float));
            }
            staging_flip(st);
        }
    }
}

void qpool_load(qpool *q, hid_t file, staging *st)
{
    const int stored = q->n_members && h5_is_group(file, q->members[0].path);
    if (stored && !BE->host_memory) {
        read_stored_staged(q, file, st);
        return;
    }
    alloc_shard(q);
    if (stored) read_stored(q, file);
    else quantize_blocks(q, file);
    shard_to_backend(q);
}

static void release_gathered_blocks(qpool *q)
{
    for (int i = 0; i < 3; i++) BE->release(q->blocks_buf[i]), q->blocks_buf[i] = NULL, q->blocks_dev[i] = NULL;
}

void qpool_prefetch(qpool *q)
{
    if (q->dev || q->gather_in_flight || !comm_active()) return;
    size_t bytes[3];
    shard_array_bytes(q, bytes);
    for (int i = 0; i < 3 && bytes[i]; i++) {
        q->blocks_buf[i] = BE->alloc(bytes[i] * (size_t)RT.world, "gathered blocks");
        q->blocks_dev[i] = q->blocks_buf[i];
        q->gather_ticket = comm_allgather_be(q->blocks_buf[i], q->shard_dev[i], (int64_t)bytes[i]);
    }
    q->gather_in_flight = 1;
}

/* Gather every rank's blocks (without collectives this rank's are all of them) and decode them
 * into the act-typed weights. */
void qpool_gather(qpool *q)
{
    if (q->dev) return;
    const int dq = q->fmt.double_quant;
    if (comm_active()) {
        qpool_prefetch(q);
        comm_wait(q->gather_ticket); /* the stream orders the three gathers: the last one's ticket covers them */
        q->gather_in_flight = 0;
    } else {
        for (int i = 0; i < 3; i++) q->blocks_dev[i] = q->shard_dev[i];
    }
    q->dev = BE->alloc((size_t)q->numel * (size_t)BE->act_bytes, "dequantized weights");
    fsdp_account_gathered(q->numel * BE->act_bytes);
    for (int i = 0; i < q->n_members; i++) {
        const qpool_member *m = &q->members[i];
        int64_t b = m->block_start;
        quant_view v = {.codes = (uint8_t *)q->blocks_dev[0] + b * q->code_stride, .offset = m->dq_offset};
        if (dq) v.absmax_u8 = (uint8_t *)q->blocks_dev[1] + b, v.nested_absmax = (float *)q->blocks_dev[2] + b / QUANT_NESTED_BLOCKS;
        else v.absmax = (float *)q->blocks_dev[1] + b;
        k_quant_blocks k = quant_kernel_blocks(&q->fmt, &v);
        BE->dequant(act_at(q->dev, m->offset), &k, m->numel);
    }
    release_gathered_blocks(q);
}

void qpool_drop(qpool *q)
{
    if (q->dev) fsdp_account_gathered(-q->numel * BE->act_bytes);
    BE->release(q->dev);
    q->dev = NULL;
}

void qpool_release(qpool *q)
{
    if (q->keep == KEEP_PER_USE) qpool_drop(q);
}

const void *qpool_member_dev(const qpool *q, const char *path)
{
    for (int i = 0; i < q->n_members; i++)
        if (!strcmp(q->members[i].path, path)) return q->dev ? act_at(q->dev, q->members[i].offset) : NULL;
    return NULL;
}

int64_t qpool_shard_bytes(const qpool *q)
{
    size_t bytes[3];
    shard_array_bytes(q, bytes);
    return (int64_t)(bytes[0] + bytes[1] + bytes[2]);
}

void qpool_free(qpool *q)
{
    qpool_drop(q);
    release_gathered_blocks(q);
    for (int i = 0; i < 3; i++) BE->release(q->shard_buf[i]);
    free(q->codes), free(q->absmax), free(q->absmax_u8), free(q->nested);
    memset(q, 0, sizeof *q);
}
