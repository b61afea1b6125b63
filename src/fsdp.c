/* fsdp: planning, sharded reading and writing, gathering and reduce-scattering of flat pools. */
#include "fsdp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "h5io.h"
#include "runtime.h"

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
static void check_finite(const fsdp_pool *p, const char *file)
{
    int64_t begin = (int64_t)RT.rank * p->shard_numel, bad = -1;
    int64_t valid = p->numel - begin < p->shard_numel ? p->numel - begin : p->shard_numel, first = valid;
    const float *x = p->shard;
#pragma omp parallel for schedule(static) reduction(min : first) if (valid > 65536)
    for (int64_t i = 0; i < valid; i++) /* the first non-finite element, found on every thread */
        if (!isfinite(x[i]) && i < first) first = i;
    if (first < valid) bad = begin + first;
    const fsdp_member *m = NULL;
    for (int i = 0; bad >= 0 && i < p->n_members; i++)
        if (bad >= p->members[i].offset && bad < p->members[i].offset + p->members[i].numel) m = &p->members[i];
    rt_agree(bad < 0, "%s: dataset %s holds a non-finite value (%g) at element %lld (expected finite weights)",
             file, m ? m->path : "?", bad >= 0 ? p->shard[bad - begin] : 0.0, m ? (long long)(bad - m->offset) : -1LL);
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
        else h5_read_range(file, path, SL_F32, hi > lo ? lo - m->offset : 0, hi - lo, buf);
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
    check_finite(p, h5_name(file));
}

void fsdp_pool_write(const fsdp_pool *p, hid_t file) { transfer_shard(p, file, "", p->shard, 1); }

static int64_t gathered_now, gathered_peak;

void fsdp_account_gathered(int64_t delta)
{
    gathered_now += delta;
    if (gathered_now > gathered_peak) gathered_peak = gathered_now;
}

int64_t fsdp_gathered_peak(void) { return gathered_peak; }

/* Bytes of the whole pool in fp32: the gathered buffer, and a trainable pool's full gradient. */
static int64_t full_bytes(const fsdp_pool *p) { return p->shard_numel * RT.world * (int64_t)sizeof(float); }

void fsdp_gather(fsdp_pool *p)
{
    if (p->full || p->dev_kept) return;
    p->full = sl_malloc((size_t)full_bytes(p), "gathered unit");
    fsdp_account_gathered(full_bytes(p));
    comm_allgather_f32(p->full, p->shard, p->shard_numel);
    const int64_t n = p->shard_numel * RT.world;
    p->dev_buf = BE->mirror_alloc((size_t)n * (size_t)BE->act_bytes, "gathered unit");
    p->dev = BE->mirror_act(p->dev_buf, p->full, n);
    /* With one rank nothing is gathered, so frozen weights need no second transfer: the backend's
     * copy stays and the host's goes (the CPU backend computes on the host copy itself). */
    if (p->frozen && RT.world == 1 && p->dev_buf) {
        fsdp_account_gathered(-full_bytes(p));
        free(p->full);
        p->full = NULL, p->dev_kept = 1;
    }
}

static void drop_gathered(fsdp_pool *p)
{
    if (p->dev_kept) return;
    if (p->full) fsdp_account_gathered(-full_bytes(p));
    free(p->full);
    BE->release(p->dev_buf);
    p->full = NULL, p->dev = p->dev_buf = NULL;
}

void fsdp_release(fsdp_pool *p)
{
    if (p->keep == KEEP_PER_USE) drop_gathered(p);
}

void fsdp_reduce_scatter_grad(fsdp_pool *p, float *grad_shard)
{
    comm_reduce_scatter_sum_f32(grad_shard, p->grad_full, p->shard_numel);
}

const fsdp_member *fsdp_find(const fsdp_pool *p, const char *path)
{
    for (int i = 0; i < p->n_members; i++)
        if (!strcmp(p->members[i].path, path)) return &p->members[i];
    return NULL;
}

float *fsdp_member_data(const fsdp_pool *p, const char *path)
{
    const fsdp_member *m = fsdp_find(p, path);
    return m && p->full ? p->full + m->offset : NULL;
}

const void *fsdp_member_dev(const fsdp_pool *p, const char *path)
{
    const fsdp_member *m = fsdp_find(p, path);
    return m && p->dev ? act_at(p->dev, m->offset) : NULL;
}


float *fsdp_grad_dev(const fsdp_pool *p) { return p->grad_dev ? p->grad_dev : p->grad_full; }

void fsdp_grad_zero(fsdp_pool *p)
{
    if (!p->grad_full) {
        p->grad_full = sl_malloc((size_t)full_bytes(p), "full gradient");
        p->grad_dev = BE->mirror_alloc((size_t)full_bytes(p), "full gradient");
    }
    BE->zero(fsdp_grad_dev(p), (size_t)full_bytes(p));
}

void fsdp_grad_to_host(fsdp_pool *p)
{
    if (p->grad_full) BE->unmirror_f32(p->grad_full, p->grad_dev, p->shard_numel * RT.world);
}

void fsdp_pool_free(fsdp_pool *p)
{
    if (p->owns_shard) free(p->shard);
    p->dev_kept = 0;
    drop_gathered(p);
    free(p->grad_full);
    BE->release(p->grad_dev);
    memset(p, 0, sizeof *p);
}

void fsdp_unit_gather(fsdp_unit *u)
{
    fsdp_gather(&u->frozen);
    qpool_gather(&u->quant);
    fsdp_gather(&u->train);
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
