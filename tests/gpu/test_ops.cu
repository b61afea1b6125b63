// test_ops: the CUDA backend's elementwise and normalisation kernels (kernels/cuda/ops.h) against their
// CPU twins (kernels/cpu) on real shapes (LLaMA-3 8B: T = 2048, D = 4096, F = 14336, 32 heads of 128,
// positions to 8191) and odd ones (scalar paths, one token, tails after the 16-byte groups). Copies, casts
// and dropout masks must match exactly; arithmetic within the bf16 or fp32 tolerance.
#include "gpu_test.h"

#include <string>

#include <initializer_list>
#include <utility>

#include "cuda/ops.h"
#include "kernels.h"
#include "rng.h"

typedef __nv_bfloat16 bf16;

static cudaStream_t S;

static const char *name(const char *fmt, ...)
{
    static char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

static void release(std::initializer_list<void *> buffers)
{
    for (void *p : buffers) GT_CUDA(cudaFree(p));
}

static float round_bf16(float f) { return gt_from_bf16_bits(gt_to_bf16_bits(f)); }

static std::vector<float> random_bf16(size_t n, double lo, double hi)
{
    std::vector<float> v = gt_random(n, lo, hi);
    gt_round_bf16(v);
    return v;
}

// Magnitudes in [0.25, 1.25), either sign: never zero, so a dropped or an unchanged element shows.
static std::vector<float> random_nonzero_bf16(size_t n)
{
    std::vector<float> v = gt_random(n, -1, 1);
    for (float &x : v) x = round_bf16(x < 0 ? x - 0.25f : x + 0.25f);
    return v;
}

static std::vector<float> from(const std::vector<float> &v, size_t first)
{
    return std::vector<float>(v.begin() + (ptrdiff_t)first, v.end());
}

// Exact results: every element bit for bit (a NaN left by the poison never equals).
static void expect_equal(const char *what, const std::vector<float> &got, const std::vector<float> &want)
{
    size_t bad = got.size() == want.size() ? 0 : want.size();
    for (size_t i = 0; i < want.size() && i < got.size(); i++) bad += memcmp(&got[i], &want[i], sizeof(float)) != 0;
    gt_check(bad == 0, "%s: %zu of %zu elements differ", what, bad, want.size());
}

// Rows [T, width] as the last width columns of [T, ld] rows over a background, and back.
static std::vector<float> widen(const std::vector<float> &x, int T, int width, int ld, std::vector<float> wide)
{
    for (int t = 0; t < T; t++)
        memcpy(&wide[(size_t)t * ld + (ld - width)], &x[(size_t)t * width], (size_t)width * sizeof(float));
    return wide;
}

static std::vector<float> narrow(const std::vector<float> &wide, int T, int width, int ld)
{
    std::vector<float> x((size_t)T * width);
    for (int t = 0; t < T; t++)
        memcpy(&x[(size_t)t * width], &wide[(size_t)t * ld + (ld - width)], (size_t)width * sizeof(float));
    return x;
}

// The columns of [T, ld] rows that are not the last width must keep the background.
static void expect_background(const char *what, const std::vector<float> &wide, const std::vector<float> &background,
                              int T, int width, int ld)
{
    if (ld == width) return;
    expect_equal(name("%s: the other columns of rows %d apart", what, ld),
                 widen(narrow(wide, T, width, ld), T, width, ld, background), wide);
}

// T rows of `heads` vectors of D, rows ld apart (heads > 1: Qwen3's per-head norms on a slice of q/k/v).
static void test_rmsnorm(int T, int heads, int D, int ld, float eps)
{
    const int width = heads * D;
    const size_t n = (size_t)T * width, n_wide = (size_t)T * ld;
    std::vector<float> x = random_bf16(n, -2, 2), w = random_bf16((size_t)D, 0.5, 1.5), out(n), rstd((size_t)T * heads);
    k_rmsnorm_fwd(out.data(), rstd.data(), x.data(), w.data(), T * heads, D, eps);
    const std::vector<float> background = random_bf16(n_wide, -1, 1);
    bf16 *d_x = gt_upload_bf16(widen(x, T, width, ld, background)), *d_w = gt_upload_bf16(w);
    bf16 *d_out = gt_upload_bf16(widen(std::vector<float>(n, NAN), T, width, ld, background));
    float *d_rstd = gt_device<float>((size_t)T * heads);
    kc_rmsnorm_fwd(d_out + (ld - width), d_rstd, d_x + (ld - width), d_w, T, heads, D, ld, eps, S);
    const std::string fwd = name("rmsnorm forward T=%d heads=%d D=%d ld=%d", T, heads, D, ld);
    std::vector<float> wide = gt_download_bf16(d_out, n_wide);
    gt_expect_close(name("%s: out", fwd.c_str()), narrow(wide, T, width, ld), out, GT_BF16_RTOL);
    expect_background(fwd.c_str(), wide, background, T, width, ld);
    gt_expect_close(name("%s: rstd", fwd.c_str()), gt_download(d_rstd, (size_t)T * heads), rstd, GT_F32_RTOL);

    // Backward from the CPU's statistics, so that only the backward's own arithmetic differs; then in
    // place (dx is dout), as the per-head norms run.
    std::vector<float> dout = random_bf16(n, -1, 1), dx0 = random_bf16(n, -0.5, 0.5);
    bf16 *d_dout = gt_upload_bf16(widen(dout, T, width, ld, background));
    float *d_rstd_cpu = gt_upload(rstd);
    for (int mode = 0; mode < 3; mode++) {
        const int accumulate = mode == 1, in_place = mode == 2;
        std::vector<float> want = accumulate ? dx0 : std::vector<float>(n, 0.0f);
        k_rmsnorm_bwd(want.data(), NULL, dout.data(), x.data(), w.data(), rstd.data(), T * heads, D);
        // poisoned unless accumulating: must be overwritten
        bf16 *d_dx = in_place ? d_dout : gt_upload_bf16(widen(accumulate ? dx0 : std::vector<float>(n, NAN), T, width,
                                                              ld, background));
        kc_rmsnorm_bwd(d_dx + (ld - width), d_dout + (ld - width), d_x + (ld - width), d_w, d_rstd_cpu, T, heads, D,
                       ld, accumulate, S);
        const std::string bwd = name("rmsnorm backward T=%d heads=%d D=%d ld=%d%s", T, heads, D, ld,
                               accumulate ? " accumulating" : in_place ? " in place" : "");
        wide = gt_download_bf16(d_dx, n_wide);
        gt_expect_close(name("%s: dx", bwd.c_str()), narrow(wide, T, width, ld), want, GT_BF16_RTOL);
        expect_background(bwd.c_str(), wide, background, T, width, ld);
        if (!in_place) release({d_dx});
    }
    release({d_x, d_w, d_out, d_rstd, d_dout, d_rstd_cpu});
}

// T rows of n_heads heads, rows ld apart (q's and k's heads side by side in the fused q/k/v rows).
static void test_rope(int T, int n_heads, int head_dim, int ld, double theta, int max_pos)
{
    const int width = n_heads * head_dim;
    const size_t n = (size_t)T * width, n_wide = (size_t)T * ld;
    std::vector<int32_t> pos((size_t)T);
    for (int32_t &p : pos) p = (int32_t)gt_uniform(0, max_pos);
    pos[(size_t)T - 1] = max_pos - 1; // the table's last row
    std::vector<float> table((size_t)max_pos * (head_dim / 2) * 2);
    k_rope_params rope = {};
    rope.theta = theta;
    k_rope_table(table.data(), max_pos, head_dim, &rope);
    int32_t *d_pos = gt_upload(pos);
    float *d_table = gt_upload(table);
    const std::vector<float> background = random_bf16(n_wide, -1, 1);
    for (int inverse = 0; inverse < 2; inverse++) {
        std::vector<float> x = random_bf16(n, -1, 1), want = x;
        k_rope(want.data(), pos.data(), T, n_heads, head_dim, table.data(), inverse);
        bf16 *d_x = gt_upload_bf16(widen(x, T, width, ld, background));
        kc_rope(d_x + (ld - width), ld, d_pos, T, n_heads, head_dim, d_table, inverse, S);
        const std::string what = name("rope%s T=%d heads=%d head_dim=%d ld=%d theta=%g", inverse ? " inverse" : "", T,
                                n_heads, head_dim, ld, theta);
        std::vector<float> wide = gt_download_bf16(d_x, n_wide);
        gt_expect_close(what.c_str(), narrow(wide, T, width, ld), want, GT_BF16_RTOL);
        expect_background(what.c_str(), wide, background, T, width, ld);
        release({d_x});
    }
    release({d_pos, d_table});
}

// offset = 1 shifts every pointer by one element off 16-byte alignment: the scalar path on all of n.
static void test_swiglu(int64_t n, int offset)
{
    const size_t m = (size_t)n + (size_t)offset;
    std::vector<float> gate = random_bf16(m, -6, 6), up = random_bf16(m, -2, 2), dout = random_bf16(m, -1, 1);
    std::vector<float> out(m), dgate(m, 0.0f), dup(m, 0.0f);
    k_swiglu_fwd(out.data(), gate.data(), up.data(), (int64_t)m);
    k_swiglu_bwd(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), (int64_t)m, 0);
    bf16 *d_gate = gt_upload_bf16(gate), *d_up = gt_upload_bf16(up), *d_dout = gt_upload_bf16(dout);
    bf16 *d_out = gt_device<bf16>(m), *d_dgate = gt_device<bf16>(m), *d_dup = gt_device<bf16>(m);
    kc_swiglu_fwd(d_out + offset, d_gate + offset, d_up + offset, n, S);
    kc_swiglu_bwd(d_dgate + offset, d_dup + offset, d_dout + offset, d_gate + offset, d_up + offset, n, S);
    const char *shape = offset ? " (unaligned)" : "";
    gt_expect_close(name("swiglu forward n=%lld%s", (long long)n, shape), from(gt_download_bf16(d_out, m), offset),
                    from(out, offset), GT_BF16_RTOL);
    gt_expect_close(name("swiglu backward n=%lld%s: dgate", (long long)n, shape),
                    from(gt_download_bf16(d_dgate, m), offset), from(dgate, offset), GT_BF16_RTOL);
    gt_expect_close(name("swiglu backward n=%lld%s: dup", (long long)n, shape),
                    from(gt_download_bf16(d_dup, m), offset), from(dup, offset), GT_BF16_RTOL);
    // In place, as the layer calls it: the gradients overwrite gate and up, bit for bit the same.
    kc_swiglu_bwd(d_gate + offset, d_up + offset, d_dout + offset, d_gate + offset, d_up + offset, n, S);
    gt_check(from(gt_download_bf16(d_gate, m), offset) == from(gt_download_bf16(d_dgate, m), offset) &&
                 from(gt_download_bf16(d_up, m), offset) == from(gt_download_bf16(d_dup, m), offset),
             "%s", name("swiglu backward n=%lld%s in place over gate and up: the same bits", (long long)n, shape));
    release({d_gate, d_up, d_dout, d_out, d_dgate, d_dup});
}

static void test_embedding(int V, int T, int D)
{
    std::vector<float> table = random_bf16((size_t)V * D, -1, 1), want((size_t)T * D);
    std::vector<int32_t> ids((size_t)T);
    for (int32_t &id : ids) id = (int32_t)gt_uniform(0, V);
    ids[0] = V - 1;
    k_embedding_fwd(want.data(), table.data(), ids.data(), T, D);
    bf16 *d_table = gt_upload_bf16(table), *d_out = gt_device<bf16>((size_t)T * D);
    int32_t *d_ids = gt_upload(ids);
    kc_embedding_fwd(d_out, d_table, d_ids, T, D, S);
    expect_equal(name("embedding V=%d T=%d D=%d", V, T, D), gt_download_bf16(d_out, (size_t)T * D), want);
    release({d_table, d_out, d_ids});
}

// n distinct rows of R (a partial Fisher-Yates shuffle), as pooling picks one row per sequence.
static void test_rows(int R, int n, int D)
{
    std::vector<int32_t> rows((size_t)R);
    for (int i = 0; i < R; i++) rows[(size_t)i] = i;
    for (int i = 0; i < n; i++) std::swap(rows[(size_t)i], rows[(size_t)(i + (int)gt_uniform(0, R - i))]);
    rows.resize((size_t)n);
    const size_t d = (size_t)D;
    int32_t *d_rows = gt_upload(rows);

    std::vector<float> src = random_bf16((size_t)R * d, -1, 1), gathered((size_t)n * d);
    for (size_t i = 0; i < (size_t)n; i++)
        memcpy(&gathered[i * d], &src[(size_t)rows[i] * d], d * sizeof(float));
    bf16 *d_src = gt_upload_bf16(src), *d_gathered = gt_device<bf16>((size_t)n * d);
    kc_gather_rows(d_gathered, d_src, d_rows, n, D, S);
    expect_equal(name("gather_rows %d of %d rows, D=%d", n, R, D), gt_download_bf16(d_gathered, (size_t)n * d),
                 gathered);

    std::vector<float> vals = random_bf16((size_t)n * d, -1, 1), base = random_bf16((size_t)R * d, -1, 1), want = base;
    for (size_t i = 0; i < (size_t)n; i++) memcpy(&want[(size_t)rows[i] * d], &vals[i * d], d * sizeof(float));
    bf16 *d_vals = gt_upload_bf16(vals), *d_base = gt_upload_bf16(base);
    kc_scatter_rows(d_base, d_vals, d_rows, n, D, S);
    expect_equal(name("scatter_rows %d of %d rows, D=%d", n, R, D), gt_download_bf16(d_base, (size_t)R * d), want);
    release({d_rows, d_src, d_gathered, d_vals, d_base});
}

// The kept set must be the CPU backend's, element for element: the masks of src/layer.c.
static void test_dropout(int64_t n, double rate, uint64_t key, uint64_t stream)
{
    const size_t m = (size_t)n;
    const float scale = (float)(1.0 / (1.0 - rate));
    std::vector<char> keep(m);
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) kept += keep[i] = rng_hash_uniform(key, stream, i) >= rate;
    const double kept_share = (double)kept / (double)m;

    // Forward: one fp32 product rounded once, the same on both sides, so exact.
    std::vector<float> x = random_nonzero_bf16(m), want(m);
    for (size_t i = 0; i < m; i++) want[i] = keep[i] ? round_bf16(x[i] * scale) : 0.0f;
    bf16 *d_x = gt_upload_bf16(x), *d_out = gt_device<bf16>(m);
    kc_dropout_fwd(d_out, d_x, n, rate, key, stream, S);
    std::vector<float> got = gt_download_bf16(d_out, m);
    size_t differ = 0;
    for (size_t i = 0; i < m; i++) differ += (got[i] != 0.0f) != (keep[i] != 0);
    gt_check(differ == 0, "dropout forward n=%lld rate=%.1f: %zu mask entries differ from the CPU's (%.4f kept)",
             (long long)n, rate, differ, kept_share);
    expect_equal(name("dropout forward n=%lld rate=%.1f: values", (long long)n, rate), got, want);

    // Backward: |dxd * scale| >= 0.27 moves every kept element by many bf16 steps, so a changed element is a kept one.
    std::vector<float> dx0 = random_nonzero_bf16(m), dxd = random_nonzero_bf16(m), want_dx = dx0;
    for (size_t i = 0; i < m; i++)
        if (keep[i]) want_dx[i] += dxd[i] * scale;
    bf16 *d_dx = gt_upload_bf16(dx0), *d_dxd = gt_upload_bf16(dxd);
    kc_dropout_bwd(d_dx, d_dxd, n, rate, key, stream, S);
    got = gt_download_bf16(d_dx, m);
    differ = 0;
    for (size_t i = 0; i < m; i++) differ += (got[i] != dx0[i]) != (keep[i] != 0);
    gt_check(differ == 0, "dropout backward n=%lld rate=%.1f: %zu mask entries differ from the CPU's", (long long)n,
             rate, differ);
    gt_expect_close(name("dropout backward n=%lld rate=%.1f: dx", (long long)n, rate), got, want_dx, GT_BF16_RTOL);
    release({d_x, d_out, d_dx, d_dxd});
}

// One fp32 sum rounded once: exact.
static void test_add(int64_t n)
{
    const size_t m = (size_t)n;
    std::vector<float> y = random_bf16(m, -1, 1), x = random_bf16(m, -1, 1), want(m);
    for (size_t i = 0; i < m; i++) want[i] = round_bf16(y[i] + x[i]);
    bf16 *d_y = gt_upload_bf16(y), *d_x = gt_upload_bf16(x);
    kc_add_inplace(d_y, d_x, n, S);
    expect_equal(name("add_inplace n=%lld", (long long)n), gt_download_bf16(d_y, m), want);
    release({d_y, d_x});
}

// Normal floats of every exponent (those past bf16's largest round to infinity), every fourth one an exact
// tie for round-to-nearest-even.
static void test_casts(int64_t n)
{
    const size_t m = (size_t)n;
    std::vector<float> f(m), want_bf16(m);
    for (size_t i = 0; i < m; i++) {
        uint32_t sign = gt_uniform(0, 1) < 0.5, exponent = 1 + (uint32_t)gt_uniform(0, 254);
        uint32_t mantissa = (uint32_t)gt_uniform(0, 1 << 23);
        if (i % 4 == 0) mantissa = (mantissa & ~0xffffu) | 0x8000u;
        const uint32_t bits = sign << 31 | exponent << 23 | mantissa;
        memcpy(&f[i], &bits, 4);
        want_bf16[i] = round_bf16(f[i]);
    }
    float *d_f = gt_upload(f), *d_wide = gt_device<float>(m);
    bf16 *d_narrow = gt_device<bf16>(m), *d_again = gt_device<bf16>(m);
    kc_f32_to_bf16(d_narrow, d_f, n, S);
    expect_equal(name("f32_to_bf16 n=%lld (round to nearest even)", (long long)n), gt_download_bf16(d_narrow, m),
                 want_bf16);
    kc_bf16_to_f32(d_wide, d_narrow, n, S);
    expect_equal(name("bf16_to_f32 n=%lld", (long long)n), gt_download(d_wide, m), want_bf16);
    kc_f32_to_bf16(d_again, d_wide, n, S);
    expect_equal(name("bf16 -> f32 -> bf16 round trip n=%lld", (long long)n), gt_download_bf16(d_again, m),
                 want_bf16);
    release({d_f, d_wide, d_narrow, d_again});
}

// A size of 0 launches nothing, even with NULL pointers.
static void test_zero_sizes(void)
{
    kc_rmsnorm_fwd(NULL, NULL, NULL, NULL, 0, 1, 4096, 4096, 1e-5f, S);
    kc_rmsnorm_bwd(NULL, NULL, NULL, NULL, NULL, 0, 1, 4096, 4096, 1, S);
    kc_rope(NULL, 4096, NULL, 0, 32, 128, NULL, 0, S);
    kc_swiglu_fwd(NULL, NULL, NULL, 0, S);
    kc_swiglu_bwd(NULL, NULL, NULL, NULL, NULL, 0, S);
    kc_embedding_fwd(NULL, NULL, NULL, 0, 4096, S);
    kc_dropout_fwd(NULL, NULL, 0, 0.1, 1, 2, S);
    kc_dropout_bwd(NULL, NULL, 0, 0.1, 1, 2, S);
    kc_add_inplace(NULL, NULL, 0, S);
    kc_f32_to_bf16(NULL, NULL, 0, S);
    kc_bf16_to_f32(NULL, NULL, 0, S);
    kc_gather_rows(NULL, NULL, NULL, 0, 4096, S);
    kc_scatter_rows(NULL, NULL, NULL, 0, 4096, S);
    const cudaError_t rc = cudaStreamSynchronize(S);
    gt_check(rc == cudaSuccess && cudaGetLastError() == cudaSuccess, "zero sizes are no-ops (%s)",
             cudaGetErrorString(rc));
}

int main(void)
{
    gt_require_gpu();
    GT_CUDA(cudaStreamCreate(&S));
    gt_seed(20261201);

    test_rmsnorm(2048, 1, 4096, 4096, 1e-5f);
    test_rmsnorm(1, 1, 4096, 4096, 1e-6f);
    test_rmsnorm(4, 1, 16384, 16384, 1e-5f); // the widest row the vector path holds
    test_rmsnorm(3, 1, 1003, 1003, 1e-5f);   // D % 8 != 0: scalar path
    test_rmsnorm(5, 1, 8, 8, 1e-5f);
    test_rmsnorm(2048, 32, 128, 6144, 1e-6f); // Qwen3's q norm on the fused q/k/v rows
    test_rmsnorm(37, 8, 128, 6144, 1e-6f);    // its k norm
    test_rmsnorm(9, 3, 64, 1001, 1e-6f);      // rows an odd distance apart: scalar path

    test_rope(2048, 32, 128, 4096, 500000.0, 8192);
    test_rope(2048, 8, 128, 1024, 500000.0, 8192); // k of grouped-query attention
    test_rope(2048, 40, 128, 6144, 500000.0, 8192); // q's and k's heads in the fused q/k/v rows
    test_rope(1, 32, 128, 4096, 10000.0, 4096);
    test_rope(33, 3, 16, 48, 10000.0, 64);   // one vector a half-head
    test_rope(33, 3, 16, 52, 10000.0, 64);   // rows 52 apart: not 16-byte aligned, the scalar path
    test_rope(17, 5, 8, 40, 10000.0, 40);    // head_dim % 16 != 0: scalar path

    test_swiglu((int64_t)2048 * 14336, 0);
    test_swiglu(1001, 0); // odd: groups of eight and a tail
    test_swiglu(7, 0);    // tail only
    test_swiglu(4096, 1);

    test_embedding(32000, 2048, 4096);
    test_embedding(50, 9, 13);

    test_rows(2048, 8, 4096);
    test_rows(100, 37, 13);
    test_rows(64, 64, 24);

    test_dropout((int64_t)2048 * 4096, 0.1, 0x243f6a8885a308d3ull, 4);
    test_dropout((int64_t)2048 * 4096, 0.5, 0x13198a2e03707344ull, 6);
    test_dropout(1001, 0.1, 0xa4093822299f31d0ull, 0);

    test_add((int64_t)2048 * 4096 + 5);
    test_add(7);

    test_casts((int64_t)2048 * 4096 + 3);
    test_casts(5);

    test_zero_sizes();

    GT_CUDA(cudaStreamDestroy(S));
    return gt_finish();
}
