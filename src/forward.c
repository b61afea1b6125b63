/* forward: the model's forward pass for evaluation, one FSDP unit at a time:
 * x = embed(ids); x = layer(x) for each layer; loss = cross-entropy(lm_head(norm(x))). */
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
    layer_acts_alloc(&f->acts, &m->cfg, m->lora, max_T, max_seq, 1);
    pass_init(&f->pass, m, max_T, max_seq, 0, 0);
}

void forward_free(forward_state *f)
{
    layer_acts_free(&f->acts);
    pass_free(&f->pass);
}

void model_forward_loss(sl_model *m, forward_state *f, const sl_batch *b, const int32_t *labels, double *row_loss,
                        float *logits)
{
    const sl_model_config *c = &m->cfg;
    const int L = c->num_layers, classify = m->num_labels > 0;
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
    if (classify) fsdp_gather(&head->train);
    if (b->T > 0) {
        BE->rmsnorm_fwd(a.xn1, a.rstd1, a.x_in, fsdp_member_dev(&head->frozen, "/model/norm/weight"), b->T, 1,
                        c->hidden_size, c->hidden_size, (float)c->rms_norm_eps);
        if (classify) {
            pass_cls_head(&f->pass, m, a.xn1, b, 1.0f, NULL);
            BE->download(logits, f->pass.logits, (size_t)b->n_seqs * (size_t)m->num_labels * sizeof(float));
        } else {
            pass_lm_head(&f->pass, m, a.xn1, b, 1.0f, NULL);
        }
        memcpy(row_loss, f->pass.row_loss, (size_t)(classify ? b->n_seqs : b->T) * sizeof(double));
    }
    if (classify) fsdp_release(&head->train);
    fsdp_release(&head->frozen);
    if (c->tie_word_embeddings) fsdp_release(&m->units[0].frozen);
}
