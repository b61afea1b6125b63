// bench/gpu/dequant: kc_dequant_bf16 on one 14336 x 4096 weight (a LLaMA-3-8B MLP projection)
// against the device-to-device copy bandwidth. One line per case: the median time of 25 runs after
// 3 warm-ups, each run timed alone with CUDA events after a write that evicts L2; GB/s counts the
// bytes read and written (dequant: codes + absmax bytes read, bf16 written; copy: both sides).
#include <algorithm>
#include <stdio.h>
#include <string.h>
#include <vector>

#include "cuda/dequant.h"
#include "cuda/cuda_common.cuh"
extern "C" {
#include "quant.h"
}

namespace {

const int WARMUP = 3, RUNS = 25;

struct timer {
    cudaEvent_t start, stop;
    void *flush; // larger than L2, rewritten before each run
    size_t flush_bytes;
};

template <typename Run> double median_ms(timer &t, Run run)
{
    for (int r = 0; r < WARMUP; r++) run();
    std::vector<float> ms(RUNS);
    for (int r = 0; r < RUNS; r++) {
        CUDA_CHECK(cudaMemsetAsync(t.flush, r, t.flush_bytes, 0));
        CUDA_CHECK(cudaEventRecord(t.start, 0));
        run();
        CUDA_CHECK(cudaEventRecord(t.stop, 0));
        CUDA_CHECK(cudaEventSynchronize(t.stop));
        CUDA_CHECK(cudaEventElapsedTime(&ms[r], t.start, t.stop));
    }
    std::sort(ms.begin(), ms.end());
    return ms[RUNS / 2];
}

// Random bytes (an xorshift stream): the kernel's speed does not depend on the values.
void *upload_random(size_t bytes, uint64_t seed)
{
    std::vector<uint8_t> h(bytes);
    for (size_t i = 0; i < bytes; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        h[i] = (uint8_t)(seed >> 24);
    }
    void *d;
    CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    CUDA_CHECK(cudaMemcpy(d, h.data(), bytes, cudaMemcpyHostToDevice));
    return d;
}

// Positive absmax values around 0.05, as a trained weight's blocks have.
float *upload_absmax(int64_t count)
{
    std::vector<float> h((size_t)count);
    for (int64_t i = 0; i < count; i++) h[i] = 0.02f + 0.06f * (float)((i * 2654435761u) % 1000) / 1000.0f;
    float *d;
    CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(float)));
    CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

double bench_copy(timer &t)
{
    const size_t bytes = (size_t)2 << 30;
    void *src, *dst;
    CUDA_CHECK(cudaMalloc(&src, bytes));
    CUDA_CHECK(cudaMalloc(&dst, bytes));
    CUDA_CHECK(cudaMemset(src, 0x5a, bytes));
    double ms = median_ms(t, [&] { CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0)); });
    double gbs = 2.0 * bytes / ms / 1e6;
    printf("copy          2 GiB device to device      %8.3f ms  %7.0f GB/s (read + written)\n", ms, gbs);
    CUDA_CHECK(cudaFree(src));
    CUDA_CHECK(cudaFree(dst));
    return gbs;
}

void bench_dequant(timer &t, const char *format, int64_t rows, int64_t cols, double copy_gbs)
{
    quant_format f;
    const char *err = quant_format_parse(format, &f);
    if (err) sl_fatal("%s: %s", format, err);
    const int64_t n = rows * cols, nb = quant_nblocks(&f, n), nested = quant_nested_count(&f, 0, nb);
    kc_quant_blocks q;
    memset(&q, 0, sizeof q);
    q.bits = f.type == QUANT_INT8 ? 8 : 4, q.blocksize = f.blocksize;
    memcpy(q.code, quant_code(f.type), sizeof(float) * quant_code_len(f.type));
    q.codes = (const uint8_t *)upload_random((size_t)quant_code_bytes(&f, n, 0, nb), 2);
    if (f.double_quant) {
        q.absmax_u8 = (const uint8_t *)upload_random((size_t)nb, 3);
        q.nested_absmax = upload_absmax(nested);
        memcpy(q.nested_code, quant_dynamic_code(), sizeof q.nested_code);
        q.nested_blocksize = QUANT_NESTED_BLOCKS;
        q.offset = 0.05f;
    } else {
        q.absmax = upload_absmax(nb);
    }
    void *out;
    CUDA_CHECK(cudaMalloc(&out, (size_t)n * 2));
    double ms = median_ms(t, [&] { kc_dequant_bf16(out, &q, n, 0); });
    double bytes = (double)quant_code_bytes(&f, n, 0, nb) + (double)quant_absmax_bytes(&f, 0, nb) +
                   (double)nested * sizeof(float) + 2.0 * n;
    printf("%-13s %lld x %lld to bf16  %8.3f ms  %7.0f GB/s  %.2f of copy\n", format, (long long)rows,
           (long long)cols, ms, bytes / ms / 1e6, bytes / ms / 1e6 / copy_gbs);
    CUDA_CHECK(cudaFree(out));
    CUDA_CHECK(cudaFree((void *)q.codes));
    CUDA_CHECK(cudaFree((void *)q.absmax));
    CUDA_CHECK(cudaFree((void *)q.absmax_u8));
    CUDA_CHECK(cudaFree((void *)q.nested_absmax));
}

} // namespace

int main(void)
{
    int device;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    printf("%s, %d SMs, %.0f MiB L2; median of %d runs\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize / 1048576.0, RUNS);
    timer t;
    t.flush_bytes = (size_t)prop.l2CacheSize * 4;
    CUDA_CHECK(cudaMalloc(&t.flush, t.flush_bytes));
    CUDA_CHECK(cudaEventCreate(&t.start));
    CUDA_CHECK(cudaEventCreate(&t.stop));
    double copy_gbs = bench_copy(t);
    static const char *const formats[] = {"nf4-dq-bs64", "nf4-bs64", "fp4-bs64", "int8-bs4096", "int8-bs64"};
    for (const char *f : formats) bench_dequant(t, f, 14336, 4096, copy_gbs);
    CUDA_CHECK(cudaEventDestroy(t.start));
    CUDA_CHECK(cudaEventDestroy(t.stop));
    CUDA_CHECK(cudaFree(t.flush));
    return 0;
}
