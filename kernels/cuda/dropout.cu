// dropout: inverted dropout on the LoRA input with exactly the CPU backend's masks (src/layer.c), so
// the two backends train alike: element i of a tensor is kept when rng_hash_uniform(key, stream, i) >= rate.
#include "ops.h"
#include "vec.cuh"

namespace {

// rng_hash_uniform of src/rng.c, bit for bit; base = seed * C1 ^ stream * C2 is the part shared by a tensor.
__device__ __forceinline__ bool keeps(uint64_t base, uint64_t index, double rate)
{
    uint64_t z = base ^ (index + 1) * 0x165667b19e3779f9ull;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
    }
    return (double)(z >> 11) * 0x1p-53 >= rate;
}

struct mask {
    uint64_t base;
    double rate;
    float scale; // 1 / (1 - rate), rounded to float as the CPU backend does
};

mask mask_of(double rate, uint64_t key, uint64_t stream)
{
    if (!(rate >= 0.0 && rate < 1.0)) sl_fatal("dropout rate %g is outside [0, 1)", rate);
    return {key * 0x9e3779b97f4a7c15ull ^ stream * 0xc2b2ae3d27d4eb4full, rate, (float)(1.0 / (1.0 - rate))};
}

struct dropout_fwd_op {
    bf16 *out;
    const bf16 *x;
    mask m;
    template <int N> __device__ void run(int64_t i) const
    {
        float v[N];
        kc_load(v, x + i);
#pragma unroll
        for (int k = 0; k < N; k++) v[k] = keeps(m.base, (uint64_t)(i + k), m.rate) ? v[k] * m.scale : 0.0f;
        kc_store(out + i, v);
    }
};

// Dropped elements are stored back unchanged (bf16 -> fp32 -> bf16 is exact).
struct dropout_bwd_op {
    bf16 *dx;
    const bf16 *dxd;
    mask m;
    template <int N> __device__ void run(int64_t i) const
    {
        float d[N], g[N];
        kc_load(d, dx + i);
        kc_load(g, dxd + i);
#pragma unroll
        for (int k = 0; k < N; k++)
            if (keeps(m.base, (uint64_t)(i + k), m.rate)) d[k] += g[k] * m.scale;
        kc_store(dx + i, d);
    }
};

} // namespace

extern "C" void kc_dropout_fwd(void *out, const void *x, int64_t n, double rate, uint64_t key, uint64_t stream,
                               cudaStream_t s)
{
    if (n <= 0) return;
    const dropout_fwd_op f = {static_cast<bf16 *>(out), static_cast<const bf16 *>(x), mask_of(rate, key, stream)};
    kc_map(f, n, kc_aligned16(out) && kc_aligned16(x), s);
}

extern "C" void kc_dropout_bwd(void *dx, const void *dxd, int64_t n, double rate, uint64_t key, uint64_t stream,
                               cudaStream_t s)
{
    if (n <= 0) return;
    const dropout_bwd_op f = {static_cast<bf16 *>(dx), static_cast<const bf16 *>(dxd), mask_of(rate, key, stream)};
    kc_map(f, n, kc_aligned16(dx) && kc_aligned16(dxd), s);
}
