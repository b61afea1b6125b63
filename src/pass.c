/* pass: batch mirrors, the rotary table and the heads, through the backend. */
#include "pass.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels.h"
#include "runtime.h"

enum { BATCH_IDS, BATCH_POS, BATCH_TARGET, BATCH_LABELS, BATCH_ROWS, BATCH_ARRAYS };

void pass_init(sl_pass *p, const sl_model *m, int max_T, int max_seq, int train, size_t logits_bytes)
{
    memset(p, 0, sizeof *p);
    const sl_model_config *c = &m->cfg;
    const size_t T = (size_t)(max_T > 0 ? max_T : 1), D = (size_t)c->hidden_size, V = (size_t)c->vocab_size;
    p->max_T = max_T, p->max_seq = max_seq;
    size_t table = (size_t)max_seq * (size_t)(c->head_dim / 2) * 2;
    p->rope_host = sl_malloc(table * sizeof(float), "rotary table");
    k_rope_table(p->rope_host, max_seq, c->head_dim, &c->rope);
    p->rope_buf = BE->mirror_alloc(table * sizeof(float), "rotary table");
    p->rope_cs = BE->mirror(p->rope_buf, p->rope_host, table * sizeof(float));
    p->batch_buf = BE->mirror_alloc(T * BATCH_ARRAYS * sizeof(int32_t), "batch");
    p->row_loss = sl_malloc(T * sizeof(double), "losses");
    p->row_loss_be = BE->host_memory ? p->row_loss : BE->alloc(T * sizeof(double), "losses");
    if (m->num_labels > 0) {
        p->chunk = (int)T;
        p->logits = BE->alloc(T * (size_t)m->num_labels * sizeof(float), "logits");
        p->rows_host = sl_malloc(T * sizeof(int32_t), "pooled rows");
        p->pooled = BE->alloc(T * D * (size_t)BE->act_bytes, "pooled");
        if (train) p->d_pooled = BE->alloc(T * D * (size_t)BE->act_bytes, "pooled");
    } else {
        p->chunk = (int)((logits_bytes ? logits_bytes : BE->logits_chunk_bytes) / (V * 4));
        if (p->chunk < 1) p->chunk = 1;
        if ((size_t)p->chunk > T) p->chunk = (int)T;
        p->logits = BE->alloc((size_t)p->chunk * V * sizeof(float), "logits");
    }
    /* fp32 backends take the logits' gradient in place of the logits */
    size_t logit_cols = m->num_labels > 0 ? (size_t)m->num_labels : V;
    if (train) p->dlogits = BE->act_bytes == 4 ? (void *)p->logits
                                                : BE->alloc((size_t)p->chunk * logit_cols * (size_t)BE->act_bytes, "logits");
}

void pass_free(sl_pass *p)
{
    if (p->dlogits != p->logits) BE->release(p->dlogits);
    BE->release(p->logits), BE->release(p->pooled), BE->release(p->d_pooled);
    BE->release(p->rope_buf), BE->release(p->batch_buf);
    if (p->row_loss_be != p->row_loss) BE->release(p->row_loss_be);
    free(p->rope_host), free(p->row_loss), free(p->rows_host);
    memset(p, 0, sizeof *p);
}

static const int32_t *mirror_ints(sl_pass *p, int slot, const int32_t *host, int n)
{
    void *buf = p->batch_buf ? (char *)p->batch_buf + (size_t)slot * (size_t)p->max_T * sizeof(int32_t) : NULL;
    return BE->mirror(buf, host, (size_t)n * sizeof(int32_t));
}

layer_pass pass_batch(sl_pass *p, const sl_model *m, const sl_batch *b, const int32_t *labels)
{
    if (b->T > p->max_T) sl_fatal("internal error: batch of %d rows exceeds the planned %d", b->T, p->max_T);
    for (int t = 0; t < b->T; t++)
        if (b->pos[t] < 0 || b->pos[t] >= p->max_seq)
            sl_fatal("internal error: position %d outside the rotary table of %d", b->pos[t], p->max_seq);
    p->ids = mirror_ints(p, BATCH_IDS, b->ids, b->T);
    p->pos = mirror_ints(p, BATCH_POS, b->pos, b->T);
    p->target = mirror_ints(p, BATCH_TARGET, b->target, b->T);
    if (m->num_labels > 0 && b->T > 0) {
        for (int i = 0; i < b->n_seqs; i++) p->rows_host[i] = b->seq_start[i + 1] - 1;
        p->rows = mirror_ints(p, BATCH_ROWS, p->rows_host, b->n_seqs);
        if (labels) p->labels = mirror_ints(p, BATCH_LABELS, labels, b->n_seqs);
    }
    return (layer_pass){.c = &m->cfg, .l = m->lora, .rope_cs = p->rope_cs, .max_seq = p->max_seq, .b = b,
                        .pos = p->pos, .ids = p->ids};
}

void pass_lm_head(sl_pass *p, const sl_model *m, const void *xn, const sl_batch *b, float weight, void *d_xn)
{
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    const void *head_w = model_lm_head(m);
    for (int r = 0; r < b->T; r += p->chunk) {
        int n = b->T - r < p->chunk ? b->T - r : p->chunk;
        BE->linear_logits(p->logits, act_at(xn, (int64_t)r * D), head_w, n, D, V);
        BE->cross_entropy(p->row_loss_be + r, d_xn ? p->dlogits : NULL, p->logits, p->target + r, weight, n, V);
        if (d_xn) BE->linear_bwd_data(act_at(d_xn, (int64_t)r * D), D, p->dlogits, V, head_w, n, D, V, 1.0f, 0);
    }
    BE->download(p->row_loss, p->row_loss_be, (size_t)b->T * sizeof(double)); /* one wait per pass, not per chunk */
}

void pass_cls_head(sl_pass *p, sl_model *m, const void *xn, const sl_batch *b, float weight, void *d_xn)
{
    fsdp_pool *train = &m->units[m->n_units - 1].train;
    const fsdp_member *score = fsdp_find(train, SCORE_PATH);
    const int K = m->num_labels, D = m->cfg.hidden_size, S = b->n_seqs;
    const void *w = act_at(train->dev, score->offset);
    BE->gather_rows(p->pooled, xn, p->rows, S, D);
    BE->linear_logits(p->logits, p->pooled, w, S, D, K);
    BE->cross_entropy(p->row_loss_be, d_xn ? p->dlogits : NULL, p->logits, p->labels, weight, S, K);
    BE->download(p->row_loss, p->row_loss_be, (size_t)S * sizeof(double));
    if (!d_xn) return;
    BE->linear_bwd_data(p->d_pooled, D, p->dlogits, K, w, S, D, K, 1.0f, 0);
    BE->linear_bwd_weight(train->grad_dev + score->offset, p->dlogits, K, p->pooled, D, S, D, K, 1.0f);
    BE->zero(d_xn, (size_t)b->T * (size_t)D * (size_t)BE->act_bytes);
    BE->scatter_rows(d_xn, p->d_pooled, p->rows, S, D);
}
