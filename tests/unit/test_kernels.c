/* CPU kernels against naive float64 references written straight from the math: forwards compared
 * directly, backwards against central finite differences of the reference forward of the scalar
 * objective sum(R * out) with R random. Inputs are fresh random numbers from a fixed seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include "kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* fp32 kernel vs float64 reference: a few float ulps of the output scale, with margin for sums of
 * up to a hundred terms. */
#define FWD_RTOL 1e-5
/* Backward vs finite differences. Step 1e-5 on O(1) inputs leaves a truncation error ~h^2 = 1e-10
 * and a rounding error ~1e-16 / h = 1e-11 in the double difference quotient, so the difference is
 * the kernel's own fp32 error (~1e-6 of the gradient scale) and 1e-4 keeps a 100x margin; a wrong
 * term, sign or index shows up as an O(1) error. */
#define FD_STEP 1e-5
#define FD_RTOL 1e-4
/* Entries checked by finite differences per tensor (all of them in smaller tensors). */
#define FD_CHECKS 300

/* ---- helpers: random numbers, per-test allocations, comparisons ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double urand(double lo, double hi) { return lo + (hi - lo) * (rng_next() >> 11) * 0x1p-53; }

/* Everything a test allocates is freed by the teardown, so the tests read as the math. */
static void *allocs[256];
static int n_allocs;

static void *talloc(size_t bytes)
{
    assert_true(n_allocs < (int)(sizeof(allocs) / sizeof(allocs[0])));
    void *p = calloc(1, bytes ? bytes : 1);
    assert_non_null(p);
    return allocs[n_allocs++] = p;
}

static int free_allocs(void **state)
{
    (void)state;
    while (n_allocs) free(allocs[--n_allocs]);
    return 0;
}

static float *frand(int64_t n, double lo, double hi)
{
    float *x = talloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)urand(lo, hi);
    return x;
}

static float *fcopy(const float *x, int64_t n)
{
    float *y = talloc((size_t)n * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

static double *widen(const float *x, int64_t n)
{
    double *y = talloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static double *dalloc(int64_t n) { return talloc((size_t)n * sizeof(double)); }

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* max |got - want| relative to max |want|; the reference must not be all zeros. Written without
 * fmax, which would drop a NaN instead of failing on it. */
static void check_close(const char *what, const float *got, const double *want, int64_t n, double rtol)
{
    double err = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]), w = fabs(want[i]);
        if (!(e <= err)) err = e;
        if (!(w <= scale)) scale = w;
    }
    if (!(scale > 0.0)) fail_msg("%s: the reference is all zeros", what);
    if (!(err <= rtol * scale)) fail_msg("%s: max error %.3e relative to %.3e > %.1e", what, err / scale, scale, rtol);
}

/* Central differences of f(ctx) in each checked entry of param, against the kernel's gradient:
 * grad - grad0, since kernels accumulate into grad, which held grad0 before the call. */
static void check_gradient(const char *what, double (*f)(void *), void *ctx, double *param, int64_t n,
                           const float *grad, const float *grad0)
{
    int64_t checks = n < FD_CHECKS ? n : FD_CHECKS;
    float *got = talloc((size_t)checks * sizeof(float));
    double *want = dalloc(checks);
    for (int64_t c = 0; c < checks; c++) {
        int64_t i = checks == n ? c : (int64_t)(rng_next() % (uint64_t)n);
        double saved = param[i];
        param[i] = saved + FD_STEP;
        double up = f(ctx);
        param[i] = saved - FD_STEP;
        double down = f(ctx);
        param[i] = saved;
        want[c] = (up - down) / (2 * FD_STEP);
        got[c] = (float)((double)grad[i] - (grad0 ? grad0[i] : 0.0f));
    }
    check_close(what, got, want, checks, FD_RTOL);
}

/* ---- float64 references ---- */

static void ref_linear(double *out, const double *x, const double *w, const double *bias, int T, int K,
                       int N, double scale, int accumulate)
{
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = dot(x + (int64_t)t * K, w + (int64_t)n * K, K);
            double *o = out + (int64_t)t * N + n;
            *o = (accumulate ? *o : 0.0) + scale * s + (bias ? bias[n] : 0.0);
        }
}

static void ref_rmsnorm(double *out, const double *x, const double *w, int T, int D, double eps)
{
    for (int t = 0; t < T; t++) {
        const double *xr = x + (int64_t)t * D;
        double rstd = 1.0 / sqrt(dot(xr, xr, D) / D + eps);
        for (int i = 0; i < D; i++) out[(int64_t)t * D + i] = xr[i] * rstd * w[i];
    }
}

static void ref_rope(double *out, const double *x, const int32_t *pos, int T, int n_heads, int hd, double theta)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < hd / 2; i++) {
                int64_t a = ((int64_t)t * n_heads + h) * hd + i, b = a + hd / 2;
                double angle = pos[t] * pow(theta, -2.0 * i / hd);
                out[a] = x[a] * cos(angle) - x[b] * sin(angle);
                out[b] = x[b] * cos(angle) + x[a] * sin(angle);
            }
}

typedef struct {
    const int32_t *seq_start;
    int n_seqs, n_heads, n_kv_heads, hd;
} attn_geom;

/* out_i = sum_{j <= i in i's sequence} softmax_j(scale q_i . k_j) v_j, kv head h / (nh / nkv). */
static void ref_attention(double *out, double *lse, const double *q, const double *k, const double *v,
                          const attn_geom *g, double scale)
{
    int T = g->seq_start[g->n_seqs], qs = g->n_heads * g->hd, ks = g->n_kv_heads * g->hd;
    double *p = malloc((size_t)T * sizeof(double)); /* called per finite difference: not talloc */
    assert_non_null(p);
    for (int s = 0; s < g->n_seqs; s++)
        for (int h = 0; h < g->n_heads; h++)
            for (int i = g->seq_start[s]; i < g->seq_start[s + 1]; i++) {
                const double *qi = q + (int64_t)i * qs + h * g->hd;
                int64_t kv = (int64_t)(h / (g->n_heads / g->n_kv_heads)) * g->hd;
                double sum = 0.0;
                for (int j = g->seq_start[s]; j <= i; j++)
                    sum += p[j] = exp(scale * dot(qi, k + (int64_t)j * ks + kv, g->hd));
                for (int d = 0; d < g->hd; d++) {
                    double o = 0.0;
                    for (int j = g->seq_start[s]; j <= i; j++) o += p[j] * v[(int64_t)j * ks + kv + d];
                    out[(int64_t)i * qs + h * g->hd + d] = o / sum;
                }
                lse[(int64_t)h * T + i] = log(sum);
            }
    free(p);
}

static void ref_swiglu(double *out, const double *gate, const double *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0 + exp(-gate[i])) * up[i];
}

static void ref_cross_entropy(double *loss, const double *logits, const int32_t *target, int T, int V)
{
    for (int t = 0; t < T; t++) {
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += exp(logits[(int64_t)t * V + j]);
        loss[t] = target[t] < 0 ? 0.0 : log(sum) - logits[(int64_t)t * V + target[t]];
    }
}

/* ---- linear ---- */

enum { LT = 7, LK = 12, LN = 9 };

static void test_linear_fwd(void **state)
{
    rng_seed(1);
    float *x = frand(LT * LK, -1, 1), *w = frand(LN * LK, -1, 1), *b = frand(LN, -1, 1);
    double *xd = widen(x, LT * LK), *wd = widen(w, LN * LK), *bd = widen(b, LN), *want = dalloc(LT * LN);
    float *out = talloc(LT * LN * sizeof(float));

    /* accumulate = 0 must not read out: NaN there must not leak through. */
    for (int i = 0; i < LT * LN; i++) out[i] = NAN;
    k_linear_fwd(out, x, w, b, LT, LK, LN, 1.0f, 0);
    ref_linear(want, xd, wd, bd, LT, LK, LN, 1.0, 0);
    check_close("bias, scale 1", out, want, LT * LN, FWD_RTOL);

    for (int i = 0; i < LT * LN; i++) out[i] = NAN;
    k_linear_fwd(out, x, w, NULL, LT, LK, LN, 0.75f, 0);
    ref_linear(want, xd, wd, NULL, LT, LK, LN, 0.75, 0);
    check_close("no bias, scale 0.75", out, want, LT * LN, FWD_RTOL);

    float *acc = frand(LT * LN, -1, 1);
    double *acc_want = widen(acc, LT * LN);
    k_linear_fwd(acc, x, w, b, LT, LK, LN, 0.5f, 1);
    ref_linear(acc_want, xd, wd, bd, LT, LK, LN, 0.5, 1);
    check_close("bias, scale 0.5, accumulate", acc, acc_want, LT * LN, FWD_RTOL);
}

typedef struct {
    double *x, *w, *b, *out, *R;
    double scale;
} linear_case;

static double linear_objective(void *c)
{
    linear_case *l = c;
    ref_linear(l->out, l->x, l->w, l->b, LT, LK, LN, l->scale, 0);
    return dot(l->R, l->out, LT * LN);
}

static void test_linear_bwd(void **state)
{
    rng_seed(2);
    const float scale = 0.5f;
    float *x = frand(LT * LK, -1, 1), *w = frand(LN * LK, -1, 1), *b = frand(LN, -1, 1);
    float *R = frand(LT * LN, -1, 1);
    float *dx0 = frand(LT * LK, -1, 1), *dw0 = frand(LN * LK, -1, 1), *db0 = frand(LN, -1, 1);
    float *dx = fcopy(dx0, LT * LK), *dw = fcopy(dw0, LN * LK), *db = fcopy(db0, LN);
    k_linear_bwd(dx, dw, db, R, x, w, LT, LK, LN, scale);

    linear_case l = {widen(x, LT * LK), widen(w, LN * LK), widen(b, LN), dalloc(LT * LN), widen(R, LT * LN), scale};
    check_gradient("dx", linear_objective, &l, l.x, LT * LK, dx, dx0);
    check_gradient("dw", linear_objective, &l, l.w, LN * LK, dw, dw0);
    check_gradient("dbias", linear_objective, &l, l.b, LN, db, db0);
}

/* ---- rmsnorm ---- */

enum { RT = 5, RD = 24 };
#define RMS_EPS 1e-5f

typedef struct {
    double *x, *w, *out, *R;
} rmsnorm_case;

static double rmsnorm_objective(void *c)
{
    rmsnorm_case *r = c;
    ref_rmsnorm(r->out, r->x, r->w, RT, RD, RMS_EPS);
    return dot(r->R, r->out, RT * RD);
}

static void test_rmsnorm(void **state)
{
    rng_seed(3);
    float *x = frand(RT * RD, -2, 2), *w = frand(RD, 0.5, 1.5), *R = frand(RT * RD, -1, 1);
    float *out = talloc(RT * RD * sizeof(float)), *rstd = talloc(RT * sizeof(float));
    rmsnorm_case r = {widen(x, RT * RD), widen(w, RD), dalloc(RT * RD), widen(R, RT * RD)};

    k_rmsnorm_fwd(out, rstd, x, w, RT, RD, RMS_EPS);
    rmsnorm_objective(&r);
    check_close("forward", out, r.out, RT * RD, FWD_RTOL);

    float *dx0 = frand(RT * RD, -1, 1), *dw0 = frand(RD, -1, 1);
    float *dx = fcopy(dx0, RT * RD), *dw = fcopy(dw0, RD), *dx_frozen = fcopy(dx0, RT * RD);
    k_rmsnorm_bwd(dx, dw, R, x, w, rstd, RT, RD);
    check_gradient("dx", rmsnorm_objective, &r, r.x, RT * RD, dx, dx0);
    check_gradient("dw", rmsnorm_objective, &r, r.w, RD, dw, dw0);

    /* Frozen norm weights (dw NULL) leave dx exactly as before. */
    k_rmsnorm_bwd(dx_frozen, NULL, R, x, w, rstd, RT, RD);
    assert_memory_equal(dx_frozen, dx, RT * RD * sizeof(float));
}

/* ---- rope ---- */

enum { PT = 6, PH = 3, PD = 16 };
#define THETA 10000.0

typedef struct {
    double *x, *out, *R;
    const int32_t *pos;
} rope_case;

static double rope_objective(void *c)
{
    rope_case *r = c;
    ref_rope(r->out, r->x, r->pos, PT, PH, PD, THETA);
    return dot(r->R, r->out, PT * PH * PD);
}

static void test_rope(void **state)
{
    rng_seed(4);
    enum { N = PT * PH * PD };
    /* Long positions too, where float angles would already be off. */
    static const int32_t pos[PT] = {0, 1, 7, 300, 4095, 2};
    float *x = frand(N, -1, 1), *R = frand(N, -1, 1);
    rope_case r = {widen(x, N), dalloc(N), widen(R, N), pos};

    float *cs = talloc((size_t)4096 * PD * 4);
    k_rope_table(cs, 4096, PD, &(k_rope_params){.theta = THETA});
    float *y = fcopy(x, N);
    k_rope(y, pos, PT, PH, PD, cs, 0);
    rope_objective(&r);
    check_close("forward", y, r.out, N, FWD_RTOL);

    k_rope(y, pos, PT, PH, PD, cs, 1);
    check_close("inverse undoes forward", y, r.x, N, FWD_RTOL);

    /* The backward of out = M x is M^T dout: the inverse rotation applied to R. */
    float *dx = fcopy(R, N);
    k_rope(dx, pos, PT, PH, PD, cs, 1);
    check_gradient("dx", rope_objective, &r, r.x, N, dx, NULL);
}

/* ---- attention ---- */

/* GQA (two query heads per kv head) on two packed sequences, the first longer than one block of
 * query rows in the kernel, so block edges are crossed. */
enum { AH = 4, AKV = 2, AD = 8, AT = 107, AQS = AH * AD, AKS = AKV * AD };
static const int32_t ATTN_SEQS[] = {0, 70, AT};
static const attn_geom ATTN = {ATTN_SEQS, 2, AH, AKV, AD};

typedef struct {
    double *q, *k, *v, *out, *lse, *R;
} attention_case;

static double attn_scale(int hd) { return 1.0 / sqrt(hd); }

static double attention_objective(void *c)
{
    attention_case *a = c;
    ref_attention(a->out, a->lse, a->q, a->k, a->v, &ATTN, attn_scale(AD));
    return dot(a->R, a->out, AT * AQS);
}

typedef struct {
    float *out, *lse, *dq, *dk, *dv;
} attn_result;

/* Forward, then backward of sum(dout * out) into zeroed gradients. */
static attn_result run_attention(const float *q, const float *k, const float *v, const float *dout,
                                 const attn_geom *g)
{
    int T = g->seq_start[g->n_seqs], qs = g->n_heads * g->hd, ks = g->n_kv_heads * g->hd;
    float scale = (float)attn_scale(g->hd);
    attn_result r = {talloc((size_t)T * qs * 4), talloc((size_t)g->n_heads * T * 4), talloc((size_t)T * qs * 4),
                     talloc((size_t)T * ks * 4), talloc((size_t)T * ks * 4)};
    k_attention_fwd(r.out, r.lse, q, k, v, g->seq_start, g->n_seqs, g->n_heads, g->n_kv_heads, g->hd, scale);
    k_attention_bwd(r.dq, r.dk, r.dv, dout, r.out, r.lse, q, k, v, g->seq_start, g->n_seqs, g->n_heads,
                    g->n_kv_heads, g->hd, scale);
    return r;
}

static void test_attention_fwd(void **state)
{
    rng_seed(5);
    float *q = frand(AT * AQS, -1, 1), *k = frand(AT * AKS, -1, 1), *v = frand(AT * AKS, -1, 1);
    float *out = talloc(AT * AQS * 4), *lse = talloc(AH * AT * 4);
    double *want = dalloc(AT * AQS), *want_lse = dalloc(AH * AT);
    k_attention_fwd(out, lse, q, k, v, ATTN_SEQS, 2, AH, AKV, AD, (float)attn_scale(AD));
    ref_attention(want, want_lse, widen(q, AT * AQS), widen(k, AT * AKS), widen(v, AT * AKS), &ATTN, attn_scale(AD));
    check_close("out", out, want, AT * AQS, FWD_RTOL);
    check_close("lse", lse, want_lse, AH * AT, FWD_RTOL);
}

static void test_attention_bwd(void **state)
{
    rng_seed(6);
    float *q = frand(AT * AQS, -1, 1), *k = frand(AT * AKS, -1, 1), *v = frand(AT * AKS, -1, 1);
    float *R = frand(AT * AQS, -1, 1);
    float *out = talloc(AT * AQS * 4), *lse = talloc(AH * AT * 4);
    float *dq0 = frand(AT * AQS, -1, 1), *dk0 = frand(AT * AKS, -1, 1), *dv0 = frand(AT * AKS, -1, 1);
    float *dq = fcopy(dq0, AT * AQS), *dk = fcopy(dk0, AT * AKS), *dv = fcopy(dv0, AT * AKS);
    float scale = (float)attn_scale(AD);
    k_attention_fwd(out, lse, q, k, v, ATTN_SEQS, 2, AH, AKV, AD, scale);
    k_attention_bwd(dq, dk, dv, R, out, lse, q, k, v, ATTN_SEQS, 2, AH, AKV, AD, scale);

    attention_case a = {widen(q, AT * AQS), widen(k, AT * AKS), widen(v, AT * AKS), dalloc(AT * AQS),
                        dalloc(AH * AT), widen(R, AT * AQS)};
    check_gradient("dq", attention_objective, &a, a.q, AT * AQS, dq, dq0);
    check_gradient("dk", attention_objective, &a, a.k, AT * AKS, dk, dk0);
    check_gradient("dv", attention_objective, &a, a.v, AT * AKS, dv, dv0);
}

/* A sequence's results are bit-identical whether it runs alone or packed with another. */
static void test_attention_packed_equals_alone(void **state)
{
    rng_seed(7);
    float *q = frand(AT * AQS, -1, 1), *k = frand(AT * AKS, -1, 1), *v = frand(AT * AKS, -1, 1);
    float *dout = frand(AT * AQS, -1, 1);
    attn_result packed = run_attention(q, k, v, dout, &ATTN);
    for (int s = 0; s < ATTN.n_seqs; s++) {
        int t0 = ATTN_SEQS[s], L = ATTN_SEQS[s + 1] - t0;
        int32_t one[2] = {0, L};
        attn_geom g = {one, 1, AH, AKV, AD};
        attn_result alone = run_attention(q + t0 * AQS, k + t0 * AKS, v + t0 * AKS, dout + t0 * AQS, &g);
        assert_memory_equal(alone.out, packed.out + t0 * AQS, (size_t)L * AQS * 4);
        assert_memory_equal(alone.dq, packed.dq + t0 * AQS, (size_t)L * AQS * 4);
        assert_memory_equal(alone.dk, packed.dk + t0 * AKS, (size_t)L * AKS * 4);
        assert_memory_equal(alone.dv, packed.dv + t0 * AKS, (size_t)L * AKS * 4);
        for (int h = 0; h < AH; h++) assert_memory_equal(alone.lse + h * L, packed.lse + h * AT + t0, (size_t)L * 4);
    }
}

/* ---- swiglu ---- */

enum { SN = 60 };

typedef struct {
    double *gate, *up, *out, *R;
} swiglu_case;

static double swiglu_objective(void *c)
{
    swiglu_case *s = c;
    ref_swiglu(s->out, s->gate, s->up, SN);
    return dot(s->R, s->out, SN);
}

static void test_swiglu(void **state)
{
    rng_seed(8);
    /* Gates out to +-8 reach both tails of the sigmoid. */
    float *gate = frand(SN, -8, 8), *up = frand(SN, -2, 2), *R = frand(SN, -1, 1), *out = talloc(SN * 4);
    swiglu_case s = {widen(gate, SN), widen(up, SN), dalloc(SN), widen(R, SN)};
    k_swiglu_fwd(out, gate, up, SN);
    swiglu_objective(&s);
    check_close("forward", out, s.out, SN, FWD_RTOL);

    float *dg0 = frand(SN, -1, 1), *du0 = frand(SN, -1, 1), *dg = fcopy(dg0, SN), *du = fcopy(du0, SN);
    k_swiglu_bwd(dg, du, R, gate, up, SN, 1);
    check_gradient("dgate", swiglu_objective, &s, s.gate, SN, dg, dg0);
    check_gradient("dup", swiglu_objective, &s, s.up, SN, du, du0);
}

/* ---- cross-entropy ---- */

enum { CT = 6, CV = 37 };
static const int32_t CE_TARGET[CT] = {3, -1, 0, CV - 1, -1, 17};

typedef struct {
    double *logits, *loss;
    const double *weight; /* NULL: 1 */
} ce_case;

/* sum_t weight[t] * loss[t]: its gradient is the weighted dlogits. */
static double ce_objective(void *c)
{
    ce_case *e = c;
    ref_cross_entropy(e->loss, e->logits, CE_TARGET, CT, CV);
    double s = 0.0;
    for (int t = 0; t < CT; t++) s += (e->weight ? e->weight[t] : 1.0) * e->loss[t];
    return s;
}

static void test_cross_entropy(void **state)
{
    rng_seed(9);
    float *logits = frand(CT * CV, -3, 3), *weight = frand(CT, 0.2, 2);
    /* A row shifted by 100 overflows exp() in float unless the maximum is taken off first. */
    for (int j = 0; j < CV; j++) logits[2 * CV + j] += 100.0f;
    ce_case e = {widen(logits, CT * CV), dalloc(CT), NULL};
    double loss[CT];
    k_cross_entropy_fwd(loss, logits, CE_TARGET, CT, CV);
    ce_objective(&e);
    /* Both sides compute in double; only the summation order differs. */
    for (int t = 0; t < CT; t++)
        if (!(fabs(loss[t] - e.loss[t]) <= 1e-12 * fabs(e.loss[t])) || (CE_TARGET[t] < 0 && loss[t] != 0.0))
            fail_msg("row %d: loss %.17g, want %.17g", t, loss[t], e.loss[t]);

    float *dlogits = talloc(CT * CV * 4);
    for (int i = 0; i < CT * CV; i++) dlogits[i] = NAN; /* overwritten, not accumulated */
    k_cross_entropy_bwd(dlogits, logits, CE_TARGET, NULL, CT, CV);
    check_gradient("dlogits, no weights", ce_objective, &e, e.logits, CT * CV, dlogits, NULL);
    k_cross_entropy_bwd(dlogits, logits, CE_TARGET, weight, CT, CV);
    e.weight = widen(weight, CT);
    check_gradient("dlogits, row weights", ce_objective, &e, e.logits, CT * CV, dlogits, NULL);
    for (int t = 0; t < CT; t++)
        for (int j = 0; CE_TARGET[t] < 0 && j < CV; j++) assert_true(dlogits[t * CV + j] == 0.0f);
}

/* ---- embedding ---- */

static void test_embedding(void **state)
{
    rng_seed(10);
    enum { V = 10, D = 5, T = 8 };
    static const int32_t ids[T] = {3, 0, 9, 3, 7, 7, 1, 3};
    float *table = frand(V * D, -1, 1), *out = talloc(T * D * 4);
    k_embedding_fwd(out, table, ids, T, D);
    for (int t = 0; t < T; t++) assert_memory_equal(out + t * D, table + ids[t] * D, D * 4);
}

/* ---- the number of threads does not change a bit ---- */

typedef struct {
    const char *name;
    const void *data;
    size_t bytes;
} kernel_output;

/* The kernels with parallel reductions or task splits, on inputs drawn from one seed: sizes give
 * each thread several column blocks (linear, rmsnorm) or several (sequence, head) tasks. */
static int run_reducing_kernels(kernel_output *o)
{
    enum { T = 300, K = 40, N = 200 };
    rng_seed(11);
    float *x = frand(T * K, -1, 1), *w = frand(N * K, -1, 1), *dout = frand(T * N, -1, 1);
    float *dx = talloc(T * K * 4), *dw = talloc(N * K * 4), *db = talloc(N * 4);
    k_linear_bwd(dx, dw, db, dout, x, w, T, K, N, 0.5f);

    float *nw = frand(N, 0.5, 1.5), *y = talloc(T * N * 4), *rstd = talloc(T * 4);
    float *ndx = talloc(T * N * 4), *ndw = talloc(N * 4);
    k_rmsnorm_fwd(y, rstd, dout, nw, T, N, RMS_EPS);
    k_rmsnorm_bwd(ndx, ndw, y, dout, nw, rstd, T, N);

    float *q = frand(AT * AQS, -1, 1), *k = frand(AT * AKS, -1, 1), *v = frand(AT * AKS, -1, 1);
    attn_result a = run_attention(q, k, v, frand(AT * AQS, -1, 1), &ATTN);

    int n = 0;
    o[n++] = (kernel_output){"linear dx", dx, T * K * 4};
    o[n++] = (kernel_output){"linear dw", dw, N * K * 4};
    o[n++] = (kernel_output){"linear dbias", db, N * 4};
    o[n++] = (kernel_output){"rmsnorm dx", ndx, T * N * 4};
    o[n++] = (kernel_output){"rmsnorm dw", ndw, N * 4};
    o[n++] = (kernel_output){"attention out", a.out, AT * AQS * 4};
    o[n++] = (kernel_output){"attention lse", a.lse, AH * AT * 4};
    o[n++] = (kernel_output){"attention dq", a.dq, AT * AQS * 4};
    o[n++] = (kernel_output){"attention dk", a.dk, AT * AKS * 4};
    o[n++] = (kernel_output){"attention dv", a.dv, AT * AKS * 4};
    return n;
}

static void test_threads_do_not_change_results(void **state)
{
    kernel_output one[16], two[16];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    int n = run_reducing_kernels(one);
    omp_set_num_threads(2);
    run_reducing_kernels(two);
    omp_set_num_threads(saved);
    for (int i = 0; i < n; i++)
        if (memcmp(one[i].data, two[i].data, one[i].bytes) != 0) fail_msg("%s differs with 2 threads", one[i].name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_linear_fwd, free_allocs),
        cmocka_unit_test_teardown(test_linear_bwd, free_allocs),
        cmocka_unit_test_teardown(test_rmsnorm, free_allocs),
        cmocka_unit_test_teardown(test_rope, free_allocs),
        cmocka_unit_test_teardown(test_attention_fwd, free_allocs),
        cmocka_unit_test_teardown(test_attention_bwd, free_allocs),
        cmocka_unit_test_teardown(test_attention_packed_equals_alone, free_allocs),
        cmocka_unit_test_teardown(test_swiglu, free_allocs),
        cmocka_unit_test_teardown(test_cross_entropy, free_allocs),
        cmocka_unit_test_teardown(test_embedding, free_allocs),
        cmocka_unit_test_teardown(test_threads_do_not_change_results, free_allocs),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
