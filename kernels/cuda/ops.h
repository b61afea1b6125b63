/* ops: the CUDA backend's per-layer elementwise and normalisation kernels (twins in kernels/cpu).
 * Activations are bf16 (passed as void *), math and statistics fp32. Every call is asynchronous on
 * stream s; a size of 0 is a no-op. Unlike the CPU twins, gradients are overwritten unless a call
 * says it accumulates. Each call takes 16-byte vector loads when the row length and the pointers allow,
 * and a scalar path otherwise. */
#ifndef SL_CUDA_OPS_H
#define SL_CUDA_OPS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* RMSNorm over T rows of `heads` vectors of D (heads > 1: per-head norms), rows ld apart in x, out, dx and dout:
 * rstd[i] = 1/sqrt(mean_d(x_i^2) + eps) in fp32 for vector i (head i % heads of row i / heads); out =
 * bf16(x * rstd * w). x, w, out bf16. */
void kc_rmsnorm_fwd(void *out, float *rstd, const void *x, const void *w, int T, int heads, int D, int ld, float eps,
                    cudaStream_t s);
/* dx = (accumulate ? dx : 0) + d/dx of the above given dout (weights frozen: no dw); dx may be dout. */
void kc_rmsnorm_bwd(void *dx, const void *dout, const void *x, const void *w, const float *rstd, int T, int heads,
                    int D, int ld, int accumulate, cudaStream_t s);

/* Rotary embedding, Hugging Face convention (element i pairs with i + head_dim/2 in each head), in place on
 * T rows of n_heads*head_dim bf16, rows ld apart, at positions pos[T] (device, each below the table's max_pos).
 * cos_sin: device table [max_pos][head_dim/2][2] of (cos, sin) from k_rope_table (kernels.h). inverse = 1 applies
 * the transposed rotation (backward). */
void kc_rope(void *x, int ld, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin, int inverse,
             cudaStream_t s);
/* Host: fill cos_sin_host[max_pos][head_dim/2][2] with the angles k_rope forms (in double, then rounded). */

/* SwiGLU: out = silu(gate) * up; backward overwrites dgate and dup. */
void kc_swiglu_fwd(void *out, const void *gate, const void *up, int64_t n, cudaStream_t s);
void kc_swiglu_bwd(void *dgate, void *dup, const void *dout, const void *gate, const void *up, int64_t n,
                   cudaStream_t s);

/* out[T, D] = table[ids[t], :] (bf16; ids device, already checked). */
void kc_embedding_fwd(void *out, const void *table, const int32_t *ids, int T, int D, cudaStream_t s);

/* LoRA input dropout with the CPU backend's masks: element i of stream `stream` is kept when
 * rng_hash_uniform(key, stream, i) >= rate (src/rng.c, ported exactly); rate in [0, 1).
 * Forward out = keep ? x * (1/(1-rate)) : 0; backward dx += keep ? dxd * (1/(1-rate)) : 0. */
void kc_dropout_fwd(void *out, const void *x, int64_t n, double rate, uint64_t key, uint64_t stream,
                    cudaStream_t s);
void kc_dropout_bwd(void *dx, const void *dxd, int64_t n, double rate, uint64_t key, uint64_t stream,
                    cudaStream_t s);

/* y += x (bf16, fp32 math). */
void kc_add_inplace(void *y, const void *x, int64_t n, cudaStream_t s);
/* Conversions (round to nearest even into bf16; widening is exact). */
void kc_f32_to_bf16(void *dst, const float *src, int64_t n, cudaStream_t s);
void kc_bf16_to_f32(float *dst, const void *src, int64_t n, cudaStream_t s);

/* Rows of a [*, D] bf16 matrix: dst[i] = src[rows[i]] (gather), and dst[rows[i]] = src[i] (scatter; rows
 * distinct); rows device, n rows. For sequence-classification pooling. Bits are copied unchanged. */
void kc_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int D, cudaStream_t s);
void kc_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int D, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
