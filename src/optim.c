/* optim: AdamW, clipping and schedules. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "comm.h"
#include "runtime.h"

/* Partial sums of the squared norm: a fixed count, so the summation order depends on n alone. */
#define NORM_CHUNKS 256

adamw_scalars adamw_step_scalars(const sl_adamw *hp, int64_t step, float lr)
{
    /* torch 1.13 _single_tensor_adamw: the scalars in double (Python floats), rounded to float
     * where torch hands them to a float tensor op. */
    const double bc1 = 1.0 - pow(hp->beta1, (double)step), bc2 = 1.0 - pow(hp->beta2, (double)step);
    adamw_scalars c;
    c.decay = (float)(1.0 - (double)lr * hp->weight_decay);
    c.beta1 = (float)hp->beta1, c.one_minus_beta1 = (float)(1.0 - hp->beta1);
    c.beta2 = (float)hp->beta2, c.one_minus_beta2 = (float)(1.0 - hp->beta2);
    c.bc2_sqrt = (float)sqrt(bc2), c.eps = (float)hp->eps, c.neg_step = (float)(-(double)lr / bc1);
    return c;
}

void adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, const sl_adamw *hp,
                int64_t step, float lr)
{
    const adamw_scalars c = adamw_step_scalars(hp, step, lr);
    /* Each element in fp32, in torch's order. */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        param[i] *= c.decay;
        m[i] = m[i] * c.beta1 + c.one_minus_beta1 * g;
        v[i] = v[i] * c.beta2 + c.one_minus_beta2 * g * g;
        param[i] += c.neg_step * m[i] / (sqrtf(v[i]) / c.bc2_sqrt + c.eps);
    }
}

double optim_local_sq_norm(const float *grad, int64_t n)
{
    double part[NORM_CHUNKS];
    const int64_t chunk = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < NORM_CHUNKS; c++) {
        const int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) s += (double)grad[i] * grad[i];
        part[c] = s;
    }
    double sq = 0;
    for (int c = 0; c < NORM_CHUNKS; c++) sq += part[c];
    return sq;
}

double optim_global_norm(double local_sq)
{
    double sq = local_sq;
    comm_allreduce_sum_f64(&sq, 1);
    return sqrt(sq);
}

float optim_clip_coef(double norm, double max_norm)
{
    const double c = max_norm / (norm + 1e-6);
    return (float)(c < 1.0 ? c : 1.0);
}

void optim_scale(float *x, int64_t n, float s)
{
    if (s == 1.0f) return;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

int optim_all_finite(const float *x, int64_t n)
{
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad == 0;
}

schedule_kind_t schedule_kind(const char *name)
{
    static const char *const names[] = {[SCHEDULE_CONSTANT] = "constant", [SCHEDULE_LINEAR] = "linear",
                                        [SCHEDULE_COSINE] = "cosine"};
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++)
        if (!strcmp(name, names[k])) return (schedule_kind_t)k;
    sl_fatal("--schedule=%s: unknown learning-rate schedule (expected constant, linear or cosine)", name);
}

/* Hugging Face's lr_lambda of get_{constant,linear,cosine}_schedule_with_warmup (num_cycles 0.5),
 * including its max(1, ...) guards, in double like the Python original. */
static double schedule_factor(const sl_schedule *s, int64_t step)
{
    if (step < s->warmup_steps) return (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
    const double span = (double)(s->total_steps - s->warmup_steps > 1 ? s->total_steps - s->warmup_steps : 1);
    const double progress = (double)(step - s->warmup_steps) / span;
    switch (s->kind) {
    case SCHEDULE_LINEAR: return fmax(0.0, (double)(s->total_steps - step) / span);
    case SCHEDULE_COSINE: return fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
    default: return 1.0;
    }
}

float lr_at(const sl_schedule *s, int64_t step)
{
    return (float)(s->base_lr * schedule_factor(s, step));
}
