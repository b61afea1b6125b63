/* gemm: the linear layers' matrix products on the GPU, through cuBLASLt. Row-major tensors, the
 * PyTorch weight layout W[N, K]; bf16 inputs with fp32 accumulation (CUBLAS_COMPUTE_32F). Every
 * call is asynchronous on stream s. The first call of a shape chooses its algorithm and keeps it,
 * so the same shape always runs the same algorithm and gives the same bits.
 *
 * One cuBLASLt workspace per device is shared by every call: run these GEMMs on one stream at a
 * time per device (the compute stream), and from one host thread. */
#ifndef SL_CUDA_GEMM_H
#define SL_CUDA_GEMM_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[T, N] = addend + scale * x[T, K] W[N, K]^T (+ bias[N], bf16, when non-NULL; the bias is not
 * scaled). out is bf16, or fp32 when out_f32 (LM-head logits). addend, of out's type and layout, is
 * NULL (none), out itself (accumulate) or another buffer (a residual added on the way, as beta = 1
 * with C apart from D). The token-major operands have row strides: row t of x starts at x + t * ldx
 * (ldx >= K; more for a column slice of a wider buffer), and likewise out (ldout), dx (lddx) and
 * dout (lddout) below. T = 0 is a no-op. */
void kc_linear_fwd(void *out, int out_f32, int ldout, const void *x, int ldx, const void *w, const void *bias, int T,
                   int K, int N, float scale, const void *addend, cudaStream_t s);
/* dx[T, K] = (accumulate ? dx : 0) + scale * dout[T, N] W[N, K]  (bf16). */
void kc_linear_bwd_data(void *dx, int lddx, const void *dout, int lddout, const void *w, int T, int K, int N,
                        float scale, int accumulate, cudaStream_t s);
/* dw[N, K] += scale * dout[T, N]^T x[T, K], dw fp32 (the LoRA master gradients), bf16 inputs. */
void kc_linear_bwd_weight(float *dw, const void *dout, int lddout, const void *x, int ldx, int T, int K, int N,
                          float scale, cudaStream_t s);
/* Bytes of the cuBLASLt workspace the GEMMs keep (one per device). */
size_t kc_gemm_workspace_bytes(void);

#ifdef __cplusplus
}
#endif

#endif
