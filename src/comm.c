/* comm: the transports of the collectives. MPI counts above INT_MAX are refused by name. */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "rng.h"
#include "runtime.h"
#include "watchdog.h"

typedef enum { TRANSPORT_HOST, TRANSPORT_NCCL, TRANSPORT_STAGED } transport;

static transport chosen = TRANSPORT_HOST;
static const comm_gpu_ops *GPU;
static int forced; /* a transport was named: collectives run even on one rank */
static comm_traffic traffic;

comm_traffic comm_traffic_so_far(void) { return traffic; }
int comm_active(void) { return RT.world > 1 || forced; }

/* A blocking MPI collective, watched (watchdog.h). */
#define WATCHED(what, call)                                                                         \
    do {                                                                                            \
        watchdog_enter(what);                                                                       \
        call;                                                                                       \
        watchdog_leave();                                                                           \
    } while (0)

static int mpi_count(int64_t n, const char *what)
{
    if (n > INT_MAX) sl_fatal("%s of %lld elements per rank exceeds MPI's int count", what, (long long)n);
    return (int)n;
}

static void mpi_allgather(void *dst, const void *src, int64_t bytes)
{
    if (!RT.mpi) {
        memmove(dst, src, (size_t)bytes);
        return;
    }
    int n = mpi_count(bytes, "all-gather");
    WATCHED("all-gather", MPI_CHECK(MPI_Allgather(src, n, MPI_BYTE, dst, n, MPI_BYTE, MPI_COMM_WORLD)));
}

static void mpi_reduce_scatter_f32(float *dst, const float *src, int64_t count)
{
    if (!RT.mpi) {
        memmove(dst, src, (size_t)count * sizeof(float));
        return;
    }
    int n = mpi_count(count, "reduce-scatter");
    WATCHED("reduce-scatter", MPI_CHECK(MPI_Reduce_scatter_block(src, dst, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD)));
}

/* Host staging buffers of the staged transport, pinned so the device copies run at full speed;
 * they grow to the largest collective and are kept. The upload out of a staging buffer is
 * asynchronous; the next collective's download waits for the stream before MPI writes them. */
static void *stage_in, *stage_out;
static size_t stage_in_bytes, stage_out_bytes;

static void *stage(void **buf, size_t *have, size_t bytes)
{
    if (bytes > *have) {
        GPU->sync(); /* an upload may still read the old buffer */
        GPU->host_free(*buf);
        *buf = GPU->host_alloc(bytes, "collectives staged through host memory");
        *have = bytes;
    }
    return *buf;
}

/* The identity of this rank's GPU (host and PCI bus), so that ranks can tell whether they share one. */
static uint64_t gpu_identity(char *name, size_t len)
{
    char host[256] = "?", bus[64] = "?";
    gethostname(host, sizeof host);
    GPU->pci_bus_id(bus, (int)sizeof bus);
    snprintf(name, len, "%s on %s", bus, host);
    return rng_name_hash(name);
}

/* The first two ranks that share a GPU, or -1. */
static void first_shared_gpu(int *a, int *b, char *name, size_t len)
{
    uint64_t mine = gpu_identity(name, len);
    uint64_t *all = sl_malloc((size_t)RT.world * sizeof *all, "GPU identities");
    mpi_allgather(all, &mine, sizeof mine);
    *a = *b = -1;
    for (int i = 0; i < RT.world && *a < 0; i++)
        for (int j = i + 1; j < RT.world && *a < 0; j++)
            if (all[i] == all[j]) *a = i, *b = j;
    free(all);
}

static void nccl_bootstrap(double timeout_s)
{
    unsigned char id[256];
    size_t id_bytes = GPU->nccl_id_bytes();
    if (id_bytes > sizeof id) sl_fatal("internal error: NCCL unique id of %zu bytes", id_bytes);
    if (RT.rank == 0) GPU->nccl_unique_id(id);
    if (RT.mpi) MPI_CHECK(MPI_Bcast(id, (int)id_bytes, MPI_BYTE, 0, MPI_COMM_WORLD));
    GPU->nccl_init(id, RT.world, RT.rank, timeout_s);
}

void comm_setup(const char *choice, double timeout_s, const comm_gpu_ops *gpu)
{
    if (RT.world > 1) watchdog_start(timeout_s);
    forced = strcmp(choice, "auto") != 0;
    chosen = TRANSPORT_HOST;
    GPU = gpu;
    if (BE->host_memory) {
        rt_agree(strcmp(choice, "nccl") != 0, "option --comm=nccl needs the CUDA backend (this run computes on the %s)",
                 BE->name);
        return;
    }
    if (!gpu) return; /* a plan only (--dry-run): nothing is communicated */
    int a, b;
    char name[512];
    first_shared_gpu(&a, &b, name, sizeof name);
    if (!strcmp(choice, "nccl"))
        rt_agree(a < 0, "option --comm=nccl: ranks %d and %d share one GPU (%s), which NCCL refuses (use --comm=mpi, "
                 "or one task per GPU)", a, b, name);
    chosen = !strcmp(choice, "mpi") || a >= 0 || (!forced && RT.world == 1) ? TRANSPORT_STAGED : TRANSPORT_NCCL;
    if (chosen == TRANSPORT_NCCL) nccl_bootstrap(timeout_s);
    if (a >= 0 && strcmp(choice, "mpi") != 0)
        log_info("comm: ranks %d and %d share a GPU: collectives are staged through host memory over MPI", a, b);
}

void comm_finalize(void)
{
    if (chosen == TRANSPORT_NCCL) GPU->nccl_finalize();
    if (GPU) GPU->host_free(stage_in), GPU->host_free(stage_out);
    stage_in = stage_out = NULL, stage_in_bytes = stage_out_bytes = 0;
    chosen = TRANSPORT_HOST;
}

comm_ticket comm_allgather_be(void *dst, const void *src, int64_t bytes)
{
    traffic.gathered += bytes * RT.world;
    if (!comm_active()) {
        BE->copy(dst, src, (size_t)bytes);
        return 0;
    }
    switch (chosen) {
    case TRANSPORT_HOST: mpi_allgather(dst, src, bytes); return 0;
    case TRANSPORT_NCCL: return GPU->nccl_allgather(dst, src, (size_t)bytes);
    case TRANSPORT_STAGED: {
        void *in = stage(&stage_in, &stage_in_bytes, (size_t)bytes);
        void *out = stage(&stage_out, &stage_out_bytes, (size_t)bytes * (size_t)RT.world);
        BE->download(in, src, (size_t)bytes);
        mpi_allgather(out, in, bytes);
        BE->mirror(dst, out, (size_t)bytes * (size_t)RT.world);
        return 0;
    }
    default: sl_fatal("internal error: transport %d", (int)chosen);
    }
}

comm_ticket comm_reduce_scatter_be_f32(float *dst, const float *src, int64_t count)
{
    traffic.reduced += count * (int64_t)sizeof(float) * RT.world;
    if (!comm_active()) {
        BE->copy(dst, src, (size_t)count * sizeof(float));
        return 0;
    }
    switch (chosen) {
    case TRANSPORT_HOST: mpi_reduce_scatter_f32(dst, src, count); return 0;
    case TRANSPORT_NCCL: return GPU->nccl_reduce_scatter_f32(dst, src, (size_t)count);
    case TRANSPORT_STAGED: {
        const size_t bytes = (size_t)count * sizeof(float);
        float *in = stage(&stage_in, &stage_in_bytes, bytes * (size_t)RT.world);
        float *out = stage(&stage_out, &stage_out_bytes, bytes);
        BE->download(in, src, bytes * (size_t)RT.world);
        mpi_reduce_scatter_f32(out, in, count);
        BE->mirror(dst, out, bytes);
        return 0;
    }
    default: sl_fatal("internal error: transport %d", (int)chosen);
    }
}

void comm_wait(comm_ticket t)
{
    if (chosen == TRANSPORT_NCCL && t > 0) GPU->nccl_wait(t);
}

void comm_allreduce_sum_f64(double *buf, int64_t n)
{
    if (RT.world == 1 || !RT.mpi) return;
    for (int64_t done = 0; done < n; done += INT_MAX) {
        int piece = (int)(n - done < INT_MAX ? n - done : INT_MAX);
        WATCHED("all-reduce", MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + done, piece, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD)));
    }
}

void comm_allreduce_sum_i64(int64_t *buf, int64_t n)
{
    if (RT.world == 1 || !RT.mpi) return;
    const int count = mpi_count(n, "all-reduce");
    WATCHED("all-reduce", MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD)));
}

void comm_allreduce_max_i64(int64_t *buf, int64_t n)
{
    if (RT.world == 1 || !RT.mpi) return;
    const int count = mpi_count(n, "all-reduce");
    WATCHED("all-reduce", MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD)));
}
