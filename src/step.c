/* step: one micro-batch of training, forward then backward, unit by unit. */
#include "step.h"

#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "runtime.h"

void step_init(step_state *s, const sl_model *m, int max_T, int act_ckpt)
{
    memset(s, 0, sizeof *s);
    const sl_model_config *c = &m->cfg;
    const size_t T = (size_t)max_T, D = (size_t)c->hidden_size;
    const int L = c->num_layers;
    s->max_T = max_T;
    s->act_ckpt = act_ckpt;
    s->acts = sl_calloc((size_t)(act_ckpt ? 1 : L), sizeof *s->acts, "activations");
    for (int l = 0; l < (act_ckpt ? 1 : L); l++) layer_acts_alloc(&s->acts[l], c, m->lora, max_T, !act_ckpt);
    if (act_ckpt) {
        s->saved_x = sl_calloc((size_t)L, sizeof *s->saved_x, "activations");
        for (int l = 0; l < L; l++) s->saved_x[l] = sl_malloc(T * D * 4, "activations");
    }
    s->x = sl_malloc(T * D * 4, "activations");
    s->dx = sl_malloc(T * D * 4, "gradients");
    s->xn_final = sl_malloc(T * D * 4, "activations");
    s->rstd_final = sl_malloc(T * 4, "activations");
}

void step_free(step_state *s, const sl_model *m)
{
    const int L = m->cfg.num_layers;
    for (int l = 0; l < (s->act_ckpt ? 1 : L); l++) layer_acts_free(&s->acts[l]);
    for (int l = 0; s->saved_x && l < L; l++) free(s->saved_x[l]);
    free(s->acts), free(s->saved_x);
    free(s->x), free(s->dx), free(s->xn_final), free(s->rstd_final);
    memset(s, 0, sizeof *s);
}

void step_zero_grads(sl_model *m)
{
    for (int u = 0; u < m->n_units; u++) {
        fsdp_pool *p = &m->units[u].train;
        size_t bytes = (size_t)p->shard_numel * (size_t)RT.world * sizeof(float);
        if (!p->grad_full) p->grad_full = sl_malloc(bytes, "full gradient");
        memset(p->grad_full, 0, bytes);
    }
}

/* Where layer l's input is kept. */
static float *layer_input(step_state *s, int l) { return s->act_ckpt ? s->saved_x[l] : s->acts[l].x_in; }

/* The activations of layer l: its own slot, or the scratch slot pointed at the saved input. */
static layer_acts *acts_of(step_state *s, int l, int T)
{
    layer_acts *a = &s->acts[s->act_ckpt ? 0 : l];
    if (s->act_ckpt) a->x_in = s->saved_x[l];
    a->T = T;
    a->dropout_key = s->dropout_key ^ ((uint64_t)(l + 1) << 48); /* the same masks when recomputed */
    return a;
}

static void forward_layers(sl_model *m, step_state *s, const sl_batch *b)
{
    const sl_model_config *c = &m->cfg;
    fsdp_gather(&m->units[0].frozen);
    k_embedding_fwd(layer_input(s, 0), m->units[0].frozen.full, b->ids, b->T, c->hidden_size);
    fsdp_release(&m->units[0].frozen);
    for (int l = 0; l < c->num_layers; l++) {
        fsdp_unit *u = &m->units[1 + l];
        fsdp_unit_gather(u);
        layer_weights w = layer_weights_of(u, l);
        lora_view lv = lora_view_of(m->lora, &u->train, l);
        float *out = l + 1 < c->num_layers ? layer_input(s, l + 1) : s->x;
        layer_forward(c, &w, m->lora, &lv, acts_of(s, l, b->T), b, out);
        fsdp_unit_release(u);
    }
}

/* Causal LM head: loss and d(final hidden) in row chunks. */
static double lm_head_backward(sl_model *m, step_state *s, const sl_batch *b, double loss_weight, float *d_xn)
{
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    const float *head_w = model_lm_head(m);
    int chunk = (int)((64u << 20) / ((size_t)V * 4));
    if (chunk < 1) chunk = 1;
    float *logits = sl_malloc((size_t)chunk * (size_t)V * 4, "logits");
    float *weight = sl_malloc((size_t)chunk * 4, "loss weights");
    double *row_loss = sl_malloc((size_t)chunk * 8, "losses"), loss = 0;
    for (int r = 0; r < b->T; r += chunk) {
        int n = b->T - r < chunk ? b->T - r : chunk;
        k_linear_fwd(logits, s->xn_final + (size_t)r * D, head_w, NULL, n, D, V, 1.0f, 0);
        k_cross_entropy_fwd(row_loss, logits, b->target + r, n, V);
        for (int i = 0; i < n; i++) {
            weight[i] = (float)loss_weight;
            loss += b->target[r + i] >= 0 ? row_loss[i] * loss_weight : 0.0;
        }
        k_cross_entropy_bwd(logits, logits, b->target + r, weight, n, V);
        k_linear_bwd(d_xn + (size_t)r * D, NULL, NULL, logits, s->xn_final + (size_t)r * D, head_w, n, D, V, 1.0f);
    }
    free(logits), free(weight), free(row_loss);
    return loss;
}

/* Classification head on the last row of each sequence; its weight is trainable. */
static double cls_head_backward(sl_model *m, step_state *s, const sl_batch *b, const int32_t *labels,
                                double loss_weight, float *d_xn)
{
    fsdp_pool *train = &m->units[m->n_units - 1].train;
    const fsdp_member *score = fsdp_find(train, SCORE_PATH);
    const int K = m->num_labels, D = m->cfg.hidden_size, S = b->n_seqs;
    const float *w = train->full + score->offset;
    float *dw = train->grad_full + score->offset;
    float *pooled = sl_malloc((size_t)S * D * 4, "pooled"), *logits = sl_malloc((size_t)S * K * 4, "logits");
    float *d_pooled = sl_calloc((size_t)S * D, 4, "pooled"), *weight = sl_malloc((size_t)S * 4, "weights");
    double *row_loss = sl_malloc((size_t)S * 8, "losses"), loss = 0;
    for (int i = 0; i < S; i++) {
        memcpy(pooled + (size_t)i * D, s->xn_final + (size_t)(b->seq_start[i + 1] - 1) * D, (size_t)D * 4);
        weight[i] = (float)loss_weight;
    }
    k_linear_fwd(logits, pooled, w, NULL, S, D, K, 1.0f, 0);
    k_cross_entropy_fwd(row_loss, logits, labels, S, K);
    for (int i = 0; i < S; i++) loss += row_loss[i] * loss_weight;
    k_cross_entropy_bwd(logits, logits, labels, weight, S, K);
    k_linear_bwd(d_pooled, dw, NULL, logits, pooled, w, S, D, K, 1.0f);
    for (int i = 0; i < S; i++)
        memcpy(d_xn + (size_t)(b->seq_start[i + 1] - 1) * D, d_pooled + (size_t)i * D, (size_t)D * 4);
    free(pooled), free(logits), free(d_pooled), free(weight), free(row_loss);
    return loss;
}

static double head_forward_backward(sl_model *m, step_state *s, const sl_batch *b, const int32_t *labels,
                                    double loss_weight)
{
    const sl_model_config *c = &m->cfg;
    fsdp_unit *head = &m->units[m->n_units - 1];
    fsdp_gather(&head->frozen);
    fsdp_gather(&head->train);
    if (c->tie_word_embeddings) fsdp_gather(&m->units[0].frozen);
    const float *norm_w = fsdp_member_data(&head->frozen, "/model/norm/weight");
    double loss = 0;
    if (b->T > 0) {
        k_rmsnorm_fwd(s->xn_final, s->rstd_final, s->x, norm_w, b->T, c->hidden_size, (float)c->rms_norm_eps);
        float *d_xn = sl_calloc((size_t)b->T * c->hidden_size, 4, "gradients");
        loss = m->num_labels > 0 ? cls_head_backward(m, s, b, labels, loss_weight, d_xn)
                                 : lm_head_backward(m, s, b, loss_weight, d_xn);
        memset(s->dx, 0, (size_t)b->T * c->hidden_size * 4);
        k_rmsnorm_bwd(s->dx, NULL, d_xn, s->x, norm_w, s->rstd_final, b->T, c->hidden_size);
        free(d_xn);
    }
    if (c->tie_word_embeddings) fsdp_release(&m->units[0].frozen);
    fsdp_release(&head->frozen);
    fsdp_release(&head->train);
    return loss;
}

static void backward_layers(sl_model *m, step_state *s, const sl_batch *b)
{
    const sl_model_config *c = &m->cfg;
    for (int l = c->num_layers - 1; l >= 0; l--) {
        fsdp_unit *u = &m->units[1 + l];
        fsdp_unit_gather(u);
        layer_weights w = layer_weights_of(u, l);
        lora_view lv = lora_view_of(m->lora, &u->train, l);
        layer_acts *a = acts_of(s, l, b->T);
        if (s->act_ckpt) layer_forward(c, &w, m->lora, &lv, a, b, s->xn_final); /* recompute; output unused */
        layer_backward(c, &w, m->lora, &lv, a, b, s->dx);
        fsdp_unit_release(u);
    }
}

double step_micro(sl_model *m, step_state *s, const sl_batch *b, const int32_t *labels, double loss_weight,
                  uint64_t dropout_key)
{
    if (b->T > s->max_T) sl_fatal("internal error: batch of %d rows exceeds the planned %d", b->T, s->max_T);
    s->dropout_key = dropout_key;
    forward_layers(m, s, b);
    double loss = head_forward_backward(m, s, b, labels, loss_weight);
    backward_layers(m, s, b);
    return loss;
}
