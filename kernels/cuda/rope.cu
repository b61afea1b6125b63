// rope: rotary position embedding on bf16 q or k (rows ld apart), in place, Hugging Face convention (element i pairs
// with i + head_dim/2 in each head; twin: kernels/cpu/rope.c). The angles come from a table made on the
// host in double, as the CPU twin forms them, so both backends rotate by the same float cos and sin.

#include "ops.h"
#include "vec.cuh"

namespace {

// One block per token; a unit is N consecutive pairs of one head. sign = -1 applies the inverse rotation.
template <int N>
__global__ void rope_kernel(bf16 *x, int64_t ld, const int32_t *pos, const float *cos_sin, int n_heads, int head_dim,
                            float sign)
{
    const int half = head_dim / 2, units_per_head = half / N;
    const float *angles = cos_sin + (int64_t)pos[blockIdx.x] * half * 2;
    bf16 *row = x + blockIdx.x * ld;
    for (int u = threadIdx.x; u < n_heads * units_per_head; u += blockDim.x) {
        const int i = (u % units_per_head) * N;
        bf16 *a = row + (u / units_per_head) * head_dim + i, *b = a + half;
        float xa[N], xb[N], cs[2 * N];
        kc_load(xa, a);
        kc_load(xb, b);
        kc_load(cs, angles + 2 * i);
#pragma unroll
        for (int k = 0; k < N; k++) {
            const float c = cs[2 * k], s = sign * cs[2 * k + 1], ya = xa[k] * c - xb[k] * s;
            xb[k] = xb[k] * c + xa[k] * s;
            xa[k] = ya;
        }
        kc_store(a, xa);
        kc_store(b, xb);
    }
}

template <int N>
void rope_launch(void *x, int ld, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin,
                 float sign, cudaStream_t s)
{
    const int units = n_heads * (head_dim / 2 / N), threads = units < 256 ? (units + 31) / 32 * 32 : 256;
    rope_kernel<N><<<T, threads, 0, s>>>(static_cast<bf16 *>(x), ld, pos, cos_sin, n_heads, head_dim, sign);
    CUDA_LAUNCHED();
}

} // namespace

extern "C" void kc_rope(void *x, int ld, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin,
                        int inverse, cudaStream_t s)
{
    const int half = head_dim / 2;
    if (T <= 0 || n_heads <= 0 || half <= 0) return;
    const float sign = inverse ? -1.0f : 1.0f;
    // Eight pairs per unit need head_dim % 16 == 0 and ld % 8 == 0: then every unit of x and of the table
    // is 16-byte aligned.
    if (half % 8 == 0 && ld % 8 == 0 && kc_aligned16(x) && kc_aligned16(cos_sin))
        rope_launch<8>(x, ld, pos, T, n_heads, head_dim, cos_sin, sign, s);
    else
        rope_launch<1>(x, ld, pos, T, n_heads, head_dim, cos_sin, sign, s);
}
