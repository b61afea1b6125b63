// swiglu: the LLaMA MLP gate on bf16, out = silu(gate) * up with silu(g) = g * sigmoid(g), in fp32
// (twin: kernels/cpu/swiglu.c).
#include "ops.h"
#include "vec.cuh"

namespace {

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

struct swiglu_fwd_op {
    bf16 *out;
    const bf16 *gate, *up;
    template <int N> __device__ void run(int64_t i) const
    {
        float g[N], u[N];
        kc_load(g, gate + i);
        kc_load(u, up + i);
#pragma unroll
        for (int k = 0; k < N; k++) g[k] = g[k] * sigmoid(g[k]) * u[k];
        kc_store(out + i, g);
    }
};

// d silu / dg = sig * (1 + g * (1 - sig)).
struct swiglu_bwd_op {
    bf16 *dgate, *dup;
    const bf16 *dout, *gate, *up;
    template <int N> __device__ void run(int64_t i) const
    {
        float d[N], g[N], u[N];
        kc_load(d, dout + i);
        kc_load(g, gate + i);
        kc_load(u, up + i);
#pragma unroll
        for (int k = 0; k < N; k++) {
            const float sg = sigmoid(g[k]);
            const float dg = d[k] * u[k] * sg * (1.0f + g[k] * (1.0f - sg));
            u[k] = d[k] * g[k] * sg;
            g[k] = dg;
        }
        kc_store(dgate + i, g);
        kc_store(dup + i, u);
    }
};

} // namespace

extern "C" void kc_swiglu_fwd(void *out, const void *gate, const void *up, int64_t n, cudaStream_t s)
{
    const swiglu_fwd_op f = {static_cast<bf16 *>(out), static_cast<const bf16 *>(gate),
                             static_cast<const bf16 *>(up)};
    kc_map(f, n, kc_aligned16(out) && kc_aligned16(gate) && kc_aligned16(up), s);
}

extern "C" void kc_swiglu_bwd(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                              int64_t n, cudaStream_t s)
{
    const swiglu_bwd_op f = {static_cast<bf16 *>(dgate), static_cast<bf16 *>(dup), static_cast<const bf16 *>(dout),
                             static_cast<const bf16 *>(gate), static_cast<const bf16 *>(up)};
    const bool vec = kc_aligned16(dgate) && kc_aligned16(dup) && kc_aligned16(dout) && kc_aligned16(gate) &&
                     kc_aligned16(up);
    kc_map(f, n, vec, s);
}
