/* comm: the collectives shardlora uses. Weights and gradients move on the backend's memory
 * (kernels/backend.h) over one of three transports chosen at start-up by comm_setup:
 *   host   the CPU backend: MPI on host memory;
 *   nccl   the CUDA backend with one GPU per rank: NCCL, bootstrapped from MPI, on a communication
 *          stream ordered against the compute stream by events, so a collective issued early
 *          (the next unit's gather, the last unit's reduce-scatter) overlaps the compute;
 *   staged the CUDA backend where ranks share a GPU (NCCL refuses that): device memory staged
 *          through pinned host memory and MPI.
 * Scalars and counts (the all-reduces) are host values over MPI on every transport. */
#ifndef SL_COMM_H
#define SL_COMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the GPU transports need from the CUDA backend (kernels/cuda/comm_nccl.cu defines them as
 * k_cuda_comm_ops); the program passes them in, so comm itself links without CUDA. The NCCL
 * calls return tickets (> 0) that nccl_wait makes the compute stream wait for. */
typedef struct {
    void (*pci_bus_id)(char *buf, int len);
    void *(*host_alloc)(size_t bytes, const char *what); /* pinned */
    void (*host_free)(void *p);
    void (*sync)(void); /* wait for the compute stream, polling the communicator */
    size_t (*nccl_id_bytes)(void);
    void (*nccl_unique_id)(void *id);
    void (*nccl_init)(const void *id, int nranks, int rank, double timeout_s);
    int64_t (*nccl_allgather)(void *dst, const void *src, size_t bytes);
    int64_t (*nccl_reduce_scatter_f32)(float *dst, const float *src, size_t count);
    void (*nccl_wait)(int64_t ticket);
    void (*nccl_finalize)(void);
} comm_gpu_ops;

/* Collective: pick the transport. choice is --comm: auto (nccl when the backend is CUDA and every
 * rank has its own GPU, else staged; host on the CPU backend), nccl or mpi (refused where they
 * cannot work, naming why). An explicit choice runs the collectives even on one rank, so one GPU
 * exercises the whole path. timeout_s: a collective that makes no progress for this long ends
 * the job with a message instead of hanging it. gpu: the CUDA backend's part (NULL on the CPU). */
void comm_setup(const char *choice, double timeout_s, const comm_gpu_ops *gpu);
/* Whether collectives move data: several ranks, or a transport chosen explicitly. Without, a
 * rank's shard is the whole tensor and gathers are views. */
int comm_active(void);
void comm_finalize(void);

/* A collective in flight: compute that reads its output calls comm_wait first (the backend's
 * compute stream waits; the host does not). Host and staged collectives are done on return. */
typedef int64_t comm_ticket;
/* dst[r * bytes + i] = rank r's src[i], on every rank; backend memory. */
comm_ticket comm_allgather_be(void *dst, const void *src, int64_t bytes);
/* dst[i] = sum over ranks r of rank r's src[rank * count + i] (src holds world * count); backend memory. */
comm_ticket comm_reduce_scatter_be_f32(float *dst, const float *src, int64_t count);
void comm_wait(comm_ticket t);

/* Bytes this rank received from all-gathers and sent into reduce-scatters since the start, so a
 * run can report what each sharding strategy really communicates per step. */
typedef struct {
    int64_t gathered, reduced;
} comm_traffic;
comm_traffic comm_traffic_so_far(void);

/* In-place sums over all ranks (host memory). */
void comm_allreduce_sum_f64(double *buf, int64_t n);
void comm_allreduce_sum_i64(int64_t *buf, int64_t n);
void comm_allreduce_max_i64(int64_t *buf, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
