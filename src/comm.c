/* comm: collectives over MPI. Counts above INT_MAX are sent in pieces. */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <string.h>

#include "runtime.h"

static comm_traffic traffic;

comm_traffic comm_traffic_so_far(void) { return traffic; }

/* One rank's "gather": a copy into a fresh buffer, in slices on every thread (the page faults of
 * the new buffer too). */
static void copy_parallel(void *dst, const void *src, size_t bytes)
{
    const size_t slice = 4 << 20;
    const int64_t n = (int64_t)((bytes + slice - 1) / slice);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t k = 0; k < n; k++) {
        size_t at = (size_t)k * slice;
        memcpy((char *)dst + at, (const char *)src + at, bytes - at < slice ? bytes - at : slice);
    }
}

void comm_allgather_f32(float *dst, const float *src, int64_t count)
{
    traffic.gathered += count * (int64_t)sizeof(float) * RT.world;
    if (RT.world == 1 || !RT.mpi) {
        if (dst != src) copy_parallel(dst, src, (size_t)count * sizeof *dst);
        return;
    }
    if (count > INT_MAX) sl_fatal("all-gather of %lld floats per rank exceeds MPI's int count", (long long)count);
    MPI_CHECK(MPI_Allgather(src, (int)count, MPI_FLOAT, dst, (int)count, MPI_FLOAT, MPI_COMM_WORLD));
}

void comm_allgather_bytes(void *dst, const void *src, int64_t bytes)
{
    traffic.gathered += bytes * RT.world;
    if (RT.world == 1 || !RT.mpi) {
        if (dst != src) copy_parallel(dst, src, (size_t)bytes);
        return;
    }
    if (bytes > INT_MAX) sl_fatal("all-gather of %lld bytes per rank exceeds MPI's int count", (long long)bytes);
    MPI_CHECK(MPI_Allgather(src, (int)bytes, MPI_BYTE, dst, (int)bytes, MPI_BYTE, MPI_COMM_WORLD));
}

void comm_reduce_scatter_sum_f32(float *dst, const float *src, int64_t count)
{
    traffic.reduced += count * (int64_t)sizeof(float) * RT.world;
    if (RT.world == 1 || !RT.mpi) {
        for (int64_t i = 0; i < count; i++) dst[i] = src[i];
        return;
    }
    if (count > INT_MAX) sl_fatal("reduce-scatter of %lld floats per rank exceeds MPI's int count", (long long)count);
    MPI_CHECK(MPI_Reduce_scatter_block(src, dst, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
}

void comm_allreduce_sum_f64(double *buf, int64_t n)
{
    if (RT.world == 1 || !RT.mpi) return;
    for (int64_t done = 0; done < n; done += INT_MAX) {
        int piece = (int)(n - done < INT_MAX ? n - done : INT_MAX);
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + done, piece, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    }
}

void comm_allreduce_sum_i64(int64_t *buf, int64_t n)
{
    if (RT.world == 1 || !RT.mpi) return;
    if (n > INT_MAX) sl_fatal("all-reduce of %lld values exceeds MPI's int count", (long long)n);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
}

void comm_allreduce_max_i64(int64_t *buf, int64_t n)
{
    if (RT.world == 1 || !RT.mpi) return;
    if (n > INT_MAX) sl_fatal("all-reduce of %lld values exceeds MPI's int count", (long long)n);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
}
