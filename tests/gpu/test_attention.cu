// test_attention: causal GQA attention on packed documents, kc_attention_fwd/bwd (cuDNN, or the
// fallback where cuDNN refuses) and the fallback called directly, against the CPU twin
// k_attention_fwd/bwd on the same bf16 inputs. q, k and v (and dq, dk, dv) sit side by side in rows
// of one buffer, as the fused q/k/v projection writes them. Checks out, the saved log-sum-exp, dq, dk and dv; a
// deterministic backward run twice, at once on two streams, must be bit-identical; later batches with
// other numbers of documents reuse (or add to) the plan cache of the first.
#include "gpu_test.h"

#include "cuda/attention.h"
#include "cuda/attention_fallback.h"
#include "kernels.h"

// The saved statistics are fp32 log-sum-exps; cuDNN's exp/log approximations stay well inside this.
#define LSE_RTOL 1e-4

enum Path { API, FALLBACK };

// One case: bf16-valued inputs and the CPU twin's results on them.
struct Problem {
    const char *name;
    std::vector<int32_t> seq_start;
    int n_seqs, T, max_seq, nh, nkv, hd;
    int pad; // columns after v in each q/k/v row
    float scale;
    std::vector<float> q, k, v, dout;
    std::vector<float> out, lse, dq, dk, dv; // lse as the twin keeps it, [nh, T]
};

static Problem make_problem(const char *name, const std::vector<int> &lens, int max_seq, int nh, int nkv, int hd,
                            uint64_t seed)
{
    Problem p;
    p.name = name, p.max_seq = max_seq, p.nh = nh, p.nkv = nkv, p.hd = hd, p.pad = 0;
    p.scale = 1.0f / sqrtf((float)hd);
    p.seq_start.push_back(0);
    for (int len : lens) p.seq_start.push_back(p.seq_start.back() + len);
    p.n_seqs = (int)lens.size(), p.T = p.seq_start.back();
    size_t nq = (size_t)p.T * nh * hd, nk = (size_t)p.T * nkv * hd;
    gt_seed(seed);
    // q and k span +-2 so that the scores spread over a few units and the softmax is not flat.
    p.q = gt_random(nq, -2, 2), p.k = gt_random(nk, -2, 2), p.v = gt_random(nk, -1, 1), p.dout = gt_random(nq, -1, 1);
    for (auto *x : {&p.q, &p.k, &p.v, &p.dout}) gt_round_bf16(*x);

    p.out.resize(nq), p.lse.resize((size_t)nh * p.T);
    p.dq.assign(nq, 0.0f), p.dk.assign(nk, 0.0f), p.dv.assign(nk, 0.0f); // the twin accumulates
    k_attention_fwd(p.out.data(), p.lse.data(), p.q.data(), p.k.data(), p.v.data(), p.seq_start.data(), p.n_seqs,
                    nh, nkv, hd, p.scale);
    k_attention_bwd(p.dq.data(), p.dk.data(), p.dv.data(), p.dout.data(), p.out.data(), p.lse.data(), p.q.data(),
                    p.k.data(), p.v.data(), p.seq_start.data(), p.n_seqs, nh, nkv, hd, p.scale);
    return p;
}

struct Grads {
    std::vector<float> dq, dk, dv;
};

struct Result {
    std::vector<float> out, stats;
    Grads first, second; // second: the same backward again, on another stream at the same time
};

// Rows of the fused q/k/v buffer: q's heads, k's, v's, then p.pad columns.
static int qkv_ld(const Problem &p) { return (p.nh + 2 * p.nkv) * p.hd + p.pad; }

// cuDNN may read whole 64-row tiles past the last sequence (as src/layer.c allocates)
#define TILE_SLACK 64

static std::vector<float> fused(const Problem &p, const std::vector<float> &q, const std::vector<float> &k,
                                const std::vector<float> &v)
{
    const size_t ld = qkv_ld(p), Q = (size_t)p.nh * p.hd, KV = (size_t)p.nkv * p.hd;
    std::vector<float> rows(((size_t)p.T + TILE_SLACK) * ld, 0.5f);
    for (size_t t = 0; t < (size_t)p.T; t++) {
        memcpy(&rows[t * ld], &q[t * Q], Q * sizeof(float));
        memcpy(&rows[t * ld + Q], &k[t * KV], KV * sizeof(float));
        memcpy(&rows[t * ld + Q + KV], &v[t * KV], KV * sizeof(float));
    }
    return rows;
}

static Grads unfused(const Problem &p, const std::vector<float> &rows)
{
    const size_t ld = qkv_ld(p), Q = (size_t)p.nh * p.hd, KV = (size_t)p.nkv * p.hd;
    Grads g = {std::vector<float>(p.T * Q), std::vector<float>(p.T * KV), std::vector<float>(p.T * KV)};
    for (size_t t = 0; t < (size_t)p.T; t++) {
        memcpy(&g.dq[t * Q], &rows[t * ld], Q * sizeof(float));
        memcpy(&g.dk[t * KV], &rows[t * ld + Q], KV * sizeof(float));
        memcpy(&g.dv[t * KV], &rows[t * ld + Q + KV], KV * sizeof(float));
    }
    return g;
}

struct Device {
    __nv_bfloat16 *qkv, *dout, *out;
    float *stats;
    int32_t *seq_start; // device copy, for the fallback's own entry points
};

// The q, k and v (or dq, dk, dv) columns of a fused buffer.
static __nv_bfloat16 *k_of(const Problem &p, __nv_bfloat16 *qkv) { return qkv + (size_t)p.nh * p.hd; }
static __nv_bfloat16 *v_of(const Problem &p, __nv_bfloat16 *qkv) { return qkv + (size_t)(p.nh + p.nkv) * p.hd; }

static void backward(const Problem &p, Path path, const Device &d, cudaStream_t s, __nv_bfloat16 *g)
{
    if (path == API)
        kc_attention_bwd(g, k_of(p, g), v_of(p, g), d.dout, d.out, d.stats, d.qkv, k_of(p, d.qkv), v_of(p, d.qkv),
                         qkv_ld(p), p.seq_start.data(), p.n_seqs, p.max_seq, p.nh, p.nkv, p.hd, p.scale, s);
    else
        kc_attention_fallback_bwd(g, k_of(p, g), v_of(p, g), d.dout, d.out, d.stats, d.qkv, k_of(p, d.qkv),
                                  v_of(p, d.qkv), qkv_ld(p), d.seq_start, p.T, p.n_seqs, p.nh, p.nkv, p.hd, p.scale, s);
    GT_CUDA(cudaGetLastError());
}

static Result run(const Problem &p, Path path, cudaStream_t s1, cudaStream_t s2)
{
    size_t nq = (size_t)p.T * p.nh * p.hd, n_fused = ((size_t)p.T + TILE_SLACK) * qkv_ld(p);
    size_t n_stats = kc_attention_stats_bytes(p.T, p.n_seqs, p.max_seq, p.nh) / sizeof(float);
    Device d = {gt_upload_bf16(fused(p, p.q, p.k, p.v)), gt_upload_bf16(p.dout), gt_device<__nv_bfloat16>(nq),
                gt_device<float>(n_stats), gt_upload(p.seq_start)};
    if (path == API)
        kc_attention_fwd(d.out, d.stats, d.qkv, k_of(p, d.qkv), v_of(p, d.qkv), qkv_ld(p), p.seq_start.data(), p.n_seqs,
                         p.max_seq, p.nh, p.nkv, p.hd, p.scale, s1);
    else
        kc_attention_fallback_fwd(d.out, d.stats, d.qkv, k_of(p, d.qkv), v_of(p, d.qkv), qkv_ld(p), d.seq_start, p.T,
                                  p.n_seqs, p.nh, p.nkv, p.hd, p.scale, s1);
    GT_CUDA(cudaStreamSynchronize(s1));

    Result r;
    // Both sets of poisoned gradients exist before either backward starts, so the two overlap.
    __nv_bfloat16 *g1 = gt_device<__nv_bfloat16>(n_fused), *g2 = gt_device<__nv_bfloat16>(n_fused);
    GT_CUDA(cudaDeviceSynchronize());
    backward(p, path, d, s1, g1);
    backward(p, path, d, s2, g2);
    r.out = gt_download_bf16(d.out, nq), r.stats = gt_download(d.stats, n_stats);
    r.first = unfused(p, gt_download_bf16(g1, n_fused)), r.second = unfused(p, gt_download_bf16(g2, n_fused));
    for (void *ptr : {(void *)d.qkv, (void *)d.dout, (void *)d.out, (void *)d.stats, (void *)d.seq_start, (void *)g1,
                      (void *)g2})
        GT_CUDA(cudaFree(ptr));
    return r;
}

static bool same_bits(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

static void check(const Problem &p, Path path, cudaStream_t s1, cudaStream_t s2)
{
    const char *impl = path == API ? kc_attention_impl(p.nh, p.nkv, p.hd, qkv_ld(p)) : "fallback direct";
    printf("# %s: %d documents, %d rows, nh %d, nkv %d, head_dim %d, q/k/v rows %d apart: %s\n", p.name, p.n_seqs, p.T,
           p.nh, p.nkv, p.hd, qkv_ld(p), impl);
    Result r = run(p, path, s1, s2);
    char what[256];
    // The stats are token-major [T, nh] (kernels/cuda/attention_fallback.h); the twin keeps [nh, T].
    std::vector<float> lse(r.stats.size());
    for (int t = 0; t < p.T; t++)
        for (int h = 0; h < p.nh; h++) lse[(size_t)t * p.nh + h] = p.lse[(size_t)h * p.T + t];
    struct {
        const char *name;
        const std::vector<float> &got, &want;
        double rtol;
    } checks[] = {{"out", r.out, p.out, GT_BF16_RTOL},       {"log-sum-exp", r.stats, lse, LSE_RTOL},
                  {"dq", r.first.dq, p.dq, GT_BF16_RTOL},    {"dk", r.first.dk, p.dk, GT_BF16_RTOL},
                  {"dv", r.first.dv, p.dv, GT_BF16_RTOL}};
    for (auto &c : checks) {
        snprintf(what, sizeof what, "%s [%s]: %s", p.name, impl, c.name);
        gt_expect_close(what, c.got, c.want, c.rtol);
    }
    if (path == API && !kc_attention_bwd_deterministic(p.max_seq, p.nh)) return; // checked against the twin above
    gt_check(same_bits(r.first.dq, r.second.dq) && same_bits(r.first.dk, r.second.dk) &&
                 same_bits(r.first.dv, r.second.dv),
             "%s [%s]: the backward twice, on two streams at once, gives bit-identical dq, dk, dv", p.name, impl);
}

int main(void)
{
    gt_require_gpu();
    cudaStream_t s1, s2;
    GT_CUDA(cudaStreamCreate(&s1));
    GT_CUDA(cudaStreamCreate(&s2));

    // The shapes this work is for run on cuDNN on an H200 (sm_90); a refusal is logged with cuDNN's reason.
    gt_check(!strcmp(kc_attention_impl(32, 8, 128, 6144), "cudnn"), "GQA 32/8, head_dim 128 runs on cuDNN");
    gt_check(!strcmp(kc_attention_impl(16, 4, 64, 1536), "cudnn"), "GQA 16/4, head_dim 64 runs on cuDNN");

    // GQA 32/8, head_dim 128, max_seq 2048: batches of 4, then 3 (padded to the same bucket of 4), then
    // 6 documents (a bucket of 8).
    Problem a = make_problem("GQA 32/8 hd128, 4 docs", {700, 300, 1000, 48}, 2048, 32, 8, 128, 1);
    check(a, API, s1, s2);
    check(a, FALLBACK, s1, s2);
    check(make_problem("GQA 32/8 hd128, 3 docs in the bucket of 4", {1, 517, 1530}, 2048, 32, 8, 128, 2), API, s1, s2);
    check(make_problem("GQA 32/8 hd128, 6 docs", {512, 2048, 512, 512, 2048, 512}, 2048, 32, 8, 128, 3), API, s1, s2);
    // The deterministic backward runs four 2048-row sequences at a time here (dP within its cap): groups
    // of 4 and 2 documents, each group's rows offset into the packed tensors.
    gt_check(kc_attention_bwd_deterministic(2048, 32), "max_seq 2048 at 32 heads takes the deterministic backward");
    check(make_problem("GQA 32/8 hd128, 6 docs in groups", {2048, 100, 1, 900, 2048, 333}, 2048, 32, 8, 128, 10),
          API, s1, s2);
    // A document of length 1 has dq = dk = 0 up to rounding, so one of length 2 gives the gradients a scale.
    check(make_problem("GQA 32/8 hd128, documents of length 1", {1, 1, 1, 2, 1, 1, 1}, 2, 32, 8, 128, 4), API, s1, s2);
    check(make_problem("GQA 32/8 hd128, one long sequence", {4096}, 4096, 32, 8, 128, 5), API, s1, s2);
    // One sequence's dP over the cap (max_seq 4160: 1.03 GiB): the non-deterministic backward, as exact.
    gt_check(!kc_attention_bwd_deterministic(4160, 32), "max_seq 4160 at 32 heads takes the non-deterministic backward");
    check(make_problem("GQA 32/8 hd128, one sequence past the cap", {4100}, 4160, 32, 8, 128, 11), API, s1, s2);

    Problem mha = make_problem("MHA 8/8 hd128", {300, 1, 700}, 1024, 8, 8, 128, 6);
    check(mha, API, s1, s2);
    check(mha, FALLBACK, s1, s2);
    check(make_problem("GQA 16/4 hd64", {1000, 24, 333}, 1024, 16, 4, 64, 7), API, s1, s2);

    // Small heads, as in the smallest test models (stories260K: 8 heads, 4 kv heads, head_dim 8).
    Problem hd16 = make_problem("GQA 8/4 hd16", {200, 55, 1}, 256, 8, 4, 16, 8);
    check(hd16, API, s1, s2);
    check(hd16, FALLBACK, s1, s2);
    Problem hd8 = make_problem("GQA 8/4 hd8", {256, 100, 1, 155}, 256, 8, 4, 8, 9);
    check(hd8, API, s1, s2);
    check(hd8, FALLBACK, s1, s2);

    // q/k/v rows wider than the three (columns after v): the strides, not the head counts, place them.
    Problem padded = make_problem("GQA 16/4 hd64, q/k/v rows padded", {500, 3, 260}, 512, 16, 4, 64, 12);
    padded.pad = 64;
    check(padded, API, s1, s2);
    check(padded, FALLBACK, s1, s2);

    GT_CUDA(cudaStreamDestroy(s1));
    GT_CUDA(cudaStreamDestroy(s2));
    return gt_finish();
}
