/* optim against float64 references written from the formulas: AdamW (Loshchilov & Hutter, as
 * torch.optim.AdamW states it) over 50 steps with fresh random gradients, the Hugging Face
 * schedules at their key steps as closed forms, clip_grad_norm_'s coefficient, and a squared norm
 * that does not depend on the thread count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include "optim.h"
#include "runtime.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 4099 /* not a multiple of the thread count or of the norm's chunk count */
#define STEPS 50
/* fp32 AdamW vs float64: each step's rounding is a few float ulps (6e-8) of the parameter scale;
 * over 50 steps the errors add to ~1e-6 of the tensor's largest element, so 1e-5 keeps a 10x margin,
 * while a misplaced eps, bias correction or decay changes the result by 1e-3 or more. */
#define ADAMW_TOL 1e-5

static uint64_t rng_state;

static double urand(double lo, double hi) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * 0x1p-53;
}

/* |got - want| over the largest |want|: moments pass through zero, so elementwise relative
 * errors would measure nothing but cancellation. */
static double max_err(const float *got, const double *want, int n)
{
    double err = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        err = fmax(err, fabs(got[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    return err / scale;
}

static void expect_close(const char *what, const float *got, const double *want, int n)
{
    const double err = max_err(got, want, n);
    printf("# %s: max error %.2e of the largest element\n", what, err);
    if (!(err < ADAMW_TOL)) fail_msg("%s: error %.3e > %.1e", what, err, ADAMW_TOL);
}

/* The textbook update in float64: decoupled decay, moments, bias-corrected step. */
static void ref_adamw(double *p, const double *g, double *m, double *v, int n, const sl_adamw *hp, int t, double lr)
{
    const double bc1 = 1 - pow(hp->beta1, t), bc2 = 1 - pow(hp->beta2, t);
    for (int i = 0; i < n; i++) {
        p[i] *= 1 - lr * hp->weight_decay;
        m[i] = hp->beta1 * m[i] + (1 - hp->beta1) * g[i];
        v[i] = hp->beta2 * v[i] + (1 - hp->beta2) * g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + hp->eps);
    }
}

static void check_adamw(double weight_decay)
{
    /* eps of the order of the smallest gradients, so its placement shows in the result. */
    const sl_adamw hp = {.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-3, .weight_decay = weight_decay};
    static float p[N], g[N], m[N], v[N];
    static double pd[N], gd[N], md[N], vd[N];
    rng_state = 7 + (uint64_t)(weight_decay * 1000);
    for (int i = 0; i < N; i++) {
        pd[i] = p[i] = (float)urand(-1, 1);
        md[i] = vd[i] = m[i] = v[i] = 0;
    }
    for (int t = 1; t <= STEPS; t++) {
        const float lr = (float)(0.02 * (1 + 0.5 * sin(t)));
        for (int i = 0; i < N; i++) /* magnitudes from 1e-4 to 1, both signs */
            gd[i] = g[i] = (float)(urand(-1, 1) * pow(10, urand(-4, 0)));
        adamw_step(p, g, m, v, N, &hp, t, lr);
        ref_adamw(pd, gd, md, vd, N, &hp, t, lr);
    }
    expect_close("param", p, pd, N);
    expect_close("exp_avg", m, md, N);
    expect_close("exp_avg_sq", v, vd, N);
}

static void adamw_with_weight_decay(void **state) { check_adamw(0.1); }
static void adamw_without_weight_decay(void **state) { check_adamw(0.0); }

/* Two calls over two ranges, one without decay, equal one reference with decay on the first range. */
static void adamw_decay_per_range(void **state)
{
    const sl_adamw on = {0.9, 0.999, 1e-8, 0.5}, off = {0.9, 0.999, 1e-8, 0.0};
    float p[8], g[8], m[8] = {0}, v[8] = {0};
    double pd[8], gd[8], md[8] = {0}, vd[8] = {0};
    rng_state = 3;
    for (int i = 0; i < 8; i++) pd[i] = p[i] = (float)urand(-1, 1), gd[i] = g[i] = (float)urand(-1, 1);
    adamw_step(p, g, m, v, 4, &on, 1, 0.1f);
    adamw_step(p + 4, g + 4, m + 4, v + 4, 4, &off, 1, 0.1f);
    ref_adamw(pd, gd, md, vd, 4, &on, 1, 0.1f);
    ref_adamw(pd + 4, gd + 4, md + 4, vd + 4, 4, &off, 1, 0.1f);
    expect_close("param, decay on the first range", p, pd, 8);
}

static void expect_lr(schedule_kind_t kind, int64_t warmup, int64_t total, int64_t step, double factor)
{
    const sl_schedule s = {.kind = kind, .base_lr = 3e-4f, .warmup_steps = warmup, .total_steps = total};
    const double want = (double)s.base_lr * factor, got = lr_at(&s, step);
    if (fabs(got - want) > 1e-7 * fabs(want) + 1e-12)
        fail_msg("kind %d warmup %lld total %lld step %lld: lr %.9g, want %.9g", kind, (long long)warmup,
                 (long long)total, (long long)step, got, want);
}

/* warmup 10, total 110: steps 0, 9, 10, 35 (a quarter of the decay), 60 (half), 110 (the end). */
static void schedules_at_key_steps(void **state)
{
    const int64_t steps[] = {0, 9, 10, 35, 60, 110};
    const double constant[] = {0, 0.9, 1, 1, 1, 1};
    const double linear[] = {0, 0.9, 1, 0.75, 0.5, 0};
    const double cosine[] = {0, 0.9, 1, 0.5 * (1 + M_SQRT1_2), 0.5, 0};
    for (int i = 0; i < 6; i++) {
        expect_lr(SCHEDULE_CONSTANT, 10, 110, steps[i], constant[i]);
        expect_lr(SCHEDULE_LINEAR, 10, 110, steps[i], linear[i]);
        expect_lr(SCHEDULE_COSINE, 10, 110, steps[i], cosine[i]);
    }
    /* No warmup: the first update uses the full rate; total == warmup: HF's max(1, ...) guard. */
    expect_lr(SCHEDULE_LINEAR, 0, 4, 0, 1);
    expect_lr(SCHEDULE_COSINE, 0, 4, 1, 0.5 * (1 + M_SQRT1_2));
    expect_lr(SCHEDULE_LINEAR, 5, 5, 5, 0);
    expect_lr(SCHEDULE_COSINE, 5, 5, 5, 1);
}

static void parse_cosine(void *arg) { *(schedule_kind_t *)arg = schedule_kind("cosine"); }
static void parse_unknown(void *arg) { *(schedule_kind_t *)arg = schedule_kind("exponential"); }

static void schedule_names(void **state)
{
    schedule_kind_t k = SCHEDULE_CONSTANT;
    char msg[256];
    assert_int_equal(rt_try(parse_cosine, &k, msg, sizeof msg), 1);
    assert_int_equal(k, SCHEDULE_COSINE);
    assert_int_equal(schedule_kind("linear"), SCHEDULE_LINEAR);
    assert_int_equal(schedule_kind("constant"), SCHEDULE_CONSTANT);
    assert_int_equal(rt_try(parse_unknown, &k, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "--schedule=exponential"));
    assert_non_null(strstr(msg, "constant, linear or cosine"));
}

static void clip_coefficient(void **state)
{
    assert_true(optim_clip_coef(2.0, 1.0) == (float)(1.0 / (2.0 + 1e-6)));
    assert_true(optim_clip_coef(0.5, 1.0) == 1.0f);
    assert_true(optim_clip_coef(0.0, 1.0) == 1.0f);
    assert_true(optim_clip_coef(1.0, 1.0) < 1.0f); /* torch clips at norm == max_norm too, by 1e-6 */
    float x[3] = {1, -2, 4};
    optim_scale(x, 3, 0.5f);
    assert_true(x[0] == 0.5f && x[1] == -1.0f && x[2] == 2.0f);
}

static void sq_norm_independent_of_threads(void **state)
{
    enum { M = 1000003 };
    float *g = malloc(M * sizeof *g);
    assert_non_null(g);
    rng_state = 11;
    long double ref = 0;
    for (int i = 0; i < M; i++) {
        g[i] = (float)urand(-1, 1);
        ref += (long double)g[i] * g[i];
    }
    omp_set_num_threads(1);
    const double one = optim_local_sq_norm(g, M);
    omp_set_num_threads(2);
    const double two = optim_local_sq_norm(g, M);
    assert_memory_equal(&one, &two, sizeof one);
    assert_true(fabs(one - (double)ref) < 1e-12 * (double)ref);
    assert_true(optim_global_norm(optim_local_sq_norm(g, M)) == sqrt(one)); /* one rank: the all-reduce is the identity */
    assert_true(optim_local_sq_norm(g, 0) == 0.0 && optim_local_sq_norm(g, 3) > 0.0);
    free(g);
}

static void finite_check(void **state)
{
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)i - 500.0f;
    assert_int_equal(optim_all_finite(x, 1000), 1);
    x[999] = NAN;
    assert_int_equal(optim_all_finite(x, 1000), 0);
    assert_int_equal(optim_all_finite(x, 999), 1);
    x[0] = -INFINITY;
    assert_int_equal(optim_all_finite(x, 999), 0);
}

int main(void)
{
    rt_init_serial("test_optim");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adamw_with_weight_decay), cmocka_unit_test(adamw_without_weight_decay),
        cmocka_unit_test(adamw_decay_per_range),   cmocka_unit_test(schedules_at_key_steps),
        cmocka_unit_test(schedule_names),          cmocka_unit_test(clip_coefficient),
        cmocka_unit_test(sq_norm_independent_of_threads), cmocka_unit_test(finite_check),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
