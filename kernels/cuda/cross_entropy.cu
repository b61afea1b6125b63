// cross_entropy: one block per row. The row is read once for an online softmax (a running maximum
// and the sum of exp(x - maximum), rescaled when the maximum grows), then once more to write the
// gradient. A row of the LM head (V = 128256) is half a megabyte, so loads are float4 wherever the
// row allows and the block is wide.
#include "cross_entropy.h"

#include <float.h>

#include "cuda_common.cuh"
#include "reduce.cuh"

#define CE_THREADS 1024

// sum of exp(x - m) over the elements seen. m starts at -FLT_MAX, not -inf, so that an empty or
// all -inf part never computes exp(-inf - -inf).
typedef struct {
    float m, s;
} max_sum;

static __device__ void ms_add(max_sum &a, float x)
{
    if (x > a.m) {
        a.s = a.s * expf(a.m - x) + 1.0f;
        a.m = x;
    } else {
        a.s += expf(x - a.m);
    }
}

static __device__ max_sum ms_merge(max_sum a, max_sum b)
{
    const float m = fmaxf(a.m, b.m);
    return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

static __device__ max_sum ms_warp(max_sum a)
{
    for (int o = 16; o > 0; o >>= 1) {
        max_sum b = {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
        a = ms_merge(a, b);
    }
    return a;
}

// The row's log-sum-exp, the same in every thread of the block.
static __device__ float row_logsumexp(const float *row, int V, int vec4)
{
    max_sum a = {-FLT_MAX, 0.0f};
    if (vec4) {
        const float4 *r4 = (const float4 *)row;
        for (int i = threadIdx.x; i < V / 4; i += blockDim.x) {
            const float4 q = r4[i];
            ms_add(a, q.x), ms_add(a, q.y), ms_add(a, q.z), ms_add(a, q.w);
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) ms_add(a, row[i]);
    }
    __shared__ max_sum warp_parts[32];
    __shared__ float lse;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    a = ms_warp(a);
    if (lane == 0) warp_parts[warp] = a;
    __syncthreads();
    if (warp == 0) {
        a = lane < (int)(blockDim.x >> 5) ? warp_parts[lane] : max_sum{-FLT_MAX, 0.0f};
        a = ms_warp(a);
        if (lane == 0) lse = a.m + logf(a.s);
    }
    __syncthreads();
    return lse;
}

static __device__ float grad_of(float x, float lse, float weight, int is_target)
{
    const float p = expf(x - lse);
    return weight * (is_target ? p - 1.0f : p);
}

// vec4: V is a multiple of 4 and logits 16-byte aligned (dlogits 8-byte aligned), so every row is.
static __global__ void __launch_bounds__(CE_THREADS)
    cross_entropy_rows(double *row_loss, bf16 *dlogits, const float *logits, const int32_t *target, float weight,
                       int V, int vec4)
{
    const int64_t t = blockIdx.x;
    const int y = target[t];
    bf16 *drow = dlogits ? dlogits + t * V : NULL;
    if (y < 0) { // the whole block takes this branch
        if (threadIdx.x == 0) row_loss[t] = 0.0;
        if (drow)
            for (int i = threadIdx.x; i < V; i += blockDim.x) drow[i] = __float2bfloat16(0.0f);
        return;
    }
    const float *row = logits + t * V;
    const float lse = row_logsumexp(row, V, vec4);
    if (threadIdx.x == 0) row_loss[t] = lse - row[y];
    if (!drow) return;
    if (vec4) {
        const float4 *r4 = (const float4 *)row;
        uint2 *d4 = (uint2 *)drow;
        for (int i = threadIdx.x; i < V / 4; i += blockDim.x) {
            const float4 q = r4[i];
            const int j = 4 * i;
            const __nv_bfloat162 lo = __floats2bfloat162_rn(grad_of(q.x, lse, weight, j == y),
                                                            grad_of(q.y, lse, weight, j + 1 == y));
            const __nv_bfloat162 hi = __floats2bfloat162_rn(grad_of(q.z, lse, weight, j + 2 == y),
                                                            grad_of(q.w, lse, weight, j + 3 == y));
            uint2 packed;
            memcpy(&packed.x, &lo, 4);
            memcpy(&packed.y, &hi, 4);
            d4[i] = packed;
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) drow[i] = __float2bfloat16(grad_of(row[i], lse, weight, i == y));
    }
}

extern "C" void kc_cross_entropy(double *row_loss, void *dlogits, const float *logits, const int32_t *target,
                                 float weight, int T, int V, cudaStream_t s)
{
    if (T == 0) return;
    const int vec4 = V % 4 == 0 && (uintptr_t)logits % 16 == 0 && (uintptr_t)dlogits % 8 == 0;
    cross_entropy_rows<<<T, CE_THREADS, 0, s>>>(row_loss, (bf16 *)dlogits, logits, target, weight, V, vec4);
    CUDA_LAUNCHED();
}

struct identity_f64 {
    __device__ double operator()(float x) const { return (double)x; }
};

extern "C" void kc_sum_f64(double *out, const float *x, int64_t n, cudaStream_t s)
{
    kc_sum(out, x, n, identity_f64(), s);
}
