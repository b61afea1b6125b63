/* forward: the model's forward pass for evaluation, one FSDP unit at a time:
 * x = embed(ids); x = layer(x) for each layer; loss = cross-entropy(lm_head(norm(x))). */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "layer.h"
#include "model.h"
#include "runtime.h"

const float *model_lm_head(const sl_model *m)
{
    const fsdp_unit *head = &m->units[m->n_units - 1];
    return m->cfg.tie_word_embeddings ? m->units[0].frozen.full : fsdp_member_data(&head->frozen, "/lm_head/weight");
}

void model_head_loss(const sl_model *m, const float *xn, const sl_batch *b, double *row_loss)
{
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    const float *head_w = model_lm_head(m);
    int chunk = (int)((64u << 20) / ((size_t)V * 4)); /* logits in row chunks, never [T, vocab] whole */
    if (chunk < 1) chunk = 1;
    float *logits = sl_malloc((size_t)chunk * (size_t)V * 4, "logits");
    for (int r = 0; r < b->T; r += chunk) {
        int n = b->T - r < chunk ? b->T - r : chunk;
        k_linear_fwd(logits, xn + (size_t)r * D, head_w, NULL, n, D, V, 1.0f, 0);
        k_cross_entropy_fwd(row_loss + r, logits, b->target + r, n, V);
    }
    free(logits);
}

void model_forward_loss(sl_model *m, const sl_batch *b, double *row_loss)
{
    const sl_model_config *c = &m->cfg;
    const int L = c->num_layers, T = b->T > 0 ? b->T : 1;
    layer_acts a;
    layer_acts_alloc(&a, c, m->lora, T, 1);
    /* Every rank gathers every unit, even with an empty batch, so collectives stay matched. */
    fsdp_gather(&m->units[0].frozen);
    k_embedding_fwd(a.x_in, m->units[0].frozen.full, b->ids, b->T, c->hidden_size);
    if (!c->tie_word_embeddings) fsdp_release(&m->units[0].frozen);
    for (int l = 0; l < L; l++) {
        fsdp_unit *u = &m->units[1 + l];
        fsdp_unit_gather(u);
        layer_weights w = layer_weights_of(u, l);
        lora_view lv = lora_view_of(m->lora, &u->train, l);
        layer_forward(c, &w, m->lora, &lv, &a, b, a.x_in); /* in place: eval keeps no activations */
        fsdp_unit_release(u);
    }
    fsdp_unit *head = &m->units[L + 1];
    fsdp_gather(&head->frozen);
    if (b->T > 0) {
        k_rmsnorm_fwd(a.xn1, a.rstd1, a.x_in, fsdp_member_data(&head->frozen, "/model/norm/weight"), b->T,
                      c->hidden_size, (float)c->rms_norm_eps);
        model_head_loss(m, a.xn1, b, row_loss);
    }
    fsdp_release(&head->frozen);
    if (c->tie_word_embeddings) fsdp_release(&m->units[0].frozen);
    layer_acts_free(&a);
}
