/* backend: the one interface the model code (layer, step, forward) computes through, so that a
 * decoder layer, the heads and the losses are written once for the CPU and the CUDA backend.
 *
 * Buffers are the backend's own memory (host memory on the CPU backend, device memory on CUDA).
 * Tensors marked "act" hold activations and gathered weights in the backend's activation type
 * (fp32 on the CPU, bf16 on CUDA: act_bytes says which); "f32" tensors are always fp32 (norm
 * statistics, logits, LoRA gradients). Every GEMM and reduction accumulates in fp32 or wider.
 * Calls are ordered on the backend's one compute stream; only download returns finished data
 * (copy_async runs beside that stream, ordered against it by tickets: below).
 *
 * Mirrors move host data to where the backend computes. The CPU backend computes on host memory,
 * so its mirrors return the host pointer itself and copy nothing; CUDA copies into mirror_buf.
 *
 * Row-major throughout; a row is one token; linear weights use the PyTorch layout W[N, K]. */
#ifndef SL_BACKEND_H
#define SL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name; /* "cpu" or "cuda" */
    int act_bytes;    /* 4 (fp32) or 2 (bf16) */
    int host_memory;  /* 1: computes on host memory, so mirrors copy nothing */
    /* fp32 logits per LM-head chunk: rows enough for efficient GEMMs, never [T, vocab] whole */
    size_t logits_chunk_bytes;

    /* memory */
    void *(*alloc)(size_t bytes, const char *what); /* never NULL: a failure is fatal, naming what */
    void (*release)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*download)(void *host, const void *src, size_t bytes); /* waits for the stream */

    /* Offload (--act-offload): host memory that the backend copies to and from beside its
     * compute (pinned on CUDA). copy_async copies bytes between it and backend memory, either
     * way, once the compute issued before the call is done, and returns a ticket; wait_copy
     * makes the compute issued after it wait for a ticket (the host waits for neither). The CPU
     * backend copies at once: its tickets are 0. host_release waits for the copies in flight. */
    void *(*host_alloc)(size_t bytes, const char *what);
    void (*host_release)(void *p);
    int64_t (*copy_async)(void *dst, const void *src, size_t bytes);
    void (*wait_copy)(int64_t ticket);

    /* mirrors (see above): a buffer to mirror into (NULL on the CPU backend), the mirror of host
     * bytes, and the act-typed mirror of fp32 host values. */
    void *(*mirror_alloc)(size_t bytes, const char *what);
    const void *(*mirror)(void *mirror_buf, const void *host, size_t bytes);
    void *(*mirror_act)(void *mirror_buf, const float *host, int64_t n);

    /* out[T, N] (act) = addend + scale * x[T, K] W[N, K]^T + bias[N] (bias may be NULL and is not
     * scaled). addend: NULL (none), out itself (accumulate), or another buffer of out's layout (a
     * residual added on the way, saving a copy). Token-major operands have row strides (ldout, ldx,
     * lddx, lddout: row t of x starts at x + t * ldx; ld >= the row's width, and > it for a column
     * slice of a wider buffer, such as one projection of the fused q/k/v output). linear_logits:
     * into fp32 out, no bias, no addend, packed. */
    void (*linear_fwd)(void *out, int ldout, const void *x, int ldx, const void *w, const void *bias, int T, int K,
                       int N, float scale, const void *addend);
    void (*linear_logits)(float *out, const void *x, const void *w, int T, int K, int N);
    /* dx[T, K] = (accumulate ? dx : 0) + scale * dout[T, N] W[N, K] */
    void (*linear_bwd_data)(void *dx, int lddx, const void *dout, int lddout, const void *w, int T, int K, int N,
                            float scale, int accumulate);
    /* dw[N, K] (f32) += scale * dout[T, N]^T x[T, K] */
    void (*linear_bwd_weight)(float *dw, const void *dout, int lddout, const void *x, int ldx, int T, int K, int N,
                              float scale);

    /* RMSNorm with fp32 statistics over T rows of `heads` vectors of D values each, every vector
     * normalised on its own (heads = 1: a model norm; heads > 1: Qwen3's per-head q/k norms); rows
     * are ld apart (ld >= heads * D) in x, out, dx and dout alike; rstd[T * heads]. Backward: dx =
     * (accumulate ? dx : 0) + d/dx (frozen w); dx may be dout itself when not accumulating. */
    void (*rmsnorm_fwd)(void *out, float *rstd, const void *x, const void *w, int T, int heads, int D, int ld,
                        float eps);
    void (*rmsnorm_bwd)(void *dx, const void *dout, const void *x, const void *w, const float *rstd, int T,
                        int heads, int D, int ld, int accumulate);
    /* Rotary embedding in place on T rows of n_heads heads, rows ld apart, at positions pos[T] from a
     * (cos, sin) table [max_pos][hd/2][2] (k_rope_table); inverse = 1 is the backward. */
    void (*rope)(void *x, int ld, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin,
                 int inverse);
    /* Causal GQA attention within packed sequences; seq_start is the HOST array (n_seqs + 1). q, k
     * and v (and dq, dk, dv) are column slices of rows ld apart, as the fused q/k/v projection
     * writes them; out and dout are packed [T, n_heads * head_dim]. stats (attention_stats_bytes)
     * is kept from forward for backward; backward overwrites dq, dk, dv. */
    size_t (*attention_stats_bytes)(int T, int n_seqs, int max_seq, int n_heads);
    void (*attention_fwd)(void *out, void *stats, const void *q, const void *k, const void *v, int ld,
                          const int32_t *seq_start, int n_seqs, int max_seq, int n_heads, int n_kv_heads,
                          int head_dim, float scale);
    void (*attention_bwd)(void *dq, void *dk, void *dv, const void *dout, const void *out, const void *stats,
                          const void *q, const void *k, const void *v, int ld, const int32_t *seq_start, int n_seqs,
                          int max_seq, int n_heads, int n_kv_heads, int head_dim, float scale);
    /* out = silu(gate) * up; backward overwrites dgate and dup, which may be gate and up themselves. */
    void (*swiglu_fwd)(void *out, const void *gate, const void *up, int64_t n);
    void (*swiglu_bwd)(void *dgate, void *dup, const void *dout, const void *gate, const void *up, int64_t n);
    void (*embedding_fwd)(void *out, const void *table, const int32_t *ids, int T, int D);
    /* LoRA input dropout, masks from rng_hash_uniform(key, stream, i) >= rate; backward adds. */
    void (*dropout_fwd)(void *out, const void *x, int64_t n, double rate, uint64_t key, uint64_t stream);
    void (*dropout_bwd)(void *dx, const void *dxd, int64_t n, double rate, uint64_t key, uint64_t stream);
    void (*add)(void *y, const void *x, int64_t n); /* y += x */
    /* Rows of a [*, D] act matrix: dst[i] = src[rows[i]] and dst[rows[i]] = src[i]. */
    void (*gather_rows)(void *dst, const void *src, const int32_t *rows, int n, int D);
    void (*scatter_rows)(void *dst, const void *src, const int32_t *rows, int n, int D);
    /* Cross-entropy of fp32 logits[T, V] against target[T] (< 0: ignored). row_loss[t] (backend
     * memory, double) receives each row's loss (0 where ignored); dlogits (act, or NULL) receives
     * weight * (softmax - onehot), 0 on ignored rows. */
    void (*cross_entropy)(double *row_loss, void *dlogits, const float *logits, const int32_t *target,
                          float weight, int T, int V);
    /* out[n] (act) = the n elements of quantized blocks q (kernels.h); q's codes and statistics are
     * backend buffers, its code tables host arrays. */
    void (*dequant)(void *out, const k_quant_blocks *q, int64_t n);

    /* dst[n] (act) = fp32 src[n] of backend memory (a copy on the CPU backend). */
    void (*to_act)(void *dst, const float *src, int64_t n);
    /* The optimizer on backend memory, twins of optim.h: the sum of squares of x in double (a
     * deterministic order, returned to the host), x *= s, and one AdamW update with
     * adamw_step's arithmetic (the CUDA backend's equals the CPU's bit for bit). */
    double (*sq_norm)(const float *x, int64_t n);
    void (*scale_f32)(float *x, int64_t n, float s);
    void (*adamw)(float *param, const float *grad, float *m, float *v, int64_t n, double beta1, double beta2,
                  double eps, double weight_decay, int64_t step, float lr);
    /* The end of an optimizer step: the CUDA profile reports the steps after the first (which
     * builds attention plans and uploads the model). */
    void (*mark_step)(void);
    /* Memory: the backend's own workspaces for a pass of T rows in sequences of up to max_seq
     * (cuDNN attention, cuBLASLt; an estimate, for the plan), and the device's free bytes now
     * (0 on the CPU backend, whose memory the plan does not limit). */
    size_t (*workspace_bytes)(int T, int max_seq, int n_heads, int head_dim);
    size_t (*free_memory)(void);
} sl_backend;

/* The backend every model computation goes through; set once at start-up by backend_select. */
extern const sl_backend *BE;
extern const sl_backend backend_cpu;
#ifdef SL_HAVE_CUDA
extern const sl_backend backend_cuda;
#endif

/* Byte offset of element i of an act tensor. */
static inline void *act_at(const void *p, int64_t i) { return (char *)p + i * BE->act_bytes; }

#ifdef __cplusplus
}
#endif

#endif
