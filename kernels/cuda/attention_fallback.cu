// attention_fallback: causal grouped-query attention in plain CUDA with fp32 math, for the shapes
// cuDNN refuses (the head_dim 8 of the smallest test models) and as a second reference for the cuDNN
// path. One warp per (row, head): the forward and dq walk the row's causal prefix of keys 32 at a
// time, one key per lane, with an online softmax; dk and dv walk the key's causal suffix of queries
// over the query heads of its group. No tiling and no atomics: slow for big models, but short and
// deterministic.
#include "attention_fallback.h"
#include "cuda_common.cuh"

#include <math.h>

#define WARPS 4                // warps per block
#define MAX_HD 256
#define PER_LANE (MAX_HD / 32) // head dims one lane holds: d = lane + 32 * i
#define FULL_MASK 0xffffffffu

typedef struct {
    int T, nh, nkv, hd;
    int group;      // query heads per kv head
    int64_t ld, os; // row strides of q, k, v and their gradients (the fused buffer's), and of out/dout (nh * hd)
    float scale;
} geom;

// The sequence holding row t: the last s with seq_start[s] <= t.
__device__ static int seq_of_row(const int32_t *seq_start, int n_seqs, int t)
{
    int lo = 0, hi = n_seqs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (seq_start[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

__device__ static float warp_sum(float x)
{
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

__device__ static float warp_max(float x)
{
    for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, o));
    return x;
}

// A row of one head into this warp's shared memory, times mul.
__device__ static void load_row(float *dst, const bf16 *src, int hd, float mul, int lane)
{
    for (int d = lane; d < hd; d += 32) dst[d] = mul * __bfloat162float(src[d]);
    __syncwarp();
}

// One lane's dot product of a shared row with a global row.
__device__ static float dot(const float *a, const bf16 *b, int hd)
{
    float acc = 0.0f;
    for (int d = 0; d < hd; d++) acc += a[d] * __bfloat162float(b[d]);
    return acc;
}

// acc += p * row, each lane on its own head dims.
__device__ static void axpy(float (&acc)[PER_LANE], float p, const bf16 *row, int hd, int lane)
{
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hd) acc[i] += p * __bfloat162float(row[d]);
    }
}

__device__ static void store_row(bf16 *dst, const float (&acc)[PER_LANE], float mul, int hd, int lane)
{
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hd) dst[d] = __float2bfloat16(mul * acc[i]);
    }
}

__global__ static void fwd_kernel(bf16 *out, float *stats, const bf16 *q, const bf16 *k, const bf16 *v,
                                  const int32_t *seq_start, int n_seqs, geom g)
{
    extern __shared__ float smem[];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int64_t task = (int64_t)blockIdx.x * WARPS + warp;
    if (task >= (int64_t)g.T * g.nh) return; // whole warps leave, so the shuffles below see 32 lanes
    int t = (int)(task / g.nh), h = (int)(task % g.nh);
    int t0 = seq_start[seq_of_row(seq_start, n_seqs, t)];
    const bf16 *kh = k + (h / g.group) * g.hd, *vh = v + (h / g.group) * g.hd;
    float *qrow = smem + warp * g.hd;
    load_row(qrow, q + t * g.ld + h * g.hd, g.hd, g.scale, lane);

    float m = -INFINITY, l = 0.0f, acc[PER_LANE] = {};
    for (int j0 = t0; j0 <= t; j0 += 32) {
        int j = j0 + lane;
        float s = j <= t ? dot(qrow, kh + j * g.ld, g.hd) : -INFINITY;
        float m_new = fmaxf(m, warp_max(s));
        float rescale = expf(m - m_new); // 0 for the first keys, where m = -inf
        float p = j <= t ? expf(s - m_new) : 0.0f;
        l = l * rescale + warp_sum(p);
        m = m_new;
#pragma unroll
        for (int i = 0; i < PER_LANE; i++) acc[i] *= rescale;
        int nj = min(32, t - j0 + 1);
        for (int jj = 0; jj < nj; jj++) axpy(acc, __shfl_sync(FULL_MASK, p, jj), vh + (j0 + jj) * g.ld, g.hd, lane);
    }
    store_row(out + t * g.os + h * g.hd, acc, 1.0f / l, g.hd, lane);
    if (lane == 0) stats[(int64_t)t * g.nh + h] = m + logf(l);
}

// dq = scale * sum_j dS_tj k_j with P = exp(S - lse), dS = P * (dout . v_j - dout . out).
__global__ static void dq_kernel(bf16 *dq, const bf16 *dout, const bf16 *out, const float *stats, const bf16 *q,
                                 const bf16 *k, const bf16 *v, const int32_t *seq_start, int n_seqs, geom g)
{
    extern __shared__ float smem[];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int64_t task = (int64_t)blockIdx.x * WARPS + warp;
    if (task >= (int64_t)g.T * g.nh) return;
    int t = (int)(task / g.nh), h = (int)(task % g.nh);
    int t0 = seq_start[seq_of_row(seq_start, n_seqs, t)];
    const bf16 *kh = k + (h / g.group) * g.hd, *vh = v + (h / g.group) * g.hd;
    const int64_t row = t * g.ld + h * g.hd, orow = t * g.os + h * g.hd;
    float *qrow = smem + warp * 2 * g.hd, *dorow = qrow + g.hd;
    load_row(qrow, q + row, g.hd, g.scale, lane);
    load_row(dorow, dout + orow, g.hd, 1.0f, lane);
    float part = 0.0f;
    for (int d = lane; d < g.hd; d += 32) part += dorow[d] * __bfloat162float(out[orow + d]);
    float D = warp_sum(part), lse = stats[(int64_t)t * g.nh + h];

    float acc[PER_LANE] = {};
    for (int j0 = t0; j0 <= t; j0 += 32) {
        int j = j0 + lane;
        float ds = 0.0f;
        if (j <= t) {
            float p = expf(dot(qrow, kh + j * g.ld, g.hd) - lse);
            ds = p * (dot(dorow, vh + j * g.ld, g.hd) - D);
        }
        int nj = min(32, t - j0 + 1);
        for (int jj = 0; jj < nj; jj++) axpy(acc, __shfl_sync(FULL_MASK, ds, jj), kh + (j0 + jj) * g.ld, g.hd, lane);
    }
    store_row(dq + row, acc, g.scale, g.hd, lane);
}

// dk = scale * sum_t dS_tj q_t and dv = sum_t P_tj dout_t over the queries t >= j of j's sequence and
// over the query heads of kv head g; D = dout_t . out_t is recomputed here rather than stored.
__global__ static void dkv_kernel(bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *out, const float *stats,
                                  const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *seq_start, int n_seqs,
                                  geom g)
{
    extern __shared__ float smem[];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int64_t task = (int64_t)blockIdx.x * WARPS + warp;
    if (task >= (int64_t)g.T * g.nkv) return;
    int j = (int)(task / g.nkv), kvh = (int)(task % g.nkv);
    int t1 = seq_start[seq_of_row(seq_start, n_seqs, j) + 1];
    const int64_t row = j * g.ld + kvh * g.hd;
    float *krow = smem + warp * 2 * g.hd, *vrow = krow + g.hd;
    load_row(krow, k + row, g.hd, g.scale, lane);
    load_row(vrow, v + row, g.hd, 1.0f, lane);

    float dk_acc[PER_LANE] = {}, dv_acc[PER_LANE] = {};
    for (int h = kvh * g.group; h < (kvh + 1) * g.group; h++) {
        const bf16 *qh = q + h * g.hd, *doh = dout + h * g.hd, *oh = out + h * g.hd;
        for (int t0 = j; t0 < t1; t0 += 32) {
            int t = t0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (t < t1) {
                const bf16 *dorow = doh + t * g.os, *orow = oh + t * g.os;
                float D = 0.0f;
                for (int d = 0; d < g.hd; d++) D += __bfloat162float(dorow[d]) * __bfloat162float(orow[d]);
                p = expf(dot(krow, qh + t * g.ld, g.hd) - stats[(int64_t)t * g.nh + h]);
                ds = p * (dot(vrow, dorow, g.hd) - D);
            }
            int nt = min(32, t1 - t0);
            for (int tt = 0; tt < nt; tt++) {
                axpy(dv_acc, __shfl_sync(FULL_MASK, p, tt), doh + (t0 + tt) * g.os, g.hd, lane);
                axpy(dk_acc, __shfl_sync(FULL_MASK, ds, tt), qh + (t0 + tt) * g.ld, g.hd, lane);
            }
        }
    }
    store_row(dk + row, dk_acc, g.scale, g.hd, lane);
    store_row(dv + row, dv_acc, 1.0f, g.hd, lane);
}

static geom geom_of(int T, int nh, int nkv, int hd, int ld, float scale)
{
    if (hd < 1 || hd > MAX_HD || nh < 1 || nkv < 1 || nh % nkv != 0)
        sl_fatal("attention fallback: unsupported heads (nh %d, nkv %d, head_dim %d; head_dim up to %d and nh a "
                 "multiple of nkv)", nh, nkv, hd, MAX_HD);
    if (ld < nh * hd) sl_fatal("attention fallback: rows %d apart cannot hold %d heads of %d", ld, nh, hd);
    geom g = {T, nh, nkv, hd, nh / nkv, ld, (int64_t)nh * hd, scale};
    return g;
}

extern "C" void kc_attention_fallback_fwd(void *out, float *stats, const void *q, const void *k, const void *v,
                                          int ld, const int32_t *seq_start_dev, int T, int n_seqs, int nh, int nkv,
                                          int hd, float scale, cudaStream_t s)
{
    geom g = geom_of(T, nh, nkv, hd, ld, scale);
    size_t smem = WARPS * (size_t)hd * sizeof(float);
    fwd_kernel<<<kc_blocks((int64_t)T * nh, WARPS), WARPS * 32, smem, s>>>(
        (bf16 *)out, stats, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, seq_start_dev, n_seqs, g);
    CUDA_LAUNCHED();
}

extern "C" void kc_attention_fallback_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out,
                                          const float *stats, const void *q, const void *k, const void *v, int ld,
                                          const int32_t *seq_start_dev, int T, int n_seqs, int nh, int nkv, int hd,
                                          float scale, cudaStream_t s)
{
    geom g = geom_of(T, nh, nkv, hd, ld, scale);
    size_t smem = WARPS * 2 * (size_t)hd * sizeof(float);
    dq_kernel<<<kc_blocks((int64_t)T * nh, WARPS), WARPS * 32, smem, s>>>(
        (bf16 *)dq, (const bf16 *)dout, (const bf16 *)out, stats, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
        seq_start_dev, n_seqs, g);
    CUDA_LAUNCHED();
    dkv_kernel<<<kc_blocks((int64_t)T * nkv, WARPS), WARPS * 32, smem, s>>>(
        (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, (const bf16 *)out, stats, (const bf16 *)q, (const bf16 *)k,
        (const bf16 *)v, seq_start_dev, n_seqs, g);
    CUDA_LAUNCHED();
}
