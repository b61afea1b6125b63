// backend_cuda: the backend interface on one GPU: bf16 activations and gathered weights, fp32
// statistics, logits and LoRA gradients, every call ordered on one compute stream. Memory comes
// from CUDA's stream-ordered allocator, so buffers freed and taken again between steps cost no
// synchronisation.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cuda/adamw.h"
#include "cuda/attention.h"
#include "cuda/cross_entropy.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/dequant.h"
#include "cuda/gemm.h"
#include "cuda/ops.h"
#include "cuda/profile.h"
#include "cuda/side_stream.h"

static cudaStream_t stream;
static kc_side_stream copies; // activation offload: copies to and from pinned host memory

extern "C" cudaStream_t k_cuda_stream(void) { return stream; }

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

extern "C" void k_cuda_sync(void)
{
    const double timeout = k_nccl_timeout(), start = seconds_now();
    if (timeout <= 0) {
        CUDA_CHECK(cudaStreamSynchronize(stream));
        return;
    }
    const struct timespec nap = {0, 20000};
    for (;;) {
        cudaError_t rc = cudaStreamQuery(stream);
        if (rc == cudaSuccess) return;
        if (rc != cudaErrorNotReady) CUDA_CHECK(rc);
        const char *failure = k_nccl_poll();
        if (failure || seconds_now() - start > timeout) {
            k_nccl_abort();
            if (failure) sl_fatal("a collective failed: %s (a peer rank died?); communicator aborted", failure);
            sl_fatal("the GPU made no progress for %.0f s (--comm-timeout): a collective waits for a peer rank that "
                     "is stuck or gone; communicator aborted", timeout);
        }
        nanosleep(&nap, NULL);
    }
}

// Times the enclosed calls as one part of the step when SHARDLORA_PROFILE=1.
#define PROFILED(part, call)                                                                        \
    do {                                                                                            \
        int prof_token_ = prof_begin(part, __func__, stream);                                       \
        call;                                                                                       \
        prof_end(prof_token_, stream);                                                              \
    } while (0)

// LoRA products have the adapter rank on one side; the base weights never do.
static prof_part gemm_part(int K, int N) { return K <= 256 || N <= 256 ? PROF_LORA : PROF_GEMM; }

static void *cu_alloc(size_t bytes, const char *what)
{
    void *p = nullptr;
    cudaError_t rc = cudaMallocAsync(&p, bytes ? bytes : 1, stream);
    if (rc != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        sl_fatal("GPU out of memory allocating %zu bytes for %s (%.1f of %.1f GiB free): %s; use --act-ckpt, a "
                 "smaller --micro-batch or more ranks", bytes, what, free_b / 1073741824.0, total_b / 1073741824.0,
                 cudaGetErrorString(rc));
    }
    return p;
}

static void cu_release(void *p)
{
    if (p) CUDA_CHECK(cudaFreeAsync(p, stream));
}

static void cu_zero(void *p, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream)); }

static void cu_copy(void *dst, const void *src, size_t bytes)
{
    if (dst != src) PROFILED(PROF_ELEMENTWISE, CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream)));
}

static void cu_download(void *host, const void *src, size_t bytes)
{
    PROFILED(PROF_TRANSFER, CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream)));
    k_cuda_sync();
}

static void cu_host_release(void *p)
{
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(copies.stream)); // a copy in flight may still read or fill it
    k_cuda_host_free(p);
}

static int64_t cu_copy_async(void *dst, const void *src, size_t bytes)
{
    kc_side_after_compute(&copies);
    int prof = prof_begin(PROF_OFFLOAD, __func__, copies.stream);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, copies.stream));
    prof_end(prof, copies.stream);
    return kc_side_ticket(&copies);
}

static void cu_wait_copy(int64_t ticket) { kc_side_wait(&copies, ticket); }

static void *cu_mirror_alloc(size_t bytes, const char *what) { return cu_alloc(bytes, what); }

// From pageable host memory the copy has left the host buffer when the call returns, so the
// caller may reuse it at once.
static const void *cu_mirror(void *buf, const void *host, size_t bytes)
{
    if (bytes) PROFILED(PROF_TRANSFER, CUDA_CHECK(cudaMemcpyAsync(buf, host, bytes, cudaMemcpyHostToDevice, stream)));
    return buf;
}

static void *cu_mirror_act(void *buf, const float *host, int64_t n)
{
    float *staged = (float *)cu_alloc((size_t)n * sizeof(float), "weights in transit");
    cu_mirror(staged, host, (size_t)n * sizeof(float));
    kc_f32_to_bf16(buf, staged, n, stream);
    cu_release(staged);
    return buf;
}

static void cu_linear_fwd(void *out, int ldout, const void *x, int ldx, const void *w, const void *bias, int T, int K,
                          int N, float scale, const void *addend)
{
    PROFILED(gemm_part(K, N), kc_linear_fwd(out, 0, ldout, x, ldx, w, bias, T, K, N, scale, addend, stream));
}

static void cu_linear_logits(float *out, const void *x, const void *w, int T, int K, int N)
{
    PROFILED(PROF_LOGITS, kc_linear_fwd(out, 1, N, x, K, w, nullptr, T, K, N, 1.0f, nullptr, stream));
}

static void cu_linear_bwd_data(void *dx, int lddx, const void *dout, int lddout, const void *w, int T, int K, int N,
                               float scale, int accumulate)
{
    PROFILED(gemm_part(K, N), kc_linear_bwd_data(dx, lddx, dout, lddout, w, T, K, N, scale, accumulate, stream));
}

static void cu_linear_bwd_weight(float *dw, const void *dout, int lddout, const void *x, int ldx, int T, int K, int N,
                                 float scale)
{
    PROFILED(gemm_part(K, N), kc_linear_bwd_weight(dw, dout, lddout, x, ldx, T, K, N, scale, stream));
}

static void cu_rmsnorm_fwd(void *out, float *rstd, const void *x, const void *w, int T, int heads, int D, int ld,
                           float eps)
{
    PROFILED(PROF_ELEMENTWISE, kc_rmsnorm_fwd(out, rstd, x, w, T, heads, D, ld, eps, stream));
}

static void cu_rmsnorm_bwd(void *dx, const void *dout, const void *x, const void *w, const float *rstd, int T,
                           int heads, int D, int ld, int accumulate)
{
    PROFILED(PROF_ELEMENTWISE, kc_rmsnorm_bwd(dx, dout, x, w, rstd, T, heads, D, ld, accumulate, stream));
}

static void cu_rope(void *x, int ld, const int32_t *pos, int T, int nh, int hd, const float *cos_sin, int inverse)
{
    PROFILED(PROF_ELEMENTWISE, kc_rope(x, ld, pos, T, nh, hd, cos_sin, inverse, stream));
}

static size_t cu_attention_stats_bytes(int T, int n_seqs, int max_seq, int nh)
{
    return kc_attention_stats_bytes(T, n_seqs, max_seq, nh);
}

static void cu_attention_fwd(void *out, void *stats, const void *q, const void *k, const void *v, int ld,
                             const int32_t *seq_start, int n_seqs, int max_seq, int nh, int nkv, int hd, float scale)
{
    PROFILED(PROF_ATTENTION, kc_attention_fwd(out, (float *)stats, q, k, v, ld, seq_start, n_seqs, max_seq, nh, nkv, hd,
                                              scale, stream));
}

static void cu_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const void *stats,
                             const void *q, const void *k, const void *v, int ld, const int32_t *seq_start, int n_seqs,
                             int max_seq, int nh, int nkv, int hd, float scale)
{
    PROFILED(PROF_ATTENTION, kc_attention_bwd(dq, dk, dv, dout, out, (const float *)stats, q, k, v, ld, seq_start,
                                              n_seqs, max_seq, nh, nkv, hd, scale, stream));
}

static void cu_swiglu_fwd(void *out, const void *gate, const void *up, int64_t n) { PROFILED(PROF_ELEMENTWISE, kc_swiglu_fwd(out, gate, up, n, stream)); }

static void cu_swiglu_bwd(void *dgate, void *dup, const void *dout, const void *gate, const void *up, int64_t n)
{
    PROFILED(PROF_ELEMENTWISE, kc_swiglu_bwd(dgate, dup, dout, gate, up, n, stream));
}

static void cu_embedding_fwd(void *out, const void *table, const int32_t *ids, int T, int D)
{
    PROFILED(PROF_ELEMENTWISE, kc_embedding_fwd(out, table, ids, T, D, stream));
}

static void cu_dropout_fwd(void *out, const void *x, int64_t n, double rate, uint64_t key, uint64_t s)
{
    PROFILED(PROF_ELEMENTWISE, kc_dropout_fwd(out, x, n, rate, key, s, stream));
}

static void cu_dropout_bwd(void *dx, const void *dxd, int64_t n, double rate, uint64_t key, uint64_t s)
{
    PROFILED(PROF_ELEMENTWISE, kc_dropout_bwd(dx, dxd, n, rate, key, s, stream));
}

static void cu_add(void *y, const void *x, int64_t n) { PROFILED(PROF_ELEMENTWISE, kc_add_inplace(y, x, n, stream)); }

static void cu_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int D)
{
    kc_gather_rows(dst, src, rows, n, D, stream);
}

static void cu_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int D)
{
    kc_scatter_rows(dst, src, rows, n, D, stream);
}

static void cu_cross_entropy(double *row_loss, void *dlogits, const float *logits, const int32_t *target,
                             float weight, int T, int V)
{
    PROFILED(PROF_LOSS, kc_cross_entropy(row_loss, dlogits, logits, target, weight, T, V, stream));
}

static void cu_dequant(void *out, const k_quant_blocks *q, int64_t n)
{
    kc_quant_blocks k;
    memset(&k, 0, sizeof k);
    k.bits = q->bits, k.blocksize = q->blocksize;
    memcpy(k.code, q->code, sizeof(float) << q->bits);
    k.codes = q->codes, k.absmax = q->absmax, k.absmax_u8 = q->absmax_u8, k.nested_absmax = q->nested_absmax;
    if (q->nested_code) memcpy(k.nested_code, q->nested_code, sizeof k.nested_code);
    k.nested_blocksize = q->nested_blocksize, k.offset = q->offset;
    PROFILED(PROF_DEQUANT, kc_dequant_bf16(out, &k, n, stream));
}

static void cu_to_act(void *dst, const float *src, int64_t n) { PROFILED(PROF_ELEMENTWISE, kc_f32_to_bf16(dst, src, n, stream)); }

static double cu_sq_norm(const float *x, int64_t n)
{
    static double *dev_sum; // one double, kept
    if (!dev_sum) dev_sum = (double *)cu_alloc(sizeof(double), "gradient norm");
    double sum = 0;
    PROFILED(PROF_OPTIMIZER, kc_sq_norm(dev_sum, x, n, stream));
    cu_download(&sum, dev_sum, sizeof sum);
    return sum;
}

static void cu_scale_f32(float *x, int64_t n, float s) { PROFILED(PROF_OPTIMIZER, kc_scale_f32(x, n, s, stream)); }

static void cu_adamw(float *param, const float *grad, float *m, float *v, int64_t n, double beta1, double beta2,
                     double eps, double weight_decay, int64_t step, float lr)
{
    PROFILED(PROF_OPTIMIZER, kc_adamw_step(param, grad, m, v, n, beta1, beta2, eps, weight_decay, step, lr, stream));
}

static size_t cu_workspace_bytes(int T, int max_seq, int nh, int hd)
{
    return kc_attention_workspace_bytes(T, max_seq, nh, hd) + kc_gemm_workspace_bytes();
}

static size_t cu_free_memory(void)
{
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
}

extern "C" const sl_backend backend_cuda = {
    /* .name = */ "cuda",
    /* .act_bytes = */ 2,
    /* .host_memory = */ 0,
    /* .logits_chunk_bytes = */ (size_t)1 << 30, // about 2,048 rows at a 128k vocabulary
    cu_alloc,
    cu_release,
    cu_zero,
    cu_copy,
    cu_download,
    k_cuda_host_alloc, // pinned: the copies run asynchronously at the link's speed
    cu_host_release,
    cu_copy_async,
    cu_wait_copy,
    cu_mirror_alloc,
    cu_mirror,
    cu_mirror_act,
    cu_linear_fwd,
    cu_linear_logits,
    cu_linear_bwd_data,
    cu_linear_bwd_weight,
    cu_rmsnorm_fwd,
    cu_rmsnorm_bwd,
    cu_rope,
    cu_attention_stats_bytes,
    cu_attention_fwd,
    cu_attention_bwd,
    cu_swiglu_fwd,
    cu_swiglu_bwd,
    cu_embedding_fwd,
    cu_dropout_fwd,
    cu_dropout_bwd,
    cu_add,
    cu_gather_rows,
    cu_scatter_rows,
    cu_cross_entropy,
    cu_dequant,
    cu_to_act,
    cu_sq_norm,
    cu_scale_f32,
    cu_adamw,
    prof_mark_step,
    cu_workspace_bytes,
    cu_free_memory,
};

extern "C" void k_cuda_backend_report(void)
{
    prof_report();
    int device = 0;
    cudaMemPool_t pool;
    uint64_t high = 0;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high));
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    // The workspaces sit outside the pool; what a run needs is both (the context aside).
    const double work = (double)(kc_attention_workspace_held() + kc_gemm_workspace_bytes());
    log_info("cuda: peak memory of the buffers %.2f GiB, %.2f GiB with the attention and GEMM workspaces; device "
             "memory in use at the end %.2f GiB", high / 1073741824.0, (high + work) / 1073741824.0,
             (total_b - free_b) / 1073741824.0);
}

extern "C" void k_cuda_pci_bus_id(char *buf, int len)
{
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetPCIBusId(buf, len, device));
}

extern "C" void *k_cuda_host_alloc(size_t bytes, const char *what)
{
    void *p = nullptr;
    cudaError_t rc = cudaMallocHost(&p, bytes ? bytes : 1);
    if (rc != cudaSuccess) sl_fatal("cannot allocate %zu bytes of pinned host memory for %s: %s", bytes, what, cudaGetErrorString(rc));
    return p;
}

extern "C" void k_cuda_host_free(void *p)
{
    if (p) CUDA_CHECK(cudaFreeHost(p));
}

extern "C" void k_cuda_backend_start(void)
{
    if (stream) return;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    kc_side_open(&copies);
    // Keep freed memory in the pool: a step gives back and takes again the same sizes.
    int device = 0;
    cudaMemPool_t pool;
    uint64_t keep_all = UINT64_MAX;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
}
