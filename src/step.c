/* step: one micro-batch of training, forward then backward, unit by unit. */
#include "step.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "runtime.h"

static void *act_rows(int T, int width, const char *what)
{
    return BE->alloc((size_t)T * (size_t)width * (size_t)BE->act_bytes, what);
}

void step_init(step_state *s, const sl_model *m, int max_T, int max_seq, int act_ckpt, int act_offload)
{
    memset(s, 0, sizeof *s);
    const sl_model_config *c = &m->cfg;
    const int L = c->num_layers, D = c->hidden_size;
    s->max_T = max_T;
    s->act_ckpt = act_ckpt;
    s->acts = sl_calloc((size_t)(act_ckpt ? 1 : L), sizeof *s->acts, "activations");
    for (int l = 0; l < (act_ckpt ? 1 : L); l++) layer_acts_alloc(&s->acts[l], c, m->lora, max_T, max_seq, !act_ckpt);
    if (act_ckpt) saved_inputs_init(&s->saved, L, max_T, D, act_offload);
    s->x = act_rows(max_T, D, "activations");
    s->dx = act_rows(max_T, D, "gradients");
    s->xn_final = act_rows(max_T, D, "activations");
    s->d_xn = act_rows(max_T, D, "gradients");
    s->rstd_final = BE->alloc((size_t)max_T * sizeof(float), "activations");
    layer_scratch_alloc(&s->scratch, c, m->lora, max_T);
    /* recomputing layers, the run is after memory: a quarter of the logits chunk, a few more GEMMs */
    pass_init(&s->pass, m, max_T, max_seq, 1, act_ckpt ? BE->logits_chunk_bytes / 4 : 0);
}

void step_free(step_state *s, const sl_model *m)
{
    const int L = m->cfg.num_layers;
    for (int l = 0; l < (s->act_ckpt ? 1 : L); l++) layer_acts_free(&s->acts[l]);
    if (s->act_ckpt) saved_inputs_free(&s->saved);
    free(s->acts);
    BE->release(s->x), BE->release(s->dx), BE->release(s->xn_final), BE->release(s->d_xn);
    BE->release(s->rstd_final);
    layer_scratch_free(&s->scratch);
    pass_free(&s->pass);
    memset(s, 0, sizeof *s);
}

void step_zero_grads(sl_model *m)
{
    for (int u = 0; u < m->n_units; u++) fsdp_grad_zero(&m->units[u].train);
}

void step_grads_wait(sl_model *m)
{
    for (int u = 0; u < m->n_units; u++) fsdp_grad_wait(&m->units[u].train);
}

/* Where forward writes layer l's input, once the buffer is free to write. */
static void *input_to_write(step_state *s, int l)
{
    return s->act_ckpt ? saved_input_use(&s->saved, l) : s->acts[l].x_in;
}

/* After the compute writing layer l's input is issued. */
static void input_written(step_state *s, int l, int T)
{
    if (s->act_ckpt) saved_input_offload(&s->saved, l, T);
}

/* The activations of layer l: its own slot, or the scratch slot pointed at the saved input. */
static layer_acts *acts_of(step_state *s, int l, int T)
{
    layer_acts *a = &s->acts[s->act_ckpt ? 0 : l];
    if (s->act_ckpt) a->x_in = saved_input_at(&s->saved, l);
    a->T = T;
    a->dropout_key = s->dropout_key ^ ((uint64_t)(l + 1) << 48); /* the same masks when recomputed */
    return a;
}

static void forward_layers(sl_model *m, step_state *s, const layer_pass *ps)
{
    const sl_model_config *c = &m->cfg;
    const int T = ps->b->T;
    fsdp_gather(&m->units[0].frozen);
    BE->embedding_fwd(input_to_write(s, 0), m->units[0].frozen.dev, ps->ids, T, c->hidden_size);
    input_written(s, 0, T);
    fsdp_release(&m->units[0].frozen);
    for (int l = 0; l < c->num_layers; l++) {
        fsdp_unit *u = &m->units[1 + l];
        const int last = l + 1 == c->num_layers;
        fsdp_unit_gather_ahead(u, last ? NULL : u + 1);
        layer_weights w = layer_weights_of(u, l);
        lora_view lv = lora_view_of(m->lora, &u->train, l);
        layer_forward(ps, &w, &lv, acts_of(s, l, T), last ? s->x : input_to_write(s, l + 1));
        if (!last) input_written(s, l + 1, T);
        fsdp_unit_release(u);
    }
}

/* Final norm and head: the loss, and the gradient of the final hidden states into s->dx. */
static double head_forward_backward(sl_model *m, step_state *s, const sl_batch *b, double loss_weight)
{
    const sl_model_config *c = &m->cfg;
    fsdp_unit *head = &m->units[m->n_units - 1];
    fsdp_gather(&head->frozen);
    fsdp_gather(&head->train);
    if (c->tie_word_embeddings) fsdp_gather(&m->units[0].frozen);
    const void *norm_w = fsdp_member_dev(&head->frozen, "/model/norm/weight");
    double loss = 0;
    if (b->T > 0) {
        BE->rmsnorm_fwd(s->xn_final, s->rstd_final, s->x, norm_w, b->T, 1, c->hidden_size, c->hidden_size,
                        (float)c->rms_norm_eps);
        const int classify = m->num_labels > 0;
        if (classify) pass_cls_head(&s->pass, m, s->xn_final, b, (float)loss_weight, s->d_xn);
        else pass_lm_head(&s->pass, m, s->xn_final, b, (float)loss_weight, s->d_xn);
        for (int i = 0; i < (classify ? b->n_seqs : b->T); i++)
            if (classify || b->target[i] >= 0) loss += s->pass.row_loss[i] * loss_weight;
        BE->rmsnorm_bwd(s->dx, s->d_xn, s->x, norm_w, s->rstd_final, b->T, 1, c->hidden_size, c->hidden_size, 0);
    }
    if (c->tie_word_embeddings) fsdp_release(&m->units[0].frozen);
    fsdp_release(&head->frozen);
    fsdp_release(&head->train);
    if (s->reduce_grads) fsdp_reduce_grad(&head->train);
    return loss;
}

static void backward_layers(sl_model *m, step_state *s, const layer_pass *ps)
{
    const sl_model_config *c = &m->cfg;
    for (int l = c->num_layers - 1; l >= 0; l--) {
        fsdp_unit *u = &m->units[1 + l];
        fsdp_unit_gather_ahead(u, l > 0 ? u - 1 : NULL);
        layer_weights w = layer_weights_of(u, l);
        lora_view lv = lora_view_of(m->lora, &u->train, l);
        if (s->act_ckpt) {
            saved_input_prefetch(&s->saved, l - 1, ps->b->T); /* arrives while layer l computes */
            saved_input_use(&s->saved, l);
        }
        layer_acts *a = acts_of(s, l, ps->b->T);
        if (s->act_ckpt) layer_forward(ps, &w, &lv, a, NULL); /* recompute what backward reads */
        layer_backward(ps, &w, &lv, a, &s->scratch, s->dx);
        fsdp_unit_release(u);
        if (s->reduce_grads) fsdp_reduce_grad(&u->train); /* overlaps the next unit's backward */
    }
}

double step_micro(sl_model *m, step_state *s, const sl_batch *b, const int32_t *labels, double loss_weight,
                  uint64_t dropout_key)
{
    s->dropout_key = dropout_key;
    layer_pass ps = pass_batch(&s->pass, m, b, labels);
    forward_layers(m, s, &ps);
    double loss = head_forward_backward(m, s, b, loss_weight);
    backward_layers(m, s, &ps);
    return loss;
}
