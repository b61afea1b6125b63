// vec: the memory-bound kernels' access pattern. A group of N elements moves between memory and fp32
// registers as 16-byte accesses when N allows (the caller has checked the pointer's alignment), else as N
// scalar ones; kc_map runs an elementwise operation over n elements in groups of eight.
#ifndef SL_CUDA_VEC_CUH
#define SL_CUDA_VEC_CUH

#include <string.h>

#include "cuda_common.cuh"

static inline bool kc_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <int N> __device__ __forceinline__ void kc_load(float (&v)[N], const bf16 *p)
{
    if constexpr (N % 8 == 0) {
#pragma unroll
        for (int j = 0; j < N / 8; j++) {
            const uint4 u = reinterpret_cast<const uint4 *>(p)[j];
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; k++) { // a bf16 is the top half of a float; the lower address is the low half
                v[8 * j + 2 * k] = __uint_as_float(w[k] << 16);
                v[8 * j + 2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
            }
        }
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) v[k] = __bfloat162float(p[k]);
    }
}

template <int N> __device__ __forceinline__ void kc_store(bf16 *p, const float (&v)[N])
{
    if constexpr (N % 8 == 0) {
#pragma unroll
        for (int j = 0; j < N / 8; j++) {
            uint32_t w[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const __nv_bfloat162 h = __floats2bfloat162_rn(v[8 * j + 2 * k], v[8 * j + 2 * k + 1]);
                memcpy(&w[k], &h, 4);
            }
            reinterpret_cast<uint4 *>(p)[j] = make_uint4(w[0], w[1], w[2], w[3]);
        }
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) p[k] = __float2bfloat16_rn(v[k]);
    }
}

template <int N> __device__ __forceinline__ void kc_load(float (&v)[N], const float *p)
{
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int j = 0; j < N / 4; j++) {
            const float4 f = reinterpret_cast<const float4 *>(p)[j];
            v[4 * j] = f.x, v[4 * j + 1] = f.y, v[4 * j + 2] = f.z, v[4 * j + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) v[k] = p[k];
    }
}

template <int N> __device__ __forceinline__ void kc_store(float *p, const float (&v)[N])
{
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int j = 0; j < N / 4; j++)
            reinterpret_cast<float4 *>(p)[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) p[k] = v[k];
    }
}

// One group per thread (a streaming kernel gains nothing from a grid-stride loop): thread i runs
// f.run<8>(8 i) for i < groups, and f.run<1>(tail + i) for the elements after the whole groups.
template <class F> __global__ void kc_map_kernel(F f, int64_t groups, int64_t tail, int64_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < groups) f.template run<8>(8 * i);
    if (tail + i < n) f.template run<1>(tail + i);
}

// Elementwise f over n elements; vec = false (some pointer not 16-byte aligned) takes every element
// down the scalar path.
template <class F> static void kc_map(F f, int64_t n, bool vec, cudaStream_t s)
{
    if (n <= 0) return;
    const int threads = 256;
    const int64_t groups = vec ? n / 8 : 0, tail = 8 * groups;
    const int64_t work = groups > n - tail ? groups : n - tail;
    kc_map_kernel<<<kc_blocks(work, threads), threads, 0, s>>>(f, groups, tail, n);
    CUDA_LAUNCHED();
}

#endif
