/* attention: causal grouped-query attention inside each packed sequence, flash-style: the forward
 * keeps only lse = log(sum(exp(scores))) per query row, the backward recomputes the probabilities.
 * Work goes in blocks of QBLOCK query rows against their causal prefix of keys, with BLAS doing the
 * products. Block edges are counted from each sequence's start, so a row's result does not depend on
 * the other sequences in the batch, nor on the number of threads. */
#include "kernels.h"
#include "runtime.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

/* Query rows per block: the scores of one block (QBLOCK x sequence length) stay in a thread's cache
 * for typical lengths, and the causal waste (the upper triangle of the diagonal block) stays small. */
#define QBLOCK 64

/* One call's tensors and geometry, shared by all of its blocks. The forward sets the outputs
 * out_w/lse_w, the backward the inputs out/lse/dout and the gradients (NULL: skipped). */
typedef struct {
    const float *q, *k, *v, *out, *lse, *dout;
    float *out_w, *lse_w, *dq, *dk, *dv;
    int qs, ks;    /* row strides of q/out (n_heads * head_dim) and of k/v (n_kv_heads * head_dim) */
    int hd, group; /* head_dim, query heads per kv head */
    int T;         /* rows in the batch: the stride of lse from one head to the next */
    float scale;
} attn_call;

static attn_call call_of(const int32_t *seq_start, int n_seqs, int n_heads, int n_kv_heads, int head_dim,
                         float scale)
{
    return (attn_call){.qs = n_heads * head_dim, .ks = n_kv_heads * head_dim, .hd = head_dim,
                       .group = n_heads / n_kv_heads, .T = seq_start[n_seqs], .scale = scale};
}

static int longest_seq(const int32_t *seq_start, int n_seqs)
{
    int m = 0;
    for (int s = 0; s < n_seqs; s++) {
        int len = seq_start[s + 1] - seq_start[s];
        m = len > m ? len : m;
    }
    return m;
}

static int n_blocks(int len) { return (len + QBLOCK - 1) / QBLOCK; }

/* Where one block lives: query rows i0 .. i0+nb-1 of head h in the sequence starting at row t0, which
 * see keys 0 .. nk-1 (nk = i0 + nb). qoff/koff: offsets of its first q row and first k row. */
typedef struct {
    int i0, nb, nk;
    int64_t qoff, koff, lseoff;
} attn_block;

static attn_block block_at(const attn_call *a, int t0, int len, int h, int i0)
{
    int nb = len - i0 < QBLOCK ? len - i0 : QBLOCK;
    return (attn_block){.i0 = i0, .nb = nb, .nk = i0 + nb,
                        .qoff = (int64_t)(t0 + i0) * a->qs + (int64_t)h * a->hd,
                        .koff = (int64_t)t0 * a->ks + (int64_t)(h / a->group) * a->hd,
                        .lseoff = (int64_t)h * a->T + t0 + i0};
}

/* Softmax of row[0..last] in place (max-shifted, summed in double); returns its lse. */
static float softmax_row(float *row, int last)
{
    float m = row[0];
    for (int j = 1; j <= last; j++) m = row[j] > m ? row[j] : m;
    double sum = 0.0;
    for (int j = 0; j <= last; j++) sum += row[j] = expf(row[j] - m);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j <= last; j++) row[j] *= inv;
    return (float)(m + log(sum));
}

/* P[nb, nk] = softmax(scale * Q K^T) with the causal mask (key j > row i: 0). The forward (lse_w
 * set) stores each row's lse; the backward recomputes P as exp(S - lse) from the stored one. */
static void block_probs(float *P, const attn_call *a, const attn_block *b)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->nb, b->nk, a->hd, a->scale, a->q + b->qoff,
                a->qs, a->k + b->koff, a->ks, 0.0f, P, b->nk);
    for (int r = 0; r < b->nb; r++) {
        float *row = P + (int64_t)r * b->nk;
        int last = b->i0 + r;
        if (a->lse_w) {
            a->lse_w[b->lseoff + r] = softmax_row(row, last);
        } else {
            float lse = a->lse[b->lseoff + r];
            for (int j = 0; j <= last; j++) row[j] = expf(row[j] - lse);
        }
        for (int j = last + 1; j < b->nk; j++) row[j] = 0.0f;
    }
}

static void fwd_block(float *P, const attn_call *a, const attn_block *b)
{
    block_probs(P, a, b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->nb, a->hd, b->nk, 1.0f, P, b->nk,
                a->v + b->koff, a->ks, 0.0f, a->out_w + b->qoff, a->qs);
}

void k_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                     const int32_t *seq_start, int n_seqs, int n_heads, int n_kv_heads, int head_dim,
                     float scale)
{
    attn_call a = call_of(seq_start, n_seqs, n_heads, n_kv_heads, head_dim, scale);
    a.out_w = out, a.lse_w = lse, a.q = q, a.k = k, a.v = v;
    size_t scratch = (size_t)QBLOCK * longest_seq(seq_start, n_seqs) * sizeof(float);
#pragma omp parallel
    {
        float *P = sl_malloc(scratch, "attention probabilities");
        for (int s = 0; s < n_seqs; s++) {
            int t0 = seq_start[s], len = seq_start[s + 1] - t0, nbk = n_blocks(len);
            /* Blocks of one sequence and head write disjoint rows of out and lse: any order will do. */
#pragma omp for schedule(dynamic) nowait
            for (int task = 0; task < n_heads * nbk; task++) {
                attn_block b = block_at(&a, t0, len, task / nbk, (task % nbk) * QBLOCK);
                fwd_block(P, &a, &b);
            }
        }
        free(P);
    }
}

/* Backward of one block, with P = softmax, dP = dout V^T and D = rowsum(dout * out):
 * dS = P * (dP - D); dq += scale dS K; dk += scale dS^T Q; dv += P^T dout. */
static void bwd_block(float *P, float *dS, const attn_call *a, const attn_block *b)
{
    block_probs(P, a, b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->nb, b->nk, a->hd, 1.0f, a->dout + b->qoff,
                a->qs, a->v + b->koff, a->ks, 0.0f, dS, b->nk);
    for (int r = 0; r < b->nb; r++) {
        const float *o = a->out + b->qoff + (int64_t)r * a->qs, *dout = a->dout + b->qoff + (int64_t)r * a->qs;
        double D = 0.0;
        for (int d = 0; d < a->hd; d++) D += (double)dout[d] * o[d];
        float *ds = dS + (int64_t)r * b->nk;
        const float *p = P + (int64_t)r * b->nk;
        for (int j = 0; j < b->nk; j++) ds[j] = p[j] * (ds[j] - (float)D);
    }
    if (a->dq)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->nb, a->hd, b->nk, a->scale, dS, b->nk,
                    a->k + b->koff, a->ks, 1.0f, a->dq + b->qoff, a->qs);
    if (a->dk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b->nk, a->hd, b->nb, a->scale, dS, b->nk,
                    a->q + b->qoff, a->qs, 1.0f, a->dk + b->koff, a->ks);
    if (a->dv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b->nk, a->hd, b->nb, 1.0f, P, b->nk,
                    a->dout + b->qoff, a->qs, 1.0f, a->dv + b->koff, a->ks);
}

void k_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                     const float *lse, const float *q, const float *k, const float *v,
                     const int32_t *seq_start, int n_seqs, int n_heads, int n_kv_heads, int head_dim,
                     float scale)
{
    attn_call a = call_of(seq_start, n_seqs, n_heads, n_kv_heads, head_dim, scale);
    a.dq = dq, a.dk = dk, a.dv = dv, a.dout = dout, a.out = out, a.lse = lse;
    a.q = q, a.k = k, a.v = v;
    size_t scratch = (size_t)QBLOCK * longest_seq(seq_start, n_seqs) * sizeof(float);
#pragma omp parallel
    {
        float *P = sl_malloc(scratch, "attention probabilities");
        float *dS = sl_malloc(scratch, "attention score gradients");
        /* One task per (sequence, kv head): the query heads of a group all add into the same dk and
         * dv rows, so they run in a fixed order inside one task instead of racing. */
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < n_seqs; s++)
            for (int g = 0; g < n_kv_heads; g++) {
                int t0 = seq_start[s], len = seq_start[s + 1] - t0;
                for (int h = g * a.group; h < (g + 1) * a.group; h++)
                    for (int i0 = 0; i0 < len; i0 += QBLOCK) {
                        attn_block b = block_at(&a, t0, len, h, i0);
                        bwd_block(P, dS, &a, &b);
                    }
            }
        free(P);
        free(dS);
    }
}
