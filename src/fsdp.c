/* fsdp: planning, sharded reading and writing, gathering and reduce-scattering of flat pools. */
#include "fsdp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "h5io.h"
#include "runtime.h"
#include "weights.h"

void fsdp_pool_add(fsdp_pool *p, const char *path, int ndims, const int64_t *dims)
{
    if (p->n_members == FSDP_MAX_MEMBERS) sl_fatal("internal error: more than %d tensors in one unit", FSDP_MAX_MEMBERS);
    fsdp_member *m = &p->members[p->n_members++];
    snprintf(m->path, sizeof m->path, "%s", path);
    m->ndims = ndims;
    m->numel = 1;
    for (int i = 0; i < ndims; i++) m->dims[i] = dims[i], m->numel *= dims[i];
    m->offset = p->numel;
    p->numel += m->numel;
}

void fsdp_pool_plan(fsdp_pool *p) { p->shard_numel = (p->numel + RT.world - 1) / RT.world; }

/* The part [lo, hi) of member m that lies in this rank's shard; empty when hi <= lo. */
static void shard_overlap(const fsdp_pool *p, const fsdp_member *m, int64_t *lo, int64_t *hi)
{
    int64_t begin = (int64_t)RT.rank * p->shard_numel, end = begin + p->shard_numel;
    *lo = m->offset > begin ? m->offset : begin;
    *hi = m->offset + m->numel < end ? m->offset + m->numel : end;
    if (*hi < *lo) *hi = *lo;
}

/* Report the first non-finite value of this rank's shard, naming the dataset; all ranks agree. */
static void check_finite(const fsdp_pool *p, hid_t file)
{
    const int64_t begin = (int64_t)RT.rank * p->shard_numel;
    const int64_t valid = p->numel - begin < p->shard_numel ? p->numel - begin : p->shard_numel;
    const int64_t first = sl_first_nonfinite(p->shard, SL_F32, valid > 0 ? valid : 0), at = begin + first;
    weights_first_bad bad = weights_no_bad();
    for (int i = 0; first >= 0 && i < p->n_members; i++) {
        const fsdp_member *m = &p->members[i];
        if (at >= m->offset && at < m->offset + m->numel) {
            snprintf(bad.path, sizeof bad.path, "%s", m->path);
            bad.at = at - m->offset, bad.value = p->shard[first];
        }
    }
    weights_agree_finite(file, &bad);
}

static void transfer_shard(const fsdp_pool *p, hid_t file, const char *prefix, float *shard, int writing)
{
    int64_t begin = (int64_t)RT.rank * p->shard_numel;
    char path[256];
    for (int i = 0; i < p->n_members; i++) {
        const fsdp_member *m = &p->members[i];
        int64_t lo, hi;
        shard_overlap(p, m, &lo, &hi);
        snprintf(path, sizeof path, "%s%s", prefix, m->path);
        /* ranges may be empty, but every rank takes part: the transfers are collective */
        float *buf = shard + (hi > lo ? lo - begin : 0);
        if (writing) h5_write_range(file, path, SL_F32, hi > lo ? lo - m->offset : 0, hi - lo, buf);
        else weights_read_range(file, path, hi > lo ? lo - m->offset : 0, hi - lo, buf);
    }
}

void fsdp_pool_write_at(const fsdp_pool *p, hid_t file, const char *prefix, const float *shard)
{
    transfer_shard(p, file, prefix, (float *)shard, 1);
}

void fsdp_pool_read_at(const fsdp_pool *p, hid_t file, const char *prefix, float *shard)
{
    transfer_shard(p, file, prefix, shard, 0);
}

/* Each element contributes a mix of its index and its bits, so any flipped byte or moved element
 * changes the sum, and the sum of the parts does not depend on how the tensor was cut. */
void fsdp_pool_checksums(const fsdp_pool *p, const float *shard, uint64_t *sums)
{
    int64_t begin = (int64_t)RT.rank * p->shard_numel;
    for (int i = 0; i < p->n_members; i++) {
        const fsdp_member *m = &p->members[i];
        int64_t lo, hi;
        shard_overlap(p, m, &lo, &hi);
        uint64_t sum = 0; /* a sum modulo 2^64: the same in any order, so on every thread */
#pragma omp parallel for schedule(static) reduction(+ : sum) if (hi - lo > 65536)
        for (int64_t e = lo; e < hi; e++) {
            uint32_t bits;
            memcpy(&bits, &shard[e - begin], 4);
            uint64_t z = ((uint64_t)(e - m->offset) << 32 | bits) * 0x9e3779b97f4a7c15ull;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            sum += z ^ (z >> 27);
        }
        sums[i] += sum;
    }
}

void fsdp_pool_load(fsdp_pool *p, hid_t file)
{
    if (!p->shard) {
        p->shard = sl_calloc((size_t)p->shard_numel, sizeof(float), "weight shard");
        p->owns_shard = 1;
    }
    transfer_shard(p, file, "", p->shard, 0);
    check_finite(p, file);
}

/* A member's part of this rank's shard, pool elements [lo, hi), and the source of its values. */
typedef struct {
    weights_source src;
    int64_t lo, hi, offset; /* offset: the member's first pool element */
} member_part;

/* Where a frozen shard's values go as they are read: the host shard (a backend computing there),
 * or a staging buffer in the act type, sent on to the backend's shard a buffer at a time. */
typedef struct {
    float *host;   /* the host shard, or NULL */
    void *stage;   /* the staging buffer */
    int64_t first; /* the pool element at element 0 of host or stage */
} frozen_dest;

/* Pool elements [e, e + n) of part, w being room for n floats in transit (none to the host shard). */
static void load_piece(member_part *part, const frozen_dest *d, int64_t e, int64_t n, float *w, uint16_t *words)
{
    float *x = d->host ? d->host + (e - d->first) : w;
    weights_source_read(&part->src, e - part->offset, n, x, words);
    if (d->host) return;
    if (BE->act_bytes == 2) sl_from_f32((uint16_t *)d->stage + (e - d->first), x, SL_BF16, (size_t)n);
    else memcpy((float *)d->stage + (e - d->first), x, (size_t)n * sizeof(float));
}

/* Pool elements [c0, c1) of every member, piece by piece on every thread. A thread done with its
 * pieces of one member goes on to the next (nowait): waiting at each member's end for the last
 * reads left a cold disk idle a good part of the load. */
static void load_chunk(member_part *parts, int n_parts, const frozen_dest *d, int64_t c0, int64_t c1)
{
#pragma omp parallel
    {
        float *w = d->host ? NULL : sl_malloc(WEIGHTS_PIECE * sizeof *w, "weights in transit");
        uint16_t *words = sl_malloc(WEIGHTS_PIECE * sizeof *words, "weights in transit");
        for (int i = 0; i < n_parts; i++) {
            const int64_t a = parts[i].lo > c0 ? parts[i].lo : c0, b = parts[i].hi < c1 ? parts[i].hi : c1;
            const int64_t pieces = b > a ? (b - a + WEIGHTS_PIECE - 1) / WEIGHTS_PIECE : 0;
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t k = 0; k < pieces; k++) {
                const int64_t e = a + k * WEIGHTS_PIECE;
                load_piece(&parts[i], d, e, b - e < WEIGHTS_PIECE ? b - e : WEIGHTS_PIECE, w, words);
            }
        }
        free(w), free(words);
    }
}

void fsdp_pool_load_frozen(fsdp_pool *p, hid_t file, staging *st, weights_first_bad *bad)
{
    const int64_t begin = (int64_t)RT.rank * p->shard_numel;
    const int64_t valid = p->numel - begin < p->shard_numel ? (p->numel > begin ? p->numel - begin : 0) : p->shard_numel;
    const size_t act = (size_t)BE->act_bytes;
    if (BE->host_memory) {
        p->shard = sl_calloc((size_t)p->shard_numel, sizeof(float), "weight shard");
        p->owns_shard = 1;
        p->shard_act = p->shard;
    } else {
        p->shard_act = p->shard_act_buf = BE->mirror_alloc((size_t)p->shard_numel * act, "weight shard");
        BE->zero(act_at(p->shard_act, valid), (size_t)(p->shard_numel - valid) * act); /* the padding */
    }
    /* Every member's source stays open through the pool's read: those HDF5 must read itself (see
     * weights.h) are held whole in memory together, a layer's worth at most. */
    member_part *parts = sl_malloc((size_t)p->n_members * sizeof *parts + 1, "weights to load");
    for (int i = 0; i < p->n_members; i++) {
        const fsdp_member *m = &p->members[i];
        member_part *part = &parts[i];
        shard_overlap(p, m, &part->lo, &part->hi);
        part->offset = m->offset;
        weights_source_open(&part->src, file, m->path, part->hi > part->lo ? part->lo - m->offset : 0,
                            part->hi - part->lo); /* collective */
    }
    const int64_t most = BE->host_memory ? valid : (int64_t)(st->bytes / act);
    for (int64_t e = begin; e < begin + valid;) {
        const int64_t n = begin + valid - e < most ? begin + valid - e : most;
        const frozen_dest d = BE->host_memory ? (frozen_dest){.host = p->shard, .first = begin}
                                              : (frozen_dest){.stage = staging_next(st), .first = e};
        load_chunk(parts, p->n_members, &d, e, e + n);
        if (!BE->host_memory) staging_send(st, act_at(p->shard_act, e - begin), 0, (size_t)n * act), staging_flip(st);
        e += n;
    }
    for (int i = 0; i < p->n_members; i++) {
        weights_source_close(&parts[i].src);
        weights_note_bad(bad, &parts[i].src);
    }
    free(parts);
}

void fsdp_pool_write(const fsdp_pool *p, hid_t file) { transfer_shard(p, file, "", p->shard, 1); }

static int64_t gathered_now, gathered_peak;

void fsdp_account_gathered(int64_t delta)
{
    gathered_now += delta;
    if (gathered_now > gathered_peak) gathered_peak = gathered_now;
}

int64_t fsdp_gathered_peak(void) { return gathered_peak; }

/* Bytes of the whole pool gathered (act-typed) and of a trainable pool's full fp32 gradient. */
static int64_t gathered_bytes(const fsdp_pool *p) { return p->shard_numel * RT.world * (int64_t)BE->act_bytes; }
static int64_t grad_bytes(const fsdp_pool *p) { return p->shard_numel * RT.world * (int64_t)sizeof(float); }

/* Without collectives the shard is the whole pool: frozen weights are used where they were loaded,
 * and fp32 adapters too when the backend computes in fp32. */
static int gather_is_view(const fsdp_pool *p) { return !comm_active() && (p->frozen || BE->act_bytes == 4); }

void fsdp_prefetch(fsdp_pool *p)
{
    if (p->dev || p->gather_in_flight || !comm_active()) return;
    const size_t shard_bytes = (size_t)p->shard_numel * (size_t)BE->act_bytes;
    p->dev_buf = BE->alloc((size_t)gathered_bytes(p), "gathered unit");
    fsdp_account_gathered(gathered_bytes(p));
    const void *mine = p->shard_act;
    if (!p->frozen) { /* adapters travel in the compute type, cast from the fp32 masters */
        if (!p->cast_buf) p->cast_buf = BE->alloc(shard_bytes, "adapters in transit");
        BE->to_act(p->cast_buf, p->shard_dev, p->shard_numel);
        mine = p->cast_buf;
    }
    p->gather_ticket = comm_allgather_be(p->dev_buf, mine, (int64_t)shard_bytes);
    p->gather_in_flight = 1;
}

void fsdp_gather(fsdp_pool *p)
{
    if (p->dev) return;
    if (gather_is_view(p)) {
        p->dev = p->frozen ? p->shard_act : (void *)p->shard_dev;
        return;
    }
    if (!comm_active()) { /* one rank, a bf16 backend: the adapters cast from their masters */
        p->dev_buf = BE->alloc((size_t)gathered_bytes(p), "gathered unit");
        fsdp_account_gathered(gathered_bytes(p));
        BE->to_act(p->dev_buf, p->shard_dev, p->shard_numel);
    } else {
        fsdp_prefetch(p);
        comm_wait(p->gather_ticket);
        p->gather_in_flight = 0;
    }
    p->dev = p->dev_buf;
}

static void drop_gathered(fsdp_pool *p)
{
    if (p->dev_buf) {
        fsdp_account_gathered(-gathered_bytes(p));
        BE->release(p->dev_buf);
    }
    p->dev = p->dev_buf = NULL;
}

void fsdp_release(fsdp_pool *p)
{
    if (p->keep == KEEP_PER_USE) drop_gathered(p);
}

void fsdp_reduce_grad(fsdp_pool *p)
{
    if (p->grad_dev) p->grad_ticket = comm_reduce_scatter_be_f32(p->grad_shard, p->grad_dev, p->shard_numel);
}

void fsdp_grad_wait(fsdp_pool *p)
{
    comm_wait(p->grad_ticket);
    p->grad_ticket = 0;
}

const fsdp_member *fsdp_find(const fsdp_pool *p, const char *path)
{
    for (int i = 0; i < p->n_members; i++)
        if (!strcmp(p->members[i].path, path)) return &p->members[i];
    return NULL;
}

const void *fsdp_member_dev(const fsdp_pool *p, const char *path)
{
    const fsdp_member *m = fsdp_find(p, path);
    return m && p->dev ? act_at(p->dev, m->offset) : NULL;
}

void fsdp_grad_zero(fsdp_pool *p)
{
    if (!p->grad_dev) p->grad_dev = BE->alloc((size_t)grad_bytes(p), "full gradient");
    BE->zero(p->grad_dev, (size_t)grad_bytes(p));
}

void fsdp_pool_free(fsdp_pool *p)
{
    if (p->owns_shard) free(p->shard);
    drop_gathered(p);
    BE->release(p->shard_act_buf);
    BE->release(p->cast_buf);
    BE->release(p->grad_dev);
    memset(p, 0, sizeof *p);
}

void fsdp_unit_prefetch(fsdp_unit *u)
{
    fsdp_prefetch(&u->frozen);
    qpool_prefetch(&u->quant);
    fsdp_prefetch(&u->train);
}

void fsdp_unit_gather(fsdp_unit *u)
{
    fsdp_gather(&u->frozen);
    qpool_gather(&u->quant);
    fsdp_gather(&u->train);
}

void fsdp_unit_gather_ahead(fsdp_unit *u, fsdp_unit *next)
{
    fsdp_unit_gather(u);
    if (next) fsdp_unit_prefetch(next);
}

void fsdp_unit_release(fsdp_unit *u)
{
    fsdp_release(&u->frozen);
    qpool_release(&u->quant);
    fsdp_release(&u->train);
}

void fsdp_unit_step_done(fsdp_unit *u)
{
    if (u->frozen.keep == KEEP_PER_STEP) drop_gathered(&u->frozen);
    if (u->quant.keep == KEEP_PER_STEP) qpool_drop(&u->quant);
}

const void *fsdp_unit_dev(const fsdp_unit *u, const char *path)
{
    const void *d = fsdp_member_dev(&u->frozen, path);
    return d ? d : qpool_member_dev(&u->quant, path);
}

void fsdp_unit_free(fsdp_unit *u)
{
    fsdp_pool_free(&u->frozen);
    fsdp_pool_free(&u->train);
    qpool_free(&u->quant);
}
