/* attention_fallback: the plain CUDA attention that kc_attention_fwd/bwd use for shapes cuDNN refuses,
 * exposed so tests can run it on any shape. Same tensors and the same stats as kernels/cuda/attention.h
 * (the stats are the natural-log log-sum-exp of the scaled scores, fp32, token-major [T, nh], which is
 * also what cuDNN writes), but seq_start is a device array here (n_seqs + 1 row offsets, T rows).
 * head_dim up to 256. Asynchronous on stream s. */
#ifndef SL_CUDA_ATTENTION_FALLBACK_H
#define SL_CUDA_ATTENTION_FALLBACK_H

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kc_attention_fallback_fwd(void *out, float *stats, const void *q, const void *k, const void *v, int ld,
                               const int32_t *seq_start_dev, int T, int n_seqs, int nh, int nkv, int hd,
                               float scale, cudaStream_t s);
/* dq, dk, dv overwritten; deterministic (each element is summed by one warp in a fixed order). */
void kc_attention_fallback_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const float *stats,
                               const void *q, const void *k, const void *v, int ld, const int32_t *seq_start_dev,
                               int T, int n_seqs, int nh, int nkv, int hd, float scale, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
