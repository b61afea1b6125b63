/* optim: AdamW, clipping and schedules. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "comm.h"

void adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, const sl_adamw *hp,
                int64_t step, float lr)
{
    /* torch's single-tensor AdamW in fp32: decay, moments, then p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
    const float bc1 = 1.0f - powf(hp->beta1, (float)step), bc2_sqrt = sqrtf(1.0f - powf(hp->beta2, (float)step));
    const float step_size = lr / bc1, decay = 1.0f - lr * hp->weight_decay;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        param[i] *= decay;
        m[i] = hp->beta1 * m[i] + (1.0f - hp->beta1) * g;
        v[i] = hp->beta2 * v[i] + (1.0f - hp->beta2) * g * g;
        param[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + hp->eps);
    }
}

double optim_global_norm(const float *grad, int64_t n)
{
    double sq = 0;
    for (int64_t i = 0; i < n; i++) sq += (double)grad[i] * grad[i]; /* serial: the same sum every run */
    comm_allreduce_sum_f64(&sq, 1);
    return sqrt(sq);
}

float optim_clip_coef(double norm, double max_norm)
{
    double c = max_norm / (norm + 1e-6);
    return (float)(c < 1.0 ? c : 1.0);
}

void optim_scale(float *x, int64_t n, float s)
{
    if (s == 1.0f) return;
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

schedule_kind_t schedule_kind(const char *name)
{
    return !strcmp(name, "linear") ? SCHEDULE_LINEAR : !strcmp(name, "cosine") ? SCHEDULE_COSINE : SCHEDULE_CONSTANT;
}

float lr_at(const sl_schedule *s, int64_t step)
{
    if (step < s->warmup_steps) return s->base_lr * (float)step / (float)(s->warmup_steps > 1 ? s->warmup_steps : 1);
    double done = (double)(step - s->warmup_steps), span = (double)(s->total_steps - s->warmup_steps);
    double progress = span > 0 ? done / span : 1.0, factor = 1.0;
    if (s->kind == SCHEDULE_LINEAR) factor = progress < 1 ? 1 - progress : 0;
    if (s->kind == SCHEDULE_COSINE) factor = progress < 1 ? 0.5 * (1 + cos(M_PI * progress)) : 0;
    return (float)(s->base_lr * factor);
}
