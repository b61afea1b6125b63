// comm_nccl: collectives between ranks that each own a GPU, through a non-blocking NCCL
// communicator on a communication stream (side_stream.h: each collective waits for the compute
// issued before it and leaves a ticket that compute reading its output waits for); the host
// never blocks inside NCCL, so a dead or stuck peer shows up in k_cuda_sync's polling
// (the communicator's asynchronous error, or no progress for the timeout) and ends the job.
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/profile.h"
#include "cuda/side_stream.h"

static ncclComm_t comm;
static kc_side_stream side; // the communication stream
static double timeout_s;

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// A call on the non-blocking communicator may return ncclInProgress: poll until it settles.
static void nccl_settle(ncclResult_t rc, const char *what)
{
    double start = seconds_now();
    while (rc == ncclInProgress) {
        if (ncclCommGetAsyncError(comm, &rc) != ncclSuccess) rc = ncclSystemError;
        if (rc == ncclInProgress && seconds_now() - start > timeout_s) {
            ncclCommAbort(comm);
            sl_fatal("NCCL %s made no progress for %.0f s (a peer rank stuck or gone?); communicator aborted", what,
                     timeout_s);
        }
    }
    if (rc != ncclSuccess) sl_fatal("NCCL %s failed: %s (%s)", what, ncclGetErrorString(rc), ncclGetLastError(comm));
}

extern "C" size_t k_nccl_id_bytes(void) { return sizeof(ncclUniqueId); }

extern "C" void k_nccl_unique_id(void *id)
{
    ncclResult_t rc = ncclGetUniqueId((ncclUniqueId *)id);
    if (rc != ncclSuccess) sl_fatal("NCCL: ncclGetUniqueId failed: %s", ncclGetErrorString(rc));
}

extern "C" void k_nccl_init(const void *id, int nranks, int rank, double timeout)
{
    timeout_s = timeout;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    nccl_settle(ncclCommInitRankConfig(&comm, nranks, uid, rank, &config), "communicator set-up");
    kc_side_open(&side);
    int version = 0;
    ncclGetVersion(&version);
    if (rank == 0) log_info("comm: NCCL %d.%d.%d, %d ranks", version / 10000, version / 100 % 100, version % 100, nranks);
}

extern "C" int64_t k_nccl_allgather(void *dst, const void *src, size_t bytes)
{
    kc_side_after_compute(&side);
    int prof = prof_begin(PROF_COMM, __func__, side.stream);
    nccl_settle(ncclAllGather(src, dst, bytes, ncclUint8, comm, side.stream), "all-gather");
    prof_end(prof, side.stream);
    return kc_side_ticket(&side);
}

extern "C" int64_t k_nccl_reduce_scatter_f32(float *dst, const float *src, size_t count)
{
    kc_side_after_compute(&side);
    int prof = prof_begin(PROF_COMM, __func__, side.stream);
    nccl_settle(ncclReduceScatter(src, dst, count, ncclFloat32, ncclSum, comm, side.stream), "reduce-scatter");
    prof_end(prof, side.stream);
    return kc_side_ticket(&side);
}

extern "C" void k_nccl_wait(int64_t ticket) { kc_side_wait(&side, ticket); }

extern "C" const char *k_nccl_poll(void)
{
    static char msg[512];
    if (!comm) return NULL;
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &state) != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
        snprintf(msg, sizeof msg, "NCCL reported %s (%s)", ncclGetErrorString(state), ncclGetLastError(comm));
        return msg;
    }
    return NULL;
}

extern "C" double k_nccl_timeout(void) { return comm ? timeout_s : 0; }

extern "C" void k_nccl_abort(void)
{
    if (comm) ncclCommAbort(comm);
    comm = NULL;
}

extern "C" void k_nccl_finalize(void)
{
    if (!comm) return;
    k_cuda_sync();
    CUDA_CHECK(cudaStreamSynchronize(side.stream));
    nccl_settle(ncclCommFinalize(comm), "finalize");
    ncclCommDestroy(comm);
    comm = NULL;
    kc_side_close(&side);
}

extern "C" const comm_gpu_ops k_cuda_comm_ops = {
    k_cuda_pci_bus_id,      k_cuda_host_alloc, k_cuda_host_free,          k_cuda_sync,
    k_nccl_id_bytes,        k_nccl_unique_id,  k_nccl_init,               k_nccl_allgather,
    k_nccl_reduce_scatter_f32, k_nccl_wait,    k_nccl_finalize,
};
