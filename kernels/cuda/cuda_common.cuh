// cuda_common: what every CUDA kernel file shares: the bf16 type, launch helpers and checked calls.
// Failures are internal errors of the program and end the run through sl_fatal with file and line.
#ifndef SL_CUDA_COMMON_CUH
#define SL_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "runtime.h"

typedef __nv_bfloat16 bf16;

#define CUDA_CHECK(call)                                                                          \
    do {                                                                                          \
        cudaError_t cuda_rc_ = (call);                                                            \
        if (cuda_rc_ != cudaSuccess)                                                              \
            sl_fatal("CUDA call failed at %s:%d: %s: %s", __FILE__, __LINE__, #call,              \
                     cudaGetErrorString(cuda_rc_));                                               \
    } while (0)

// After a kernel launch: a bad configuration shows here, a fault at the next synchronisation.
#define CUDA_LAUNCHED() CUDA_CHECK(cudaGetLastError())

// The CUDA backend's compute stream (backend_cuda.cu), for the files that order work against it.
extern "C" cudaStream_t k_cuda_stream(void);

static inline unsigned kc_blocks(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

#endif
