// rmsnorm: LLaMA's RMSNorm on bf16 rows with fp32 statistics (twin: kernels/cpu/rmsnorm.c), or on each of
// a row's heads (Qwen3's q/k norms), rows ld apart. One block per vector normalised. A thread holds its share of the row in registers, U groups of N elements strided
// across the block (so a warp's accesses are contiguous), and so reads x once with all its loads in
// flight together. The row sum is reduced in a fixed order: results do not depend on timing.
#include "ops.h"
#include "vec.cuh"

namespace {

constexpr int MAX_THREADS = 512; // with 128 registers a thread: room for U = 4 vector groups of x and w

// Groups a thread holds: 16-byte vectors when D % 8 == 0 (rows up to 16384), else single elements (8192).
constexpr int VEC_GROUPS = 4, SCALAR_GROUPS = 16;

// The row sum, the same bits in every thread: xor butterflies give every lane the same sum (fp32 addition
// commutes), then every warp reduces the per-warp partials the same way.
__device__ float block_sum(float v)
{
    __shared__ float partial[MAX_THREADS / 32];
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x % 32;
    if (lane == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Where this block's vector starts: vector i is head i % heads of row i / heads.
__device__ int64_t vector_at(int heads, int D, int64_t ld)
{
    return (int64_t)(blockIdx.x / heads) * ld + (int64_t)(blockIdx.x % heads) * D;
}

template <int N, int U>
__global__ void __launch_bounds__(MAX_THREADS)
    rmsnorm_fwd_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, int heads, int D, int64_t ld, float eps)
{
    const int groups = D / N;
    const int64_t row = vector_at(heads, D, ld);
    float xv[U][N], wv[U][N], ss = 0.0f;
#pragma unroll
    for (int j = 0; j < U; j++) {
        const int g = j * (int)blockDim.x + (int)threadIdx.x;
        if (g < groups) {
            kc_load(xv[j], x + row + g * N);
            kc_load(wv[j], w + g * N);
        }
    }
#pragma unroll
    for (int j = 0; j < U; j++)
        if (j * (int)blockDim.x + (int)threadIdx.x < groups)
#pragma unroll
            for (int k = 0; k < N; k++) ss += xv[j][k] * xv[j][k];
    const float r = 1.0f / sqrtf(block_sum(ss) / D + eps);
#pragma unroll
    for (int j = 0; j < U; j++) {
        const int g = j * (int)blockDim.x + (int)threadIdx.x;
        if (g >= groups) continue;
#pragma unroll
        for (int k = 0; k < N; k++) xv[j][k] = xv[j][k] * r * wv[j][k];
        kc_store(out + row + g * N, xv[j]);
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// With g = w * dout: dx = rstd * (g - x * rstd^2 * mean(g * x)).
template <int N, int U>
__global__ void __launch_bounds__(MAX_THREADS) rmsnorm_bwd_kernel(bf16 *dx, const bf16 *dout, const bf16 *x,
                                                                  const bf16 *w, const float *rstd, int heads,
                                                                  int D, int64_t ld, int accumulate)
{
    const int groups = D / N;
    const int64_t row = vector_at(heads, D, ld);
    const float r = rstd[blockIdx.x];
    float xv[U][N], gv[U][N], dot = 0.0f;
#pragma unroll
    for (int j = 0; j < U; j++) {
        const int g = j * (int)blockDim.x + (int)threadIdx.x;
        if (g >= groups) continue;
        float wv[N];
        kc_load(xv[j], x + row + g * N);
        kc_load(gv[j], dout + row + g * N);
        kc_load(wv, w + g * N);
#pragma unroll
        for (int k = 0; k < N; k++) gv[j][k] *= wv[k];
    }
#pragma unroll
    for (int j = 0; j < U; j++)
        if (j * (int)blockDim.x + (int)threadIdx.x < groups)
#pragma unroll
            for (int k = 0; k < N; k++) dot += gv[j][k] * xv[j][k];
    const float c = block_sum(dot) / D * r * r;
#pragma unroll
    for (int j = 0; j < U; j++) {
        const int g = j * (int)blockDim.x + (int)threadIdx.x;
        if (g >= groups) continue;
        float d[N];
        if (accumulate)
            kc_load(d, dx + row + g * N);
        else
#pragma unroll
            for (int k = 0; k < N; k++) d[k] = 0.0f;
#pragma unroll
        for (int k = 0; k < N; k++) d[k] += r * (gv[j][k] - xv[j][k] * c);
        kc_store(dx + row + g * N, d);
    }
}

// A whole number of warps, enough for U groups a thread.
int row_threads(int D, int n_per_thread)
{
    const int threads = (D + n_per_thread - 1) / n_per_thread;
    if (threads > MAX_THREADS)
        sl_fatal("rmsnorm: rows of %d elements exceed the %d one block holds (kernels/cuda/rmsnorm.cu)", D,
                 MAX_THREADS * n_per_thread);
    return (threads + 31) / 32 * 32;
}

} // namespace

extern "C" void kc_rmsnorm_fwd(void *out, float *rstd, const void *x, const void *w, int T, int heads, int D, int ld,
                               float eps, cudaStream_t s)
{
    if (T <= 0 || heads <= 0 || D <= 0) return;
    bf16 *o = static_cast<bf16 *>(out);
    const bf16 *xb = static_cast<const bf16 *>(x), *wb = static_cast<const bf16 *>(w);
    const unsigned vectors = (unsigned)T * (unsigned)heads;
    if (D % 8 == 0 && ld % 8 == 0 && kc_aligned16(out) && kc_aligned16(x) && kc_aligned16(w))
        rmsnorm_fwd_kernel<8, VEC_GROUPS>
            <<<vectors, row_threads(D, 8 * VEC_GROUPS), 0, s>>>(o, rstd, xb, wb, heads, D, ld, eps);
    else
        rmsnorm_fwd_kernel<1, SCALAR_GROUPS>
            <<<vectors, row_threads(D, SCALAR_GROUPS), 0, s>>>(o, rstd, xb, wb, heads, D, ld, eps);
    CUDA_LAUNCHED();
}

extern "C" void kc_rmsnorm_bwd(void *dx, const void *dout, const void *x, const void *w, const float *rstd, int T,
                               int heads, int D, int ld, int accumulate, cudaStream_t s)
{
    if (T <= 0 || heads <= 0 || D <= 0) return;
    bf16 *d = static_cast<bf16 *>(dx);
    const bf16 *g = static_cast<const bf16 *>(dout), *xb = static_cast<const bf16 *>(x),
               *wb = static_cast<const bf16 *>(w);
    const unsigned vectors = (unsigned)T * (unsigned)heads;
    if (D % 8 == 0 && ld % 8 == 0 && kc_aligned16(dx) && kc_aligned16(dout) && kc_aligned16(x) && kc_aligned16(w))
        rmsnorm_bwd_kernel<8, VEC_GROUPS>
            <<<vectors, row_threads(D, 8 * VEC_GROUPS), 0, s>>>(d, g, xb, wb, rstd, heads, D, ld, accumulate);
    else
        rmsnorm_bwd_kernel<1, SCALAR_GROUPS>
            <<<vectors, row_threads(D, SCALAR_GROUPS), 0, s>>>(d, g, xb, wb, rstd, heads, D, ld, accumulate);
    CUDA_LAUNCHED();
}
