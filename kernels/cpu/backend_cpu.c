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

/* The reference kernels take packed rows. A strided operand (rows ld apart, ld > the row's width:
 * a column slice of a wider buffer) is packed into, or unpacked from, a scratch buffer; a call
 * uses one slot per such operand, and each slot only grows. */
enum { SCRATCH_SLOTS = 6 };

static float *scratch(int slot, size_t n)
{
    static float *buf[SCRATCH_SLOTS];
    static size_t cap[SCRATCH_SLOTS];
    if (n > cap[slot]) {
        free(buf[slot]);
        buf[slot] = sl_malloc(n * sizeof(float), "strided operand");
        cap[slot] = n;
    }
    return buf[slot];
}

/* Rows [T, K] from a buffer with row stride ld_src into one with ld_dst. */
static void copy_rows(float *dst, int ld_dst, const float *src, int ld_src, int T, int K)
{
    if (dst == src && ld_dst == ld_src) return;
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * ld_dst, src + (size_t)t * ld_src, (size_t)K * sizeof(float));
}

/* x [T, K] with row stride ld as packed rows: x itself when it is packed. */
static const float *packed(int slot, const void *x, int ld, int T, int K)
{
    if (ld == K) return x;
    float *p = scratch(slot, (size_t)T * (size_t)K);
    copy_rows(p, K, x, ld, T, K);
    return p;
}

/* Where a kernel writes [T, K] rows that belong in y with row stride ld: y itself when it is packed. */
static float *packed_out(int slot, void *y, int ld, int T, int K)
{
    return ld == K ? y : scratch(slot, (size_t)T * (size_t)K);
}

static void unpack(void *y, int ld, const float *p, int T, int K) { copy_rows(y, ld, p, K, T, K); }

static void cpu_linear_fwd(void *out, int ldout, const void *x, int ldx, const void *w, const void *bias, int T, int K,
                           int N, float scale, const void *addend)
{
    float *o = packed_out(1, out, ldout, T, N);
    if (addend) copy_rows(o, N, addend, ldout, T, N);
    k_linear_fwd(o, packed(0, x, ldx, T, K), w, bias, T, K, N, scale, addend != NULL);
    unpack(out, ldout, o, T, N);
}

static void cpu_linear_logits(float *out, const void *x, const void *w, int T, int K, int N)
{
    k_linear_fwd(out, x, w, NULL, T, K, N, 1.0f, 0);
}

static void cpu_linear_bwd_data(void *dx, int lddx, const void *dout, int lddout, const void *w, int T, int K, int N,
                                float scale, int accumulate)
{
    float *d = packed_out(1, dx, lddx, T, K);
    if (!accumulate) memset(d, 0, (size_t)T * (size_t)K * sizeof(float));
    else copy_rows(d, K, dx, lddx, T, K);
    k_linear_bwd(d, NULL, NULL, packed(0, dout, lddout, T, N), NULL, w, T, K, N, scale);
    unpack(dx, lddx, d, T, K);
}

static void cpu_linear_bwd_weight(float *dw, const void *dout, int lddout, const void *x, int ldx, int T, int K, int N,
                                  float scale)
{
    k_linear_bwd(NULL, dw, NULL, packed(0, dout, lddout, T, N), packed(1, x, ldx, T, K), NULL, T, K, N, scale);
}

/* Rows of `heads` vectors of D, ld apart, are packed [T, heads * D], which is [T * heads, D]. */
static void cpu_rmsnorm_fwd(void *out, float *rstd, const void *x, const void *w, int T, int heads, int D, int ld,
                            float eps)
{
    const int width = heads * D;
    float *o = packed_out(1, out, ld, T, width);
    k_rmsnorm_fwd(o, rstd, packed(0, x, ld, T, width), w, T * heads, D, eps);
    unpack(out, ld, o, T, width);
}

static void cpu_rmsnorm_bwd(void *dx, const void *dout, const void *x, const void *w, const float *rstd, int T,
                            int heads, int D, int ld, int accumulate)
{
    const int width = heads * D;
    /* the reference kernel adds into dx, so a dout that is dx itself is read from a copy */
    const float *g = packed(0, dout, ld, T, width);
    if (g == dx) {
        float *copy = scratch(0, (size_t)T * (size_t)width);
        copy_rows(copy, width, dout, ld, T, width);
        g = copy;
    }
    float *d = packed_out(1, dx, ld, T, width);
    if (!accumulate) memset(d, 0, (size_t)T * (size_t)width * sizeof(float));
    else copy_rows(d, width, dx, ld, T, width);
    k_rmsnorm_bwd(d, NULL, g, packed(2, x, ld, T, width), w, rstd, T * heads, D);
    unpack(dx, ld, d, T, width);
}

static void cpu_rope(void *x, int ld, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin,
                     int inverse)
{
    const int width = n_heads * head_dim;
    float *p = (float *)packed(0, x, ld, T, width);
    k_rope(p, pos, T, n_heads, head_dim, cos_sin, inverse);
    unpack(x, ld, p, T, width);
}

/* The log-sum-exp of every score row, [n_heads, T]. */
static size_t cpu_attention_stats_bytes(int T, int n_seqs, int max_seq, int n_heads)
{
    return (size_t)(T > 0 ? T : 1) * (size_t)n_heads * sizeof(float);
}

static void cpu_attention_fwd(void *out, void *stats, const void *q, const void *k, const void *v, int ld,
                              const int32_t *seq_start, int n_seqs, int max_seq, int nh, int nkv, int hd,
                              float scale)
{
    const int T = seq_start[n_seqs];
    k_attention_fwd(out, stats, packed(0, q, ld, T, nh * hd), packed(1, k, ld, T, nkv * hd),
                    packed(2, v, ld, T, nkv * hd), seq_start, n_seqs, nh, nkv, hd, scale);
}

static void cpu_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const void *stats,
                              const void *q, const void *k, const void *v, int ld, const int32_t *seq_start, int n_seqs,
                              int max_seq, int nh, int nkv, int hd, float scale)
{
    const int T = seq_start[n_seqs];
    float *d[3] = {packed_out(3, dq, ld, T, nh * hd), packed_out(4, dk, ld, T, nkv * hd),
                   packed_out(5, dv, ld, T, nkv * hd)};
    for (int i = 0; i < 3; i++) memset(d[i], 0, (size_t)T * (size_t)((i ? nkv : nh) * hd) * sizeof(float));
    k_attention_bwd(d[0], d[1], d[2], dout, out, stats, packed(0, q, ld, T, nh * hd), packed(1, k, ld, T, nkv * hd),
                    packed(2, v, ld, T, nkv * hd), seq_start, n_seqs, nh, nkv, hd, scale);
    unpack(dq, ld, d[0], T, nh * hd), unpack(dk, ld, d[1], T, nkv * hd), unpack(dv, ld, d[2], T, nkv * hd);
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
