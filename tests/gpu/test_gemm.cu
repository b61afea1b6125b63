// test_gemm: the cuBLASLt GEMMs (kernels/cuda/gemm.cu) against their CPU twins k_linear_fwd and
// k_linear_bwd (OpenBLAS sgemm) on the same bf16-representable inputs. Every option of the forward
// (bias, accumulate, bf16 or fp32 output), the step's real shapes (T = 2048 through the LLaMA
// projections and LoRA ranks, the 128256-wide LM head) and odd small ones. Large products are
// checked on a random sample of output rows (the CPU runs them single-threaded); every element of
// every output must still be written. Token-major operands may be column slices of wider rows (the
// fused q/k/v output, a stacked LoRA group): the other columns must keep their values. A repeated GEMM
// must reproduce its bits.
#include "gpu_test.h"

#include "cuda/gemm.h"
#include "kernels.h"

typedef std::vector<float> vec;

#define SAMPLE_ROWS 48

static void dev_free(void *p) { GT_CUDA(cudaFree(p)); }

typedef struct {
    const char *name;
    int T, K, N;
    float scale;
    int accumulate, bias, out_f32;
    int weight_grad; // run kc_linear_bwd_weight (not for the frozen LM head)
    int ld;          // > K: x and dx are the last K columns of [T, ld] buffers (a stacked group's slice)
    int ldn;         // > N: out and dout are the last N columns of [T, ldn] buffers (one of fused q/k/v)
} gemm_case;

static int ld_of(const gemm_case &c) { return c.ld ? c.ld : c.K; }
static int ldn_of(const gemm_case &c) { return c.ldn ? c.ldn : c.N; }

// Rows [T, K] placed as the last K columns of [T, ld] rows over a background.
static vec widen(const vec &x, int T, int K, int ld, vec wide)
{
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) wide[(size_t)t * ld + (ld - K) + k] = x[(size_t)t * K + k];
    return wide;
}

static vec narrow(const vec &wide, int T, int K, int ld)
{
    vec x((size_t)T * K);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) x[(size_t)t * K + k] = wide[(size_t)t * ld + (ld - K) + k];
    return x;
}

static vec bf16_random(size_t n)
{
    vec v = gt_random(n, -1.0, 1.0);
    gt_round_bf16(v);
    return v;
}

// All rows of a few, else the first, the last and SAMPLE_ROWS - 2 others at random, in order.
static std::vector<int> sample_rows(int R)
{
    std::vector<int> rows;
    if (R <= SAMPLE_ROWS) {
        for (int r = 0; r < R; r++) rows.push_back(r);
        return rows;
    }
    std::vector<char> taken(R, 0);
    taken[0] = taken[R - 1] = 1;
    for (int picked = 2; picked < SAMPLE_ROWS;) {
        int r = 1 + (int)gt_uniform(0, R - 2);
        if (!taken[r]) taken[r] = 1, picked++;
    }
    for (int r = 0; r < R; r++)
        if (taken[r]) rows.push_back(r);
    return rows;
}

// The given rows of a row-major matrix with C columns.
static vec take_rows(const vec &a, int C, const std::vector<int> &rows)
{
    vec out(rows.size() * (size_t)C);
    for (size_t i = 0; i < rows.size(); i++)
        memcpy(&out[i * C], &a[(size_t)rows[i] * C], (size_t)C * sizeof(float));
    return out;
}

// The given columns of a row-major [R, C] matrix, as a row-major [R, columns] one.
static vec take_cols(const vec &a, int R, int C, const std::vector<int> &cols)
{
    vec out((size_t)R * cols.size());
    for (int r = 0; r < R; r++)
        for (size_t j = 0; j < cols.size(); j++) out[r * cols.size() + j] = a[(size_t)r * C + cols[j]];
    return out;
}

// The sampled rows within rtol of the reference; when only a sample was compared, a second line
// says that every element of the output was written.
static void expect_rows(const char *what, const gemm_case &c, const vec &got, int C, const std::vector<int> &rows,
                        const vec &want, double rtol)
{
    char label[256];
    snprintf(label, sizeof label, "%s %s (T=%d K=%d N=%d, scale %g%s%s%s)", c.name, what, c.T, c.K, c.N, c.scale,
             c.accumulate ? ", accumulate" : "", c.bias ? ", bias" : "", c.out_f32 ? ", fp32 out" : "");
    gt_expect_close(label, take_rows(got, C, rows), want, rtol);
    if (rows.size() * (size_t)C < got.size()) {
        size_t bad = gt_count_nonfinite(got.data(), got.size());
        gt_check(bad == 0, "%s: %zu of %zu elements unwritten or non-finite (the check above sampled %zu rows)", label,
                 bad, got.size(), rows.size());
    }
}

// A device copy of host rows, bf16 or fp32.
static void *upload_as(const vec &v, int f32) { return f32 ? (void *)gt_upload(v) : (void *)gt_upload_bf16(v); }

static vec download_as(const void *p, size_t n, int f32)
{
    return f32 ? gt_download((const float *)p, n) : gt_download_bf16((const __nv_bfloat16 *)p, n);
}

static void check_forward(const gemm_case &c, const vec &x, const vec &w, const vec &bias, const void *d_x,
                          const void *d_w, const void *d_bias)
{
    const int ldn = ldn_of(c);
    const size_t n_out = (size_t)c.T * c.N, n_wide = (size_t)c.T * ldn, elem = c.out_f32 ? 4 : 2;
    vec out0, background = c.out_f32 ? gt_random(n_wide, -1.0, 1.0) : bf16_random(n_wide);
    void *addend = NULL;
    if (c.accumulate) {
        out0 = c.out_f32 ? gt_random(n_out, -1.0, 1.0) : bf16_random(n_out);
        addend = upload_as(widen(out0, c.T, c.N, ldn, background), c.out_f32);
    }
    // accumulate 2: the addend is a buffer of its own (a residual), which must come out untouched. Columns
    // the call must write start as NaN.
    const vec wide0 = widen(c.accumulate == 1 ? out0 : vec(n_out, NAN), c.T, c.N, ldn, background);
    void *out = c.accumulate == 1 ? addend : upload_as(wide0, c.out_f32);
    const size_t skip = (size_t)(ldn - c.N) * elem;
    kc_linear_fwd((char *)out + skip, c.out_f32, ldn, d_x, ld_of(c), d_w, d_bias, c.T, c.K, c.N, c.scale,
                  addend ? (char *)addend + skip : NULL, 0);
    const vec wide = download_as(out, n_wide, c.out_f32);
    vec got = narrow(wide, c.T, c.N, ldn);
    if (ldn > c.N)
        gt_check(widen(got, c.T, c.N, ldn, wide0) == wide, "%s forward (T=%d K=%d N=%d) into columns of rows of %d: "
                 "the other columns keep their values", c.name, c.T, c.K, c.N, ldn);
    if (c.accumulate == 2) {
        gt_check(narrow(download_as(addend, n_wide, c.out_f32), c.T, c.N, ldn) == out0,
                 "%s forward (T=%d K=%d N=%d): the residual addend is left as it was", c.name, c.T, c.K, c.N);
        dev_free(addend);
    }

    std::vector<int> rows = sample_rows(c.T);
    vec want = c.accumulate ? take_rows(out0, c.N, rows) : vec(rows.size() * (size_t)c.N, 0.0f);
    vec x_rows = take_rows(x, c.K, rows);
    k_linear_fwd(want.data(), x_rows.data(), w.data(), c.bias ? bias.data() : NULL, (int)rows.size(), c.K, c.N, c.scale,
                 c.accumulate);
    expect_rows("forward", c, got, c.N, rows, want, c.out_f32 ? GT_F32_RTOL : GT_BF16_RTOL);
    dev_free(out);
}

static void check_backward_data(const gemm_case &c, const vec &w, const vec &dout, const void *d_w,
                                const void *d_dout)
{
    const size_t n_dx = (size_t)c.T * c.K;
    const int ld = ld_of(c);
    vec dx0 = bf16_random(n_dx), background = bf16_random((size_t)c.T * ld);
    // The wide buffer's other columns (the rest of the group's slices) must come out untouched.
    const vec wide0 = widen(dx0, c.T, c.K, ld, background);
    __nv_bfloat16 *dx = gt_upload_bf16(wide0);
    kc_linear_bwd_data(dx + (ld - c.K), ld, d_dout, ldn_of(c), d_w, c.T, c.K, c.N, c.scale, c.accumulate, 0);
    const vec wide = gt_download_bf16(dx, (size_t)c.T * ld);
    vec got = narrow(wide, c.T, c.K, ld);
    if (ld > c.K)
        gt_check(widen(got, c.T, c.K, ld, wide0) == wide, "%s backward data (T=%d K=%d N=%d) into columns of rows of %d: "
                 "the other columns keep their values", c.name, c.T, c.K, c.N, ld);

    std::vector<int> rows = sample_rows(c.T);
    vec want = c.accumulate ? take_rows(dx0, c.K, rows) : vec(rows.size() * (size_t)c.K, 0.0f);
    vec dout_rows = take_rows(dout, c.N, rows);
    k_linear_bwd(want.data(), NULL, NULL, dout_rows.data(), NULL, w.data(), (int)rows.size(), c.K, c.N, c.scale);
    expect_rows("backward data", c, got, c.K, rows, want, GT_BF16_RTOL);
    dev_free(dx);
}

static void check_backward_weight(const gemm_case &c, const vec &x, const vec &dout, const void *d_x,
                                  const void *d_dout)
{
    const size_t n_dw = (size_t)c.N * c.K;
    vec dw0 = gt_random(n_dw, -1.0, 1.0); // fp32 master gradients, already holding an earlier term
    float *dw = gt_upload(dw0);
    kc_linear_bwd_weight(dw, d_dout, ldn_of(c), d_x, ld_of(c), c.T, c.K, c.N, c.scale, 0);
    vec got = gt_download(dw, n_dw);

    std::vector<int> rows = sample_rows(c.N); // rows of dw are columns of dout
    vec want = take_rows(dw0, c.K, rows);
    vec dout_cols = take_cols(dout, c.T, c.N, rows);
    k_linear_bwd(NULL, want.data(), NULL, dout_cols.data(), x.data(), NULL, c.T, c.K, (int)rows.size(), c.scale);
    gemm_case shown = c;
    shown.accumulate = 1, shown.bias = 0, shown.out_f32 = 1;
    expect_rows("backward weight", shown, got, c.K, rows, want, GT_F32_RTOL);
    dev_free(dw);
}

static void run_case(const gemm_case &c)
{
    vec x = bf16_random((size_t)c.T * c.K), w = bf16_random((size_t)c.N * c.K);
    vec dout = bf16_random((size_t)c.T * c.N), bias = c.bias ? bf16_random((size_t)c.N) : vec();
    const int ld = ld_of(c), ldn = ldn_of(c);
    __nv_bfloat16 *d_wide = gt_upload_bf16(widen(x, c.T, c.K, ld, bf16_random((size_t)c.T * ld)));
    __nv_bfloat16 *d_dout_wide = gt_upload_bf16(widen(dout, c.T, c.N, ldn, bf16_random((size_t)c.T * ldn)));
    __nv_bfloat16 *d_x = d_wide + (ld - c.K), *d_w = gt_upload_bf16(w), *d_dout = d_dout_wide + (ldn - c.N);
    __nv_bfloat16 *d_bias = c.bias ? gt_upload_bf16(bias) : NULL;
    check_forward(c, x, w, bias, d_x, d_w, d_bias);
    check_backward_data(c, w, dout, d_w, d_dout);
    if (c.weight_grad) check_backward_weight(c, x, dout, d_x, d_dout);
    dev_free(d_wide), dev_free(d_w), dev_free(d_dout_wide);
    if (d_bias) dev_free(d_bias);
}

// The same GEMM twice, into different buffers: the cached algorithm must give the same bits.
static void check_repeatable(int T, int K, int N)
{
    __nv_bfloat16 *x = gt_upload_bf16(bf16_random((size_t)T * K)), *w = gt_upload_bf16(bf16_random((size_t)N * K));
    __nv_bfloat16 *dout = gt_upload_bf16(bf16_random((size_t)T * N));
    __nv_bfloat16 *y1 = gt_device<__nv_bfloat16>((size_t)T * N), *y2 = gt_device<__nv_bfloat16>((size_t)T * N);
    vec dw0 = gt_random((size_t)N * K, -1.0, 1.0);
    float *dw1 = gt_upload(dw0), *dw2 = gt_upload(dw0);
    kc_linear_fwd(y1, 0, N, x, K, w, NULL, T, K, N, 1.0f, NULL, 0);
    kc_linear_fwd(y2, 0, N, x, K, w, NULL, T, K, N, 1.0f, NULL, 0);
    kc_linear_bwd_weight(dw1, dout, N, x, K, T, K, N, 1.0f, 0);
    kc_linear_bwd_weight(dw2, dout, N, x, K, T, K, N, 1.0f, 0);
    vec a = gt_download_bf16(y1, (size_t)T * N), b = gt_download_bf16(y2, (size_t)T * N);
    vec c = gt_download(dw1, (size_t)N * K), d = gt_download(dw2, (size_t)N * K);
    gt_check(!memcmp(a.data(), b.data(), a.size() * sizeof(float)) && !memcmp(c.data(), d.data(), c.size() * sizeof(float)),
             "repeated forward and weight-gradient GEMMs (T=%d K=%d N=%d) give identical bits", T, K, N);
    dev_free(x), dev_free(w), dev_free(dout);
    dev_free(y1), dev_free(y2), dev_free(dw1), dev_free(dw2);
}

// T = 0 must launch nothing: the poisoned outputs keep every byte.
static void check_empty(void)
{
    const int K = 64, N = 32;
    __nv_bfloat16 *w = gt_upload_bf16(bf16_random((size_t)N * K)), *y = gt_device<__nv_bfloat16>(N * K);
    float *dw = gt_device<float>(N * K);
    kc_linear_fwd(y, 0, N, y, K, w, NULL, 0, K, N, 1.0f, NULL, 0);
    kc_linear_bwd_data(y, K, y, N, w, 0, K, N, 1.0f, 0, 0);
    kc_linear_bwd_weight(dw, y, N, y, K, 0, K, N, 1.0f, 0);
    std::vector<uint16_t> yb = gt_download((const uint16_t *)y, N * K);
    std::vector<uint32_t> db = gt_download((const uint32_t *)dw, N * K);
    size_t changed = 0;
    for (uint16_t b : yb) changed += b != 0xffff;
    for (uint32_t b : db) changed += b != 0xffffffffu;
    gt_check(changed == 0, "T = 0 writes nothing (%zu elements changed)", changed);
    dev_free(w), dev_free(y), dev_free(dw);
}

int main(void)
{
    gt_require_gpu();
    gt_seed(11);
    // Every forward option, on a shape whose dimensions are multiples of 8.
    for (int v = 0; v < 8; v++) {
        gemm_case c = {"options", 64, 256, 384, 0.75f, v & 1, (v >> 1) & 1, (v >> 2) & 1, 1};
        run_case(c);
    }
    // The step's shapes: q/o (4096 -> 4096), gate/up (4096 -> 14336), down (14336 -> 4096), k/v
    // (4096 -> 1024), a LoRA pair of rank 16 (B adds scale 2 into the projection's output), the LM head.
    const gemm_case real[] = {
        {"q/o", 2048, 4096, 4096, 1.0f, 0, 0, 0, 1},     {"gate/up", 2048, 4096, 14336, 1.0f, 0, 0, 0, 1},
        {"down", 2048, 14336, 4096, 1.0f, 1, 0, 0, 1},   {"k/v", 2048, 4096, 1024, 1.0f, 0, 1, 0, 1},
        {"LoRA A", 2048, 4096, 16, 1.0f, 0, 0, 0, 1},    {"LoRA B", 2048, 16, 4096, 2.0f, 1, 0, 0, 1},
        {"LM head", 96, 4096, 128256, 1.0f, 0, 0, 1, 0},
        // o and down add the residual stream from its own buffer
        {"o + residual", 2048, 4096, 4096, 1.0f, 2, 0, 0, 1}, {"LoRA B + residual", 2048, 16, 4096, 2.0f, 2, 0, 0, 1},
        // k's adapter in a stacked q/k/v group: A x, and du in backward, are slices of [T, 48] rows
        {"LoRA B, stacked", 2048, 16, 1024, 2.0f, 0, 0, 0, 1, 48}, {"LoRA B, stacked, odd T", 1801, 16, 4096, 2.0f, 1, 0, 0, 1, 32},
        // fused q/k/v: the base product over the stacked weights (with Qwen2's biases), and v's LoRA B
        // into the last columns of the [T, 6144] rows (dout in backward likewise)
        {"q/k/v fused", 2048, 4096, 6144, 1.0f, 1, 1, 0, 1},
        {"LoRA B into v's columns", 2048, 16, 1024, 2.0f, 1, 0, 0, 1, 48, 6144},
        {"LoRA B into v's columns, odd T", 1801, 16, 1024, 2.0f, 0, 0, 0, 1, 0, 6144},
    };
    for (const gemm_case &c : real) run_case(c);
    // Packed batches vary T: these share T = 2048's plans (its bucket, 1793..2048) at their own T,
    // odd and below the T the algorithms were chosen for.
    const gemm_case bucketed[] = {
        {"q/o", 1801, 4096, 4096, 1.0f, 0, 0, 0, 1},  {"down", 2001, 14336, 4096, 1.0f, 1, 0, 0, 1},
        {"LoRA A", 1913, 4096, 16, 1.0f, 0, 0, 0, 1}, {"LoRA B", 1795, 16, 4096, 2.0f, 1, 0, 0, 1},
    };
    for (const gemm_case &c : bucketed) run_case(c);
    check_repeatable(2048, 4096, 14336);
    check_empty();
    // Odd shapes last: an unsupported one ends the program with a message naming it.
    const gemm_case odd[] = {
        {"one row", 1, 4096, 4096, 1.0f, 1, 1, 0, 1}, {"small", 3, 24, 40, 0.5f, 0, 1, 0, 1},
        {"one column", 5, 64, 1, 1.0f, 1, 1, 0, 1},   {"one column fp32", 5, 64, 1, 1.0f, 1, 1, 1, 1},
        {"unaligned", 3, 13, 7, 1.5f, 1, 1, 0, 1},    {"unaligned fp32", 3, 13, 7, 1.5f, 0, 1, 1, 1},
    };
    for (const gemm_case &c : odd) run_case(c);
    return gt_finish();
}
