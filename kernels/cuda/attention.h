/* attention (CUDA): causal grouped-query attention over packed documents, forward and backward, on
 * bf16 device tensors. cuDNN's fused flash attention runs it as a ragged (THD) batch; shapes cuDNN
 * refuses run a plain fallback kernel instead (kernels/cuda/attention_fallback.h). The CPU twin is
 * k_attention_fwd / k_attention_bwd in kernels/kernels.h. Calls come from one host thread per device;
 * the device work is asynchronous on the given stream, and streams may differ from call to call. */
#ifndef SL_CUDA_ATTENTION_H
#define SL_CUDA_ATTENTION_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Packed batch: T rows; sequence s is rows [seq_start[s], seq_start[s+1]) (host array, n_seqs+1 entries,
   seq_start[0] = 0, seq_start[n_seqs] = T; lengths >= 1, up to max_seq). q [T, nh*hd], k and v [T, nkv*hd]
   with rows ld apart (column slices of one fused [T, ld] q/k/v buffer; so dq, dk, dv), out [T, nh*hd] packed,
   bf16, row-major (token-major: THD). Causal within each sequence, nh % nkv == 0 (GQA),
   scale usually 1/sqrt(hd). stats: fp32 softmax statistics kept for backward, layout private to this file. */
size_t kc_attention_stats_bytes(int T, int n_seqs, int max_seq, int nh);
/* The workspace the backward of T rows in sequences of up to max_seq may need. */
size_t kc_attention_workspace_bytes(int T, int max_seq, int nh, int hd);
void kc_attention_fwd(void *out, float *stats, const void *q, const void *k, const void *v, int ld,
                      const int32_t *seq_start, int n_seqs, int max_seq, int nh, int nkv, int hd, float scale,
                      cudaStream_t s);
/* dq, dk, dv overwritten. Deterministic (cuDNN's deterministic backward, over groups of sequences)
   unless one sequence's dP alone exceeds the group cap: then cuDNN's non-deterministic one. */
void kc_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const float *stats,
                      const void *q, const void *k, const void *v, int ld, const int32_t *seq_start, int n_seqs,
                      int max_seq, int nh, int nkv, int hd, float scale, cudaStream_t s);
/* The workspace this device's attention holds now (it only grows). */
size_t kc_attention_workspace_held(void);
/* Whether the backward for sequences of up to max_seq rows is deterministic (see kc_attention_bwd). */
int kc_attention_bwd_deterministic(int max_seq, int nh);
/* Which implementation a shape with rows ld apart gets ("cudnn" or "fallback"), for tests and logs. */
const char *kc_attention_impl(int nh, int nkv, int hd, int ld);

#ifdef __cplusplus
}
#endif

#endif
