// device: one GPU per local rank. Rank r on a node binds device r mod (visible devices), so a job
// that starts one task per GPU, with or without CUDA_VISIBLE_DEVICES set per task, gets distinct GPUs.
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_backend.h"

extern "C" int k_cuda_bind_device(int local_rank, char *msg, int msg_len)
{
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0) {
        snprintf(msg, (size_t)msg_len, "no CUDA device visible (%s)", rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
        return -1;
    }
    int device = local_rank % count;
    rc = cudaSetDevice(device);
    if (rc != cudaSuccess) {
        snprintf(msg, (size_t)msg_len, "cudaSetDevice(%d) failed: %s", device, cudaGetErrorString(rc));
        return -1;
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, device);
    snprintf(msg, (size_t)msg_len, "GPU %d of %d: %s, %.0f GiB", device, count, prop.name,
             (double)prop.totalGlobalMem / (1 << 30));
    return device;
}
