/* cuda_backend: entry points of the CUDA backend that the host program calls (C linkage). */
#ifndef SL_CUDA_BACKEND_H
#define SL_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

/* Bind this rank to GPU local_rank mod visible devices; returns the device, or -1 with msg set. */
int k_cuda_bind_device(int local_rank, char *msg, int msg_len);
/* The compute stream and the memory pool of the CUDA backend, on the bound device. */
void k_cuda_backend_start(void);
/* Log the peak device memory and, with SHARDLORA_PROFILE=1, the GPU time per part (rank 0). */
void k_cuda_backend_report(void);

#ifdef __cplusplus
}
#endif

#endif
