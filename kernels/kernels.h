/* kernels: the one backend-neutral API of the compute kernels. The CPU backend (kernels/cpu) is
 * the readable, fp32 reference; the CUDA backend implements the same calls on device pointers.
 *
 * Conventions: row-major; a "row" is one token; T tokens are packed back to back, several
 * sequences in one batch described by seq_start (n_seqs + 1 offsets into the T rows). Linear
 * weights use the PyTorch layout W[out, in]. Backward functions ACCUMULATE (+=) into input
 * gradients and weight gradients, so callers zero them once per step; pass NULL to skip one. */
#ifndef SL_KERNELS_H
#define SL_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[T, N] = (accumulate ? out : 0) + scale * x[T, K] W[N, K]^T + bias[N] (bias may be NULL). */
void k_linear_fwd(float *out, const float *x, const float *w, const float *bias, int T, int K, int N,
                  float scale, int accumulate);
/* dx[T, K] += scale * dout W;  dw[N, K] += scale * dout^T x;  dbias[N] += sum_t dout (the bias is
 * not scaled in the forward). */
void k_linear_bwd(float *dx, float *dw, float *dbias, const float *dout, const float *x, const float *w,
                  int T, int K, int N, float scale);

/* RMSNorm: out = x / sqrt(mean(x^2) + eps) * w; rstd[T] saved for backward. */
void k_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int T, int D, float eps);
/* dx += d/dx; dw may be NULL (frozen norm weights). */
void k_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                   const float *rstd, int T, int D);

/* Rotary frequencies as Hugging Face's rope_parameters describe them. Each type changes only the
 * inverse frequencies (and, for yarn, a factor on cos and sin), so only the table changes. */
typedef enum { K_ROPE_DEFAULT, K_ROPE_LINEAR, K_ROPE_LLAMA3, K_ROPE_YARN } k_rope_type;
typedef struct {
    k_rope_type type;
    double theta;
    double factor;                            /* linear, llama3, yarn: the context is stretched by it */
    double low_freq_factor, high_freq_factor; /* llama3 */
    int original_max_positions;               /* llama3, yarn: the pretraining context */
    double beta_fast, beta_slow;              /* yarn: the correction range, in rotations */
    int truncate;                             /* yarn: that range rounded outwards to whole dimensions */
    double attention_factor;                  /* yarn: multiplies cos and sin; 1 for the other types */
} k_rope_params;

/* inv_freq[head_dim / 2] of the rope type, in double. */
void k_rope_inv_freq(double *inv_freq, int head_dim, const k_rope_params *rope);

/* Rotary embedding in the Hugging Face convention (element i pairs with i + head_dim/2 inside each
 * head), applied in place to x[T, n_heads * head_dim] at positions pos[T] < max_pos, from the table
 * cos_sin[max_pos][head_dim / 2][2] of (cos, sin) that k_rope_table fills (angles in double, then
 * rounded; both times the attention factor). inverse = 1 applies the transposed rotation, which is
 * the backward pass. */
void k_rope_table(float *cos_sin, int max_pos, int head_dim, const k_rope_params *rope);
void k_rope(float *x, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin, int inverse);

/* Causal grouped-query attention within each packed sequence. q[T, nh*hd], k and v[T, nkv*hd],
 * out[T, nh*hd]; lse[nh, T] (log-sum-exp of each score row) is saved for backward.
 * scale = 1/sqrt(hd) in LLaMA. */
void k_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                     const int32_t *seq_start, int n_seqs, int n_heads, int n_kv_heads, int head_dim,
                     float scale);
void k_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                     const float *lse, const float *q, const float *k, const float *v,
                     const int32_t *seq_start, int n_seqs, int n_heads, int n_kv_heads, int head_dim,
                     float scale);

/* SwiGLU: out = silu(gate) * up, elementwise over n. */
void k_swiglu_fwd(float *out, const float *gate, const float *up, int64_t n);
/* dgate, dup (+)= the gradients; either may be NULL. */
void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n,
                  int accumulate);

/* Cross-entropy of logits[T, V] against target[T] (target < 0: row ignored). Writes the per-row
 * loss (natural log) to loss[T] in double precision, 0 for ignored rows. */
void k_cross_entropy_fwd(double *loss, const float *logits, const int32_t *target, int T, int V);
/* dlogits[T, V] = weight[t] * (softmax(logits) - onehot(target)); overwrites (rows ignored: 0). */
void k_cross_entropy_bwd(float *dlogits, const float *logits, const int32_t *target, const float *weight,
                         int T, int V);

/* Embedding lookup out[T, D] = table[ids[t], :]; ids are assumed checked against the vocabulary. */
void k_embedding_fwd(float *out, const float *table, const int32_t *ids, int T, int D);

/* Blockwise-quantized weights in bitsandbytes' layout (NF4, FP4, INT8; formats in src/quant.h), as
 * plain pointers at the data of the first block to decode. With double quantization that block
 * starts a nested group, so nested_absmax[b / nested_blocksize] scales block b. */
typedef struct {
    int bits;                 /* 4: two codes per byte, the first element in the high nibble; 8: one */
    int blocksize;
    const float *code;        /* the decoding table, 1 << bits entries */
    const uint8_t *codes;
    const float *absmax;      /* one per block; NULL with double quantization, where instead */
    const uint8_t *absmax_u8; /*   absmax[b] = nested_code[absmax_u8[b]] * nested_absmax[b / nested_blocksize] + offset */
    const float *nested_absmax;
    const float *nested_code;
    int nested_blocksize;
    float offset;
} k_quant_blocks;

/* Dequantize the n elements that start at the first block: out[i] = code[c_i] * absmax[i / blocksize]. */
void k_dequant(float *out, const k_quant_blocks *q, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
