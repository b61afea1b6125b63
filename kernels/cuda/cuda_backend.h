/* cuda_backend: entry points of the CUDA backend that the host program calls (C linkage). */
#ifndef SL_CUDA_BACKEND_H
#define SL_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bind this rank to GPU local_rank mod visible devices; returns the device, or -1 with msg set. */
int k_cuda_bind_device(int local_rank, char *msg, int msg_len);
/* The compute stream and the memory pool of the CUDA backend, on the bound device. */
void k_cuda_backend_start(void);
/* Log the peak device memory and, with SHARDLORA_PROFILE=1, the GPU time per part (rank 0). */
void k_cuda_backend_report(void);
/* Wait for the compute stream. With an NCCL communicator the wait polls it, so a failed or stuck
 * collective ends the job with a message instead of hanging it. */
void k_cuda_sync(void);
/* The PCI bus id of the bound GPU, to tell whether ranks share one. */
void k_cuda_pci_bus_id(char *buf, int len);
/* Pinned host memory (staging of collectives); a failure is fatal, naming what. */
void *k_cuda_host_alloc(size_t bytes, const char *what);
void k_cuda_host_free(void *p);

/* NCCL (comm_nccl.cu): the unique id rank 0 makes and MPI broadcasts, the communicator, and the
 * collectives on the communication stream; each returns a ticket (> 0) for k_nccl_wait, which
 * makes the compute stream wait for it. k_nccl_poll: NULL, or the communicator's error. */
size_t k_nccl_id_bytes(void);
void k_nccl_unique_id(void *id);
void k_nccl_init(const void *id, int nranks, int rank, double timeout_s);
int64_t k_nccl_allgather(void *dst, const void *src, size_t bytes);
int64_t k_nccl_reduce_scatter_f32(float *dst, const float *src, size_t count);
void k_nccl_wait(int64_t ticket);
const char *k_nccl_poll(void);
double k_nccl_timeout(void); /* 0 without a communicator */
void k_nccl_abort(void);
void k_nccl_finalize(void);
/* The above as src/comm.c's GPU transports take them. */
extern const comm_gpu_ops k_cuda_comm_ops;

#ifdef __cplusplus
}
#endif

#endif
