/* optim: AdamW on each rank's shard of the trainable parameters (fp32 master weights and
 * moments), global gradient-norm clipping, and learning-rate schedules, all as PyTorch's
 * torch.optim.AdamW, clip_grad_norm_ and Hugging Face's get_*_schedule_with_warmup define them. */
#ifndef SL_OPTIM_H
#define SL_OPTIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Hyperparameters in double, like torch's Python floats: the bias corrections 1 - beta^t are
 * computed from them; the per-element math rounds them to float as torch does. */
typedef struct {
    double beta1, beta2, eps, weight_decay;
} sl_adamw;

/* The fp32 scalars of one update at optimizer step `step`, derived in double as torch does; the
 * CUDA backend's AdamW uses the same ones, so both round every element alike. */
typedef struct {
    float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step;
} adamw_scalars;
adamw_scalars adamw_step_scalars(const sl_adamw *hp, int64_t step, float lr);

/* One update of n parameters at optimizer step `step` (1 for the first update), in fp32 with
 * torch's operation order. Call it per range with its own weight_decay to exempt a range. */
void adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, const sl_adamw *hp,
                int64_t step, float lr);

/* Sum of squares of this rank's gradient shard, in double over a fixed chunking, so the value
 * does not depend on the number of OpenMP threads. */
double optim_local_sq_norm(const float *grad, int64_t n);
/* Collective: the L2 norm of the gradient over every rank's shard from this rank's sum of
 * squares (optim_local_sq_norm, or the backend's sq_norm), the same value on every rank. */
double optim_global_norm(double local_sq);
/* torch.nn.utils.clip_grad_norm_'s factor for a total norm: min(1, max_norm / (norm + 1e-6)). */
float optim_clip_coef(double norm, double max_norm);
void optim_scale(float *x, int64_t n, float s);
/* 1 when no element is NaN or infinite. */
int optim_all_finite(const float *x, int64_t n);

typedef enum { SCHEDULE_CONSTANT, SCHEDULE_LINEAR, SCHEDULE_COSINE } schedule_kind_t;
typedef struct {
    schedule_kind_t kind;
    float base_lr;
    int64_t warmup_steps, total_steps;
} sl_schedule;

/* The kind named by --schedule (constant, linear, cosine); any other name is fatal. */
schedule_kind_t schedule_kind(const char *name);
/* The learning rate of optimizer step `step`, counted from 0 (the first update uses lr_at(0)). */
float lr_at(const sl_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif

#endif
