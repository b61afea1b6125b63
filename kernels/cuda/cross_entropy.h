/* cross_entropy: token-level loss and its logit gradient on the GPU, the twins of
 * k_cross_entropy_fwd / _bwd (kernels/cpu/cross_entropy.c), plus the deterministic sum that turns
 * row losses into a batch loss. Asynchronous on stream s; every pointer is device memory. */
#ifndef SL_CUDA_CROSS_ENTROPY_H
#define SL_CUDA_CROSS_ENTROPY_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Cross-entropy of fp32 logits[T, V] against target[T] (< 0: row ignored). row_loss[t] = the
 * natural-log loss (computed in fp32, stored widened; 0 for ignored rows). When dlogits is non-NULL it receives bf16
 * weight * (softmax(logits) - onehot(target)) (ignored rows: 0); it must not overlap logits.
 * Targets are assumed checked against V. */
void kc_cross_entropy(double *row_loss, void *dlogits, const float *logits, const int32_t *target, float weight,
                      int T, int V, cudaStream_t s);
/* out[0] (device double) = sum of x[0..n) in a fixed order (deterministic, independent of launch timing). */
void kc_sum_f64(double *out, const float *x, int64_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
