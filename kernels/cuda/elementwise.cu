// elementwise: the residual add and the fp32 <-> bf16 conversions.
#include "ops.h"
#include "vec.cuh"

namespace {

struct add_op {
    bf16 *y;
    const bf16 *x;
    template <int N> __device__ void run(int64_t i) const
    {
        float a[N], b[N];
        kc_load(a, y + i);
        kc_load(b, x + i);
#pragma unroll
        for (int k = 0; k < N; k++) a[k] += b[k];
        kc_store(y + i, a);
    }
};

// Both directions are a load into fp32 registers and a store: the store to bf16 rounds, the load widens.
template <class Dst, class Src> struct convert_op {
    Dst *dst;
    const Src *src;
    template <int N> __device__ void run(int64_t i) const
    {
        float v[N];
        kc_load(v, src + i);
        kc_store(dst + i, v);
    }
};

} // namespace

extern "C" void kc_add_inplace(void *y, const void *x, int64_t n, cudaStream_t s)
{
    const add_op f = {static_cast<bf16 *>(y), static_cast<const bf16 *>(x)};
    kc_map(f, n, kc_aligned16(y) && kc_aligned16(x), s);
}

extern "C" void kc_f32_to_bf16(void *dst, const float *src, int64_t n, cudaStream_t s)
{
    const convert_op<bf16, float> f = {static_cast<bf16 *>(dst), src};
    kc_map(f, n, kc_aligned16(dst) && kc_aligned16(src), s);
}

extern "C" void kc_bf16_to_f32(float *dst, const void *src, int64_t n, cudaStream_t s)
{
    const convert_op<float, bf16> f = {dst, static_cast<const bf16 *>(src)};
    kc_map(f, n, kc_aligned16(dst) && kc_aligned16(src), s);
}
