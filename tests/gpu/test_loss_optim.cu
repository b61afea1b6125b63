// test_loss_optim: the fused cross-entropy against k_cross_entropy_fwd / _bwd (LM-head width,
// small and odd vocabularies, ignored rows, rows offset by +-40, a logits pointer that rules out
// vector loads), the deterministic double sum, and the optimizer kernels against src/optim.c:
// AdamW equal bit for bit over three steps, the squared norm, scaling and the non-finite count.
#include "gpu_test.h"

#include "cuda/adamw.h"
#include "cuda/cross_entropy.h"
#include "kernels.h"
#include "optim.h"

typedef std::vector<float> vec;

#define SUM_RTOL 1e-12
#define N_PARAMS 1000003 // not a multiple of any block or grid size

static void dev_free(void *p) { GT_CUDA(cudaFree(p)); }

typedef struct {
    int T, V;
    int offset; // logits start this many floats into their buffer (1: not 16-byte aligned)
} ce_case;

static void check_cross_entropy(const ce_case &c)
{
    const size_t n = (size_t)c.T * c.V;
    vec logits = gt_random(n, -6.0, 6.0);
    std::vector<int32_t> target(c.T);
    for (int t = 0; t < c.T; t++) {
        for (int j = 0; j < c.V; j++) logits[(size_t)t * c.V + j] += (float)(40 * (t % 3 - 1)); // softmax must shift
        target[t] = t % 5 == 3 ? -1 : t % 7 == 1 ? c.V - 1 : t % 7 == 2 ? 0 : (int32_t)gt_uniform(0, c.V);
    }
    const float weight = 0.37f;

    vec padded(c.offset + n);
    memcpy(&padded[c.offset], logits.data(), n * sizeof(float));
    float *d_buf = gt_upload(padded);
    double *d_loss = gt_device<double>(c.T);
    int32_t *d_target = gt_upload(target);
    __nv_bfloat16 *d_dlogits = gt_device<__nv_bfloat16>(n);
    kc_cross_entropy(d_loss, d_dlogits, d_buf + c.offset, d_target, weight, c.T, c.V, 0);
    std::vector<double> loss_d = gt_download(d_loss, c.T);
    vec loss(loss_d.begin(), loss_d.end()), dlogits = gt_download_bf16(d_dlogits, n);
    GT_CUDA(cudaMemset(d_loss, 0xff, c.T * sizeof(double)));
    kc_cross_entropy(d_loss, NULL, d_buf + c.offset, d_target, weight, c.T, c.V, 0);
    std::vector<double> loss_only_d = gt_download(d_loss, c.T);
    vec loss_only(loss_only_d.begin(), loss_only_d.end());

    std::vector<double> want_loss(c.T);
    k_cross_entropy_fwd(want_loss.data(), logits.data(), target.data(), c.T, c.V);
    vec want_loss_f(want_loss.begin(), want_loss.end()), weights(c.T, weight), want_dlogits(n);
    k_cross_entropy_bwd(want_dlogits.data(), logits.data(), target.data(), weights.data(), c.T, c.V);

    char label[128];
    snprintf(label, sizeof label, "cross-entropy loss (T=%d V=%d, logits offset %d)", c.T, c.V, c.offset);
    gt_expect_close(label, loss, want_loss_f, GT_F32_RTOL);
    snprintf(label, sizeof label, "cross-entropy loss without gradient (T=%d V=%d, logits offset %d)", c.T, c.V, c.offset);
    gt_expect_close(label, loss_only, want_loss_f, GT_F32_RTOL);
    snprintf(label, sizeof label, "cross-entropy dlogits (T=%d V=%d, logits offset %d)", c.T, c.V, c.offset);
    gt_expect_close(label, dlogits, want_dlogits, GT_BF16_RTOL);
    dev_free(d_buf), dev_free(d_loss), dev_free(d_target), dev_free(d_dlogits);
}

// kc_sum_f64 against a double sum on the host, relative to the sum of magnitudes (the scale of
// any rounding, whatever the cancellation); twice, for the same bits.
static void check_sum(size_t n)
{
    vec x = gt_random(n, -1.0, 1.0);
    double want = 0, scale = 0;
    for (float v : x) want += v, scale += fabs(v);
    float *d_x = gt_upload(x);
    double *d_out = gt_device<double>(2);
    kc_sum_f64(d_out, d_x, (int64_t)n, 0);
    kc_sum_f64(d_out + 1, d_x, (int64_t)n, 0);
    std::vector<double> got = gt_download(d_out, 2);
    double err = fabs(got[0] - want) / (scale > 0 ? scale : 1);
    gt_check(err <= SUM_RTOL && !memcmp(&got[0], &got[1], sizeof(double)),
             "kc_sum_f64 of %zu values: %.17g vs %.17g on the host (error %.1e of the magnitudes, limit %.0e), "
             "repeated %s",
             n, got[0], want, err, SUM_RTOL, !memcmp(&got[0], &got[1], sizeof(double)) ? "identically" : "DIFFERENTLY");
    dev_free(d_x), dev_free(d_out);
}

// Gradients over many orders of magnitude, so the rounding of every operation matters.
static vec wide_gradients(size_t n)
{
    vec g(n);
    for (float &v : g) v = (float)(gt_uniform(-1.0, 1.0) * pow(10.0, gt_uniform(-6.0, 0.0)));
    return g;
}

static size_t bit_mismatches(const vec &a, const vec &b)
{
    size_t bad = 0;
    for (size_t i = 0; i < a.size(); i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return bad;
}

// Three consecutive steps with fresh gradients and a changing learning rate, on the whole buffer
// and then on a sub-range at an odd offset exempt from weight decay; the GPU's state must equal
// the CPU's bit for bit after every step.
static void check_adamw(void)
{
    const size_t n = N_PARAMS;
    sl_adamw hp = {0.9, 0.999, 1e-8, 0.01};
    vec param = gt_random(n, -1.0, 1.0), m(n, 0.0f), v(n, 0.0f);
    float *d_param = gt_upload(param), *d_m = gt_upload(m), *d_v = gt_upload(v), *d_grad = gt_device<float>(n);
    const float lrs[] = {1e-3f, 9e-4f, 7.5e-4f, 2e-4f};
    for (int64_t step = 1; step <= 4; step++) {
        const int sub = step == 4; // the last update: 1001 elements from element 7, no weight decay
        const size_t lo = sub ? 7 : 0, len = sub ? 1001 : n;
        if (sub) hp.weight_decay = 0.0;
        vec grad = wide_gradients(n);
        GT_CUDA(cudaMemcpy(d_grad, grad.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        adamw_step(&param[lo], &grad[lo], &m[lo], &v[lo], (int64_t)len, &hp, step, lrs[step - 1]);
        kc_adamw_step(d_param + lo, d_grad + lo, d_m + lo, d_v + lo, (int64_t)len, hp.beta1, hp.beta2, hp.eps,
                      hp.weight_decay, step, lrs[step - 1], 0);
        size_t bad_p = bit_mismatches(gt_download(d_param, n), param), bad_m = bit_mismatches(gt_download(d_m, n), m);
        size_t bad_v = bit_mismatches(gt_download(d_v, n), v);
        gt_check(bad_p == 0 && bad_m == 0 && bad_v == 0,
                 "AdamW step %lld (%zu elements from %zu, weight decay %g) equals adamw_step bit for bit: %zu params, "
                 "%zu m, %zu v of %zu differ",
                 (long long)step, len, lo, hp.weight_decay, bad_p, bad_m, bad_v, n);
    }
    dev_free(d_param), dev_free(d_m), dev_free(d_v), dev_free(d_grad);
}

static void check_sq_norm(void)
{
    vec g = wide_gradients(N_PARAMS);
    float *d_g = gt_upload(g);
    double *d_out = gt_device<double>(2);
    kc_sq_norm(d_out, d_g, N_PARAMS, 0);
    kc_sq_norm(d_out + 1, d_g, N_PARAMS, 0);
    std::vector<double> got = gt_download(d_out, 2);
    const double want = optim_local_sq_norm(g.data(), N_PARAMS), err = fabs(got[0] - want) / want;
    gt_check(err <= SUM_RTOL && !memcmp(&got[0], &got[1], sizeof(double)),
             "kc_sq_norm %.17g vs optim_local_sq_norm %.17g (relative error %.1e, limit %.0e), repeated %s", got[0],
             want, err, SUM_RTOL, !memcmp(&got[0], &got[1], sizeof(double)) ? "identically" : "DIFFERENTLY");
    dev_free(d_g), dev_free(d_out);
}

static void check_scale(void)
{
    vec x = wide_gradients(N_PARAMS), want = x;
    float *d_x = gt_upload(x);
    kc_scale_f32(d_x, N_PARAMS, 1.0f, 0);
    size_t bad_one = bit_mismatches(gt_download(d_x, N_PARAMS), x);
    kc_scale_f32(d_x, N_PARAMS, 0.37f, 0);
    optim_scale(want.data(), N_PARAMS, 0.37f);
    size_t bad = bit_mismatches(gt_download(d_x, N_PARAMS), want);
    gt_check(bad_one == 0 && bad == 0, "kc_scale_f32 equals optim_scale: %zu of %d differ after x1, %zu after x0.37",
             bad_one, N_PARAMS, bad);
    dev_free(d_x);
}

static void check_nonfinite(void)
{
    vec x = wide_gradients(N_PARAMS);
    float *d_x = gt_upload(x);
    int *d_count = gt_device<int>(1);
    kc_count_nonfinite(d_count, d_x, N_PARAMS, 0);
    const int clean = gt_download(d_count, 1)[0];
    const float nan = NAN, inf = INFINITY, ninf = -INFINITY;
    GT_CUDA(cudaMemcpy(d_x + 17, &nan, sizeof nan, cudaMemcpyHostToDevice));
    GT_CUDA(cudaMemcpy(d_x + 500000, &inf, sizeof inf, cudaMemcpyHostToDevice));
    GT_CUDA(cudaMemcpy(d_x + N_PARAMS - 1, &ninf, sizeof ninf, cudaMemcpyHostToDevice));
    kc_count_nonfinite(d_count, d_x, N_PARAMS, 0);
    const int planted = gt_download(d_count, 1)[0];
    gt_check(clean == 0 && planted == 3, "kc_count_nonfinite: %d in clean gradients (want 0), %d with a NaN, +Inf and -Inf planted (want 3)",
             clean, planted);
    dev_free(d_x), dev_free(d_count);
}

int main(void)
{
    gt_require_gpu();
    gt_seed(23);
    const ce_case ce[] = {{64, 128256, 0}, {37, 512, 0}, {37, 512, 1}, {11, 7, 0}};
    for (const ce_case &c : ce) check_cross_entropy(c);
    check_sum(N_PARAMS);
    check_sum(5);
    check_sum(0);
    check_adamw();
    check_sq_norm();
    check_scale();
    check_nonfinite();
    return gt_finish();
}
