/* fsdp: planning, sharded loading, gathering and releasing of flat weight units. */
#include "fsdp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "h5io.h"
#include "runtime.h"

static int64_t tensor_numel(const sl_tensor_spec *t)
{
    return t->ndims == 2 ? t->dims[0] * t->dims[1] : t->dims[0];
}

void fsdp_unit_init(fsdp_unit *u, const char *name, const sl_tensor_spec *tensors, const int *ids, int n)
{
    memset(u, 0, sizeof *u);
    snprintf(u->name, sizeof u->name, "%s", name);
    if (n > FSDP_MAX_MEMBERS) sl_fatal("internal error: unit %s has %d tensors (max %d)", name, n, FSDP_MAX_MEMBERS);
    for (int i = 0; i < n; i++) {
        int64_t numel = tensor_numel(&tensors[ids[i]]);
        u->members[i] = (fsdp_member){.tensor = ids[i], .offset = u->numel, .numel = numel};
        u->numel += numel;
    }
    u->n_members = n;
    u->shard_numel = (u->numel + RT.world - 1) / RT.world;
}

/* Report the first non-finite value of this rank's shard, naming the tensor; all ranks agree. */
static void check_finite(const fsdp_unit *u, const sl_tensor_spec *tensors, const char *file)
{
    int64_t begin = (int64_t)RT.rank * u->shard_numel, bad = -1;
    int64_t valid = u->numel - begin < u->shard_numel ? u->numel - begin : u->shard_numel;
    for (int64_t i = 0; i < valid && bad < 0; i++)
        if (!isfinite(u->shard[i])) bad = begin + i;
    const fsdp_member *m = NULL;
    for (int i = 0; bad >= 0 && i < u->n_members; i++)
        if (bad >= u->members[i].offset && bad < u->members[i].offset + u->members[i].numel) m = &u->members[i];
    rt_agree(bad < 0, "%s: dataset %s holds a non-finite value (%g) at element %lld (expected finite weights)",
             file, m ? tensors[m->tensor].path : "?", bad >= 0 ? u->shard[bad - begin] : 0.0,
             m ? (long long)(bad - m->offset) : -1LL);
}

void fsdp_unit_load(fsdp_unit *u, hid_t file, const sl_tensor_spec *tensors)
{
    u->shard = sl_calloc((size_t)u->shard_numel, sizeof(float), "weight shard");
    int64_t begin = (int64_t)RT.rank * u->shard_numel, end = begin + u->shard_numel;
    for (int i = 0; i < u->n_members; i++) {
        const fsdp_member *m = &u->members[i];
        /* the part of this member inside [begin, end), possibly empty: reads are collective */
        int64_t lo = m->offset > begin ? m->offset : begin;
        int64_t hi = m->offset + m->numel < end ? m->offset + m->numel : end;
        int64_t count = hi > lo ? hi - lo : 0;
        h5_read_range(file, tensors[m->tensor].path, SL_F32, count ? lo - m->offset : 0, count,
                      u->shard + (count ? lo - begin : 0));
    }
    check_finite(u, tensors, h5_name(file));
}

const float *fsdp_gather(fsdp_unit *u)
{
    if (u->full) return u->full;
    u->full = sl_malloc((size_t)u->shard_numel * (size_t)RT.world * sizeof(float), "gathered unit");
    comm_allgather_f32(u->full, u->shard, u->shard_numel);
    return u->full;
}

void fsdp_release(fsdp_unit *u)
{
    if (u->keep_gathered) return;
    free(u->full);
    u->full = NULL;
}

const float *fsdp_tensor(const fsdp_unit *u, int tensor)
{
    for (int i = 0; i < u->n_members; i++)
        if (u->members[i].tensor == tensor) return u->full ? u->full + u->members[i].offset : NULL;
    return NULL;
}

void fsdp_unit_free(fsdp_unit *u)
{
    free(u->shard);
    free(u->full);
    memset(u, 0, sizeof *u);
}
