// adamw: elementwise optimizer kernels. The update spells every operation as an explicitly rounded
// intrinsic (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn): nvcc may then neither fuse a multiply
// and an add into an FMA nor approximate a division or square root, so each element rounds exactly
// as the CPU's adamw_step does (which gcc, in ISO C mode, does not contract either).
#include "adamw.h"

#include "cuda_common.cuh"
#include "optim.h"
#include "reduce.cuh"

#define ADAMW_THREADS 256
#define ELEMENTWISE_BLOCKS 1056 // 8 per SM of an H200; grid-stride loops cover any n

static unsigned grid_for(int64_t n, int threads)
{
    const unsigned want = kc_blocks(n, threads);
    return want < 1 ? 1 : want > ELEMENTWISE_BLOCKS ? ELEMENTWISE_BLOCKS : want;
}

static __global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, int64_t n, adamw_scalars c)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = grad[i];
        // param *= decay; m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g g;
        // param += neg_step m / (sqrt(v) / sqrt(bc2) + eps), left to right as in optim.c.
        float p = __fmul_rn(param[i], c.decay);
        const float mi = __fadd_rn(__fmul_rn(m[i], c.beta1), __fmul_rn(c.one_minus_beta1, g));
        const float vi = __fadd_rn(__fmul_rn(v[i], c.beta2), __fmul_rn(__fmul_rn(c.one_minus_beta2, g), g));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
        p = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step, mi), denom));
        param[i] = p, m[i] = mi, v[i] = vi;
    }
}

extern "C" void kc_adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, double beta1,
                              double beta2, double eps, double weight_decay, int64_t step, float lr, cudaStream_t s)
{
    if (n == 0) return;
    const sl_adamw hp = {beta1, beta2, eps, weight_decay};
    const adamw_scalars c = adamw_step_scalars(&hp, step, lr);
    adamw_kernel<<<grid_for(n, ADAMW_THREADS), ADAMW_THREADS, 0, s>>>(param, grad, m, v, n, c);
    CUDA_LAUNCHED();
}

// Products of two floats are exact in double, so only the order of the additions can differ from the CPU's.
struct square_f64 {
    __device__ double operator()(float x) const { return (double)x * (double)x; }
};

extern "C" void kc_sq_norm(double *out, const float *grad, int64_t n, cudaStream_t s)
{
    kc_sum(out, grad, n, square_f64(), s);
}

static __global__ void scale_kernel(float *x, int64_t n, float s)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = __fmul_rn(x[i], s);
}

extern "C" void kc_scale_f32(float *x, int64_t n, float s, cudaStream_t st)
{
    if (s == 1.0f || n == 0) return;
    scale_kernel<<<grid_for(n, ADAMW_THREADS), ADAMW_THREADS, 0, st>>>(x, n, s);
    CUDA_LAUNCHED();
}

// Integer counts add exactly in any order, so blocks may add theirs atomically.
static __global__ void count_nonfinite_kernel(int *out, const float *x, int64_t n)
{
    int bad = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) bad += !isfinite(x[i]);
    bad = kc_block_sum(bad);
    if (threadIdx.x == 0 && bad) atomicAdd(out, bad);
}

extern "C" void kc_count_nonfinite(int *out, const float *x, int64_t n, cudaStream_t s)
{
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof *out, s));
    if (n == 0) return;
    count_nonfinite_kernel<<<grid_for(n, ADAMW_THREADS), ADAMW_THREADS, 0, s>>>(out, x, n);
    CUDA_LAUNCHED();
}
