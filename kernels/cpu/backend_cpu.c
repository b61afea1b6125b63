/* backend_cpu: the backend interface on host memory in fp32, over the reference kernels of
 * kernels/cpu. Mirrors are the host data themselves. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels.h"
#include "optim.h"
#include "rng.h"
#include "runtime.h"

static void *cpu_alloc(size_t bytes, const char *what) { return sl_malloc(bytes, what); }
static void cpu_release(void *p) { free(p); }
/* An empty range may come with NULL pointers (an empty shard), which memset and memmove must not get. */
static void cpu_zero(void *p, size_t bytes)
{
    if (bytes) memset(p, 0, bytes);
}
static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) memmove(dst, src, bytes);
}

/* Offload copies host memory to host memory: the same code path as on a GPU, for tests. */
static int64_t cpu_copy_async(void *dst, const void *src, size_t bytes)
{
    cpu_copy(dst, src, bytes);
    return 0;
}
static void cpu_wait_copy(int64_t ticket) {}

static void *cpu_mirror_alloc(size_t bytes, const char *what) { return NULL; }
static const void *cpu_mirror(void *buf, const void *host, size_t bytes) { return host; }
static void *cpu_mirror_act(void *buf, const float *host, int64_t n) { return (void *)host; }

/* The reference kernels take packed rows: a strided operand (ld > K, a column slice of a wider
 * buffer) is packed into, or unpacked from, one scratch buffer that only grows. */
static float *strided_scratch(size_t n)
{
    static float *buf;
    static size_t cap;
    if (n > cap) {
        free(buf);
        buf = sl_malloc(n * sizeof *buf, "strided operand");
        cap = n;
    }
    return buf;
}

/* Rows [T, K] between a buffer with row stride ld and a packed one. */
static void copy_rows(float *dst, int ld_dst, const float *src, int ld_src, int T, int K)
{
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * ld_dst, src + (size_t)t * ld_src, (size_t)K * sizeof(float));
}

static const float *packed(const void *x, int ldx, int T, int K)
{
    if (ldx == K) return x;
    float *p = strided_scratch((size_t)T * (size_t)K);
    copy_rows(p, K, x, ldx, T, K);
    return p;
}

static void cpu_linear_fwd(void *out, const void *x, int ldx, const void *w, const void *bias, int T, int K, int N,
                           float scale, const void *addend)
{
    if (addend) cpu_copy(out, addend, (size_t)T * (size_t)N * sizeof(float));
    k_linear_fwd(out, packed(x, ldx, T, K), w, bias, T, K, N, scale, addend != NULL);
}

static void cpu_linear_logits(float *out, const void *x, const void *w, int T, int K, int N)
{
    k_linear_fwd(out, x, w, NULL, T, K, N, 1.0f, 0);
}

static void cpu_linear_bwd_data(void *dx, int lddx, const void *dout, const void *w, int T, int K, int N, float scale,
                                int accumulate)
{
    float *d = lddx == K ? dx : strided_scratch((size_t)T * (size_t)K);
    if (!accumulate) memset(d, 0, (size_t)T * (size_t)K * sizeof(float));
    else if (d != dx) copy_rows(d, K, dx, lddx, T, K);
    k_linear_bwd(d, NULL, NULL, dout, NULL, w, T, K, N, scale);
    if (d != dx) copy_rows(dx, lddx, d, K, T, K);
}

static void cpu_linear_bwd_weight(float *dw, const void *dout, const void *x, int ldx, int T, int K, int N, float scale)
{
    k_linear_bwd(NULL, dw, NULL, dout, packed(x, ldx, T, K), NULL, T, K, N, scale);
}

static void cpu_rmsnorm_fwd(void *out, float *rstd, const void *x, const void *w, int T, int D, float eps)
{
    k_rmsnorm_fwd(out, rstd, x, w, T, D, eps);
}

static void cpu_rmsnorm_bwd(void *dx, const void *dout, const void *x, const void *w, const float *rstd, int T,
                            int D, int accumulate)
{
    if (!accumulate) memset(dx, 0, (size_t)T * (size_t)D * sizeof(float));
    k_rmsnorm_bwd(dx, NULL, dout, x, w, rstd, T, D);
}

static void cpu_rope(void *x, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin,
                     int inverse)
{
    k_rope(x, pos, T, n_heads, head_dim, cos_sin, inverse);
}

/* The log-sum-exp of every score row, [n_heads, T]. */
static size_t cpu_attention_stats_bytes(int T, int n_seqs, int max_seq, int n_heads)
{
    return (size_t)(T > 0 ? T : 1) * (size_t)n_heads * sizeof(float);
}

static void cpu_attention_fwd(void *out, void *stats, const void *q, const void *k, const void *v,
                              const int32_t *seq_start, int n_seqs, int max_seq, int nh, int nkv, int hd,
                              float scale)
{
    k_attention_fwd(out, stats, q, k, v, seq_start, n_seqs, nh, nkv, hd, scale);
}

static void cpu_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const void *stats,
                              const void *q, const void *k, const void *v, const int32_t *seq_start, int n_seqs,
                              int max_seq, int nh, int nkv, int hd, float scale)
{
    const size_t T = (size_t)seq_start[n_seqs];
    memset(dq, 0, T * (size_t)(nh * hd) * sizeof(float));
    memset(dk, 0, T * (size_t)(nkv * hd) * sizeof(float));
    memset(dv, 0, T * (size_t)(nkv * hd) * sizeof(float));
    k_attention_bwd(dq, dk, dv, dout, out, stats, q, k, v, seq_start, n_seqs, nh, nkv, hd, scale);
}

static void cpu_swiglu_fwd(void *out, const void *gate, const void *up, int64_t n) { k_swiglu_fwd(out, gate, up, n); }

static void cpu_swiglu_bwd(void *dgate, void *dup, const void *dout, const void *gate, const void *up, int64_t n)
{
    k_swiglu_bwd(dgate, dup, dout, gate, up, n, 0);
}

static void cpu_embedding_fwd(void *out, const void *table, const int32_t *ids, int T, int D)
{
    k_embedding_fwd(out, table, ids, T, D);
}

static void cpu_dropout_fwd(void *out, const void *x, int64_t n, double rate, uint64_t key, uint64_t stream)
{
    const float keep = (float)(1.0 / (1.0 - rate));
    float *o = out;
    const float *in = x;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = rng_hash_uniform(key, stream, (uint64_t)i) >= rate ? in[i] * keep : 0.0f;
}

static void cpu_dropout_bwd(void *dx, const void *dxd, int64_t n, double rate, uint64_t key, uint64_t stream)
{
    const float keep = (float)(1.0 / (1.0 - rate));
    float *d = dx;
    const float *g = dxd;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (rng_hash_uniform(key, stream, (uint64_t)i) >= rate) d[i] += g[i] * keep;
}

static void cpu_add(void *y, const void *x, int64_t n)
{
    float *a = y;
    const float *b = x;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
}

static void cpu_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int D)
{
    for (int i = 0; i < n; i++)
        memcpy((float *)dst + (int64_t)i * D, (const float *)src + (int64_t)rows[i] * D, (size_t)D * sizeof(float));
}

static void cpu_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int D)
{
    for (int i = 0; i < n; i++)
        memcpy((float *)dst + (int64_t)rows[i] * D, (const float *)src + (int64_t)i * D, (size_t)D * sizeof(float));
}

static void cpu_cross_entropy(double *row_loss, void *dlogits, const float *logits, const int32_t *target,
                              float weight, int T, int V)
{
    static float *weights; /* one weight per row for the reference kernel; grows, never shrinks */
    static int n_weights;
    k_cross_entropy_fwd(row_loss, logits, target, T, V);
    if (!dlogits) return;
    if (T > n_weights) {
        free(weights);
        weights = sl_malloc((size_t)T * sizeof(float), "loss weights");
        n_weights = T;
    }
    for (int t = 0; t < T; t++) weights[t] = weight;
    k_cross_entropy_bwd(dlogits, logits, target, weights, T, V);
}

static void cpu_dequant(void *out, const k_quant_blocks *q, int64_t n) { k_dequant(out, q, n); }

static void cpu_mark_step(void) {}
static size_t cpu_workspace_bytes(int T, int max_seq, int n_heads, int head_dim) { return 0; }
static size_t cpu_free_memory(void) { return 0; }

static void cpu_to_act(void *dst, const float *src, int64_t n) { cpu_copy(dst, src, (size_t)n * sizeof(float)); }

static void cpu_adamw(float *param, const float *grad, float *m, float *v, int64_t n, double beta1, double beta2,
                      double eps, double weight_decay, int64_t step, float lr)
{
    const sl_adamw hp = {.beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = weight_decay};
    adamw_step(param, grad, m, v, n, &hp, step, lr);
}

const sl_backend backend_cpu = {
    .name = "cpu",
    .act_bytes = 4,
    .host_memory = 1,
    .logits_chunk_bytes = 64u << 20, /* stays in cache-friendly sizes; the GEMMs are row-efficient */
    .alloc = cpu_alloc,
    .release = cpu_release,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .download = cpu_copy,
    .host_alloc = cpu_alloc,
    .host_release = cpu_release,
    .copy_async = cpu_copy_async,
    .wait_copy = cpu_wait_copy,
    .mirror_alloc = cpu_mirror_alloc,
    .mirror = cpu_mirror,
    .mirror_act = cpu_mirror_act,
    .linear_fwd = cpu_linear_fwd,
    .linear_logits = cpu_linear_logits,
    .linear_bwd_data = cpu_linear_bwd_data,
    .linear_bwd_weight = cpu_linear_bwd_weight,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope = cpu_rope,
    .attention_stats_bytes = cpu_attention_stats_bytes,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .embedding_fwd = cpu_embedding_fwd,
    .dropout_fwd = cpu_dropout_fwd,
    .dropout_bwd = cpu_dropout_bwd,
    .add = cpu_add,
    .gather_rows = cpu_gather_rows,
    .scatter_rows = cpu_scatter_rows,
    .cross_entropy = cpu_cross_entropy,
    .dequant = cpu_dequant,
    .to_act = cpu_to_act,
    .sq_norm = optim_local_sq_norm,
    .scale_f32 = optim_scale,
    .adamw = cpu_adamw,
    .mark_step = cpu_mark_step,
    .workspace_bytes = cpu_workspace_bytes,
    .free_memory = cpu_free_memory,
};

const sl_backend *BE = &backend_cpu;
