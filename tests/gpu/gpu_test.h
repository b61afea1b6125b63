// gpu_test: checks of CUDA kernels against their CPU twins (kernels/cpu), as TAP lines that
// tests/run.sh counts. Inputs are fresh random numbers from a fixed seed (never zeros); device
// outputs start poisoned with NaN so that an element a kernel forgot to write fails the check.
// Tolerances: bf16 paths 1e-2 relative RMS error, fp32 paths 1e-5 (DESIGN.md, section 9).
// The helpers are static inline, so a test that calls only some of them compiles without warnings.
#ifndef SL_GPU_TEST_H
#define SL_GPU_TEST_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define GT_BF16_RTOL 1e-2
#define GT_F32_RTOL 1e-5

static int gt_failures;

static inline void gt_check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf(ok ? "ok - " : "not ok - ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!ok) gt_failures++;
}

static inline int gt_finish(void) { return gt_failures ? 1 : 0; }

#define GT_CUDA(call)                                                                             \
    do {                                                                                          \
        cudaError_t gt_rc_ = (call);                                                              \
        if (gt_rc_ != cudaSuccess) {                                                              \
            printf("not ok - %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(gt_rc_)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

// ---- random inputs (splitmix64; the same sequence on every machine) ----
static uint64_t gt_rng = 0x5eed;
static inline void gt_seed(uint64_t s) { gt_rng = s * 0x9E3779B97F4A7C15ull + 1; }
static inline double gt_uniform(double lo, double hi)
{
    uint64_t z = (gt_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * 0x1p-53;
}
static inline std::vector<float> gt_random(size_t n, double lo, double hi)
{
    std::vector<float> v(n);
    for (auto &x : v) x = (float)gt_uniform(lo, hi);
    return v;
}

// ---- bf16 on the host: round to nearest even, as __float2bfloat16 does ----
static inline uint16_t gt_to_bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float gt_from_bf16_bits(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
// The values a bf16 tensor can hold: CPU twins get exactly what the GPU kernel reads.
static inline void gt_round_bf16(std::vector<float> &v)
{
    for (auto &x : v) x = gt_from_bf16_bits(gt_to_bf16_bits(x));
}

// ---- device buffers ----
template <typename T> static T *gt_device(size_t n)
{
    T *p = nullptr;
    GT_CUDA(cudaMalloc(&p, (n ? n : 1) * sizeof(T)));
    GT_CUDA(cudaMemset(p, 0xff, (n ? n : 1) * sizeof(T))); // NaN in f32 and bf16: poisoned
    return p;
}
static inline __nv_bfloat16 *gt_upload_bf16(const std::vector<float> &v)
{
    std::vector<uint16_t> b(v.size());
    for (size_t i = 0; i < v.size(); i++) b[i] = gt_to_bf16_bits(v[i]);
    __nv_bfloat16 *d = gt_device<__nv_bfloat16>(v.size());
    GT_CUDA(cudaMemcpy(d, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static T *gt_upload(const std::vector<T> &v)
{
    T *d = gt_device<T>(v.size());
    GT_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
static inline std::vector<float> gt_download_bf16(const __nv_bfloat16 *d, size_t n)
{
    std::vector<uint16_t> b(n);
    GT_CUDA(cudaDeviceSynchronize());
    GT_CUDA(cudaMemcpy(b.data(), d, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = gt_from_bf16_bits(b[i]);
    return v;
}
template <typename T> static std::vector<T> gt_download(const T *d, size_t n)
{
    std::vector<T> v(n);
    GT_CUDA(cudaDeviceSynchronize());
    GT_CUDA(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

// ---- comparisons ----
// ||got - want|| / ||want||; NaN (an unwritten, poisoned element) makes it NaN, which fails.
static inline double gt_rel_rms(const float *got, const float *want, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d, den += (double)want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}
static inline size_t gt_count_nonfinite(const float *v, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(v[i]);
    return bad;
}
// One TAP line: every element written (no poison left) and the error within rtol.
static inline void gt_expect_close(const char *what, const std::vector<float> &got,
                                   const std::vector<float> &want, double rtol)
{
    size_t bad = gt_count_nonfinite(got.data(), got.size());
    double err = gt_rel_rms(got.data(), want.data(), want.size());
    gt_check(got.size() == want.size() && bad == 0 && err <= rtol,
             "%s: relative RMS error %.2e (limit %.0e), %zu of %zu elements unwritten or non-finite", what, err,
             rtol, bad, got.size());
}

// A machine without a GPU has nothing to test: tests/run.sh prints "skipped: no GPU" and never
// starts these programs there; this catches a direct start.
static inline void gt_require_gpu(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("not ok - no CUDA device visible\n");
        exit(1);
    }
}

#endif
