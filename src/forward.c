/* forward: the model's forward pass for evaluation and generation, one FSDP unit at a time:
 * x = embed(ids); x = layer(x) for each layer; then the LM head on norm(x): the cross-entropy of
 * every row (eval), or the logits of each sequence's last row (generate). */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "forward.h"
#include "runtime.h"

const void *model_lm_head(const sl_model *m)
{
    const fsdp_unit *head = &m->units[m->n_units - 1];
    return m->cfg.tie_word_embeddings ? m->units[0].frozen.dev : fsdp_member_dev(&head->frozen, "/lm_head/weight");
}

void forward_init(forward_state *f, const sl_model *m, int max_T, int max_seq)
{
    memset(f, 0, sizeof *f);
    layer_acts_alloc(&f->acts, &m->cfg, m->lora, max_T, max_seq, 1);
    pass_init(&f->pass, m, max_T, max_seq, 0, 0);
}

void forward_free(forward_state *f)
{
    layer_acts_free(&f->acts);
    pass_free(&f->pass);
    free(f->last_rows_host);
    BE->release(f->last_rows_buf), BE->release(f->last_xn);
    f->max_seqs = 0, f->last_rows_host = NULL, f->last_rows_buf = f->last_xn = NULL;
}

void forward_plan_next_logits(forward_state *f, const sl_model *m, int max_seqs)
{
    f->max_seqs = max_seqs;
    f->last_rows_host = sl_malloc((size_t)max_seqs * sizeof(int32_t), "last rows");
    f->last_rows_buf = BE->mirror_alloc((size_t)max_seqs * sizeof(int32_t), "last rows");
    f->last_xn = BE->alloc((size_t)max_seqs * (size_t)m->cfg.hidden_size * (size_t)BE->act_bytes, "last rows");
}

/* Embedding, every decoder layer and the final norm of batch b: returns the normalised hidden
 * states, with the head unit (and with tied embeddings unit 0, the head's weights) left gathered
 * for the head; release_head lets them go. */
static const void *forward_trunk(sl_model *m, forward_state *f, const sl_batch *b, const int32_t *labels)
{
    const sl_model_config *c = &m->cfg;
    const int L = c->num_layers;
    layer_acts a = f->acts;
    layer_pass ps = pass_batch(&f->pass, m, b, labels);
    a.T = b->T;
    /* Every rank gathers every unit, even with an empty batch, so collectives stay matched. */
    fsdp_gather(&m->units[0].frozen);
    BE->embedding_fwd(a.x_in, m->units[0].frozen.dev, ps.ids, b->T, c->hidden_size);
    if (!c->tie_word_embeddings) fsdp_release(&m->units[0].frozen);
    for (int l = 0; l < L; l++) {
        fsdp_unit *u = &m->units[1 + l];
        fsdp_unit_gather_ahead(u, l + 1 < L ? u + 1 : NULL);
        layer_weights w = layer_weights_of(u, l);
        lora_view lv = lora_view_of(m->lora, &u->train, l);
        layer_forward(&ps, &w, &lv, &a, a.x_in); /* in place: eval keeps no activations */
        fsdp_unit_release(u);
    }
    fsdp_unit *head = &m->units[L + 1];
    fsdp_gather(&head->frozen);
    if (b->T > 0)
        BE->rmsnorm_fwd(a.xn1, a.rstd1, a.x_in, fsdp_member_dev(&head->frozen, "/model/norm/weight"), b->T, 1,
                        c->hidden_size, c->hidden_size, (float)c->rms_norm_eps);
    return a.xn1;
}

static void release_head(sl_model *m)
{
    fsdp_release(&m->units[m->n_units - 1].frozen);
    if (m->cfg.tie_word_embeddings) fsdp_release(&m->units[0].frozen);
}

void model_forward_loss(sl_model *m, forward_state *f, const sl_batch *b, const int32_t *labels, double *row_loss,
                        float *logits)
{
    const int classify = m->num_labels > 0;
    fsdp_pool *score = &m->units[m->n_units - 1].train;
    const void *xn = forward_trunk(m, f, b, labels);
    if (classify) fsdp_gather(score);
    if (b->T > 0) {
        if (classify) {
            pass_cls_head(&f->pass, m, xn, b, 1.0f, NULL);
            BE->download(logits, f->pass.logits, (size_t)b->n_seqs * (size_t)m->num_labels * sizeof(float));
        } else {
            pass_lm_head(&f->pass, m, xn, b, 1.0f, NULL);
        }
        memcpy(row_loss, f->pass.row_loss, (size_t)(classify ? b->n_seqs : b->T) * sizeof(double));
    }
    if (classify) fsdp_release(score);
    release_head(m);
}

void model_forward_next_logits(sl_model *m, forward_state *f, const sl_batch *b, float *logits)
{
    const int S = b->n_seqs, D = m->cfg.hidden_size, V = m->cfg.vocab_size, chunk = f->pass.chunk;
    if (S > f->max_seqs) sl_fatal("internal error: %d sequences exceed the planned %d", S, f->max_seqs);
    for (int i = 0; i < S; i++) f->last_rows_host[i] = b->seq_start[i + 1] - 1;
    const int32_t *rows = BE->mirror(f->last_rows_buf, f->last_rows_host, (size_t)S * sizeof(int32_t));
    const void *xn = forward_trunk(m, f, b, NULL);
    if (b->T > 0) {
        BE->gather_rows(f->last_xn, xn, rows, S, D);
        const void *head_w = model_lm_head(m);
        for (int r = 0; r < S; r += chunk) {
            int n = S - r < chunk ? S - r : chunk;
            BE->linear_logits(f->pass.logits, act_at(f->last_xn, (int64_t)r * D), head_w, n, D, V);
            BE->download(logits + (size_t)r * (size_t)V, f->pass.logits, (size_t)n * (size_t)V * sizeof(float));
        }
    }
    release_head(m);
}
