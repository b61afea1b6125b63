/* adamw: the optimizer's device side, twins of src/optim.c: the AdamW update (bit for bit the
 * CPU's), the squared gradient norm, gradient scaling for clipping and the finiteness check.
 * Asynchronous on the stream; every pointer is device memory. */
#ifndef SL_CUDA_ADAMW_H
#define SL_CUDA_ADAMW_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One AdamW update of n fp32 parameters at optimizer step `step` (1 for the first), the same
 * arithmetic in the same order as adamw_step, with the scalars of adamw_step_scalars: the GPU's
 * param, m and v equal the CPU's bit for bit. */
void kc_adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, double beta1, double beta2,
                   double eps, double weight_decay, int64_t step, float lr, cudaStream_t s);
/* out[0] (device double) = sum of grad[i]^2 in double, deterministic; equals optim_local_sq_norm's
 * value to rounding (the order of the additions differs). */
void kc_sq_norm(double *out, const float *grad, int64_t n, cudaStream_t s);
/* x *= s (nothing to do when s == 1, as optim_scale). */
void kc_scale_f32(float *x, int64_t n, float s, cudaStream_t st);
/* out[0] (device int) = the number of NaN or infinite elements of x. */
void kc_count_nonfinite(int *out, const float *x, int64_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
