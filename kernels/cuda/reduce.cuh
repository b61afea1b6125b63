// reduce: block sums and a deterministic two-kernel grid sum in double. Every addition happens in
// an order fixed by n and the launch shape alone (never by which block finishes first), so a
// resumed run sums its losses and gradient norms bit for bit as the uninterrupted one did.
#ifndef SL_REDUCE_CUH
#define SL_REDUCE_CUH

#include "cuda_common.cuh"

#define KC_SUM_THREADS 512
#define KC_SUM_BLOCKS 264 // two waves of blocks over an H200's 132 SMs; the partial count

template <typename T> __device__ T kc_warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// The sum of v over the block, valid in thread 0. Every thread must call it (it synchronises).
template <typename T> __device__ T kc_block_sum(T v)
{
    __shared__ T warp_sums[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = kc_warp_sum(v);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)((blockDim.x + 31) >> 5) ? warp_sums[lane] : T(0);
        v = kc_warp_sum(v);
    }
    return v;
}

// Partial sums of the grid sum, one per block. Static: each file that sums gets its own; calls are
// ordered by the one stream they run on.
static __device__ double kc_sum_partials[KC_SUM_BLOCKS];

// Block b adds f(x[i]) over a grid-strided i into kc_sum_partials[b].
template <typename F> __global__ void kc_sum_partials_kernel(const float *x, int64_t n, F f)
{
    double s = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) s += f(x[i]);
    s = kc_block_sum(s);
    if (threadIdx.x == 0) kc_sum_partials[blockIdx.x] = s;
}

static __global__ void kc_sum_final_kernel(double *out, int n_partials)
{
    double s = 0;
    for (int i = threadIdx.x; i < n_partials; i += blockDim.x) s += kc_sum_partials[i];
    s = kc_block_sum(s);
    if (threadIdx.x == 0) *out = s;
}

// out[0] = sum of f(x[i]) over [0, n), in double.
template <typename F> static void kc_sum(double *out, const float *x, int64_t n, F f, cudaStream_t s)
{
    const int64_t want = (n + KC_SUM_THREADS - 1) / KC_SUM_THREADS;
    const int blocks = want < 1 ? 1 : want > KC_SUM_BLOCKS ? KC_SUM_BLOCKS : (int)want;
    kc_sum_partials_kernel<<<blocks, KC_SUM_THREADS, 0, s>>>(x, n, f);
    CUDA_LAUNCHED();
    kc_sum_final_kernel<<<1, KC_SUM_THREADS, 0, s>>>(out, blocks);
    CUDA_LAUNCHED();
}

#endif
