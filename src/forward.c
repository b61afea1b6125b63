/* forward: the LLaMA-family forward pass over packed batches, one FSDP unit at a time:
 * x = embed(ids); per layer x += o(attn(rope(q, k), v)) and x += down(silu(gate) * up), each on the
 * RMS-normalised x; logits = lm_head(norm(x)); loss = cross-entropy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model.h"
#include "runtime.h"

/* Pointers into a gathered decoder-layer unit. */
typedef struct {
    const float *input_norm, *post_norm;
    const float *w[N_PROJ], *bias[N_PROJ];
} layer_view;

static layer_view view_layer(const sl_model *m, const fsdp_unit *u)
{
    layer_view v = {0};
    for (int i = 0; i < u->n_members; i++) {
        const sl_tensor_spec *t = &m->tensors[u->members[i].tensor];
        const float *data = u->full + u->members[i].offset;
        if (t->kind == TENSOR_LINEAR) v.w[t->proj] = data;
        else if (t->kind == TENSOR_BIAS) v.bias[t->proj] = data;
        else if (strstr(t->path, "input_layernorm")) v.input_norm = data;
        else v.post_norm = data;
    }
    return v;
}

/* Scratch for one layer of a batch of T rows. */
typedef struct {
    float *x, *xn, *rstd, *q, *k, *v, *att, *lse, *gate, *up;
} workspace;

static workspace workspace_alloc(const sl_model_config *c, int T)
{
    size_t D = (size_t)c->hidden_size, Q = (size_t)c->num_heads * c->head_dim,
           KV = (size_t)c->num_kv_heads * c->head_dim, F = (size_t)c->intermediate_size, t = (size_t)T;
    workspace w;
    w.x = sl_malloc(t * D * 4, "activations");
    w.xn = sl_malloc(t * D * 4, "activations");
    w.rstd = sl_malloc(t * 4, "activations");
    w.q = sl_malloc(t * Q * 4, "activations");
    w.k = sl_malloc(t * KV * 4, "activations");
    w.v = sl_malloc(t * KV * 4, "activations");
    w.att = sl_malloc(t * Q * 4, "activations");
    w.lse = sl_malloc(t * (size_t)c->num_heads * 4, "activations");
    w.gate = sl_malloc(t * F * 4, "activations");
    w.up = sl_malloc(t * F * 4, "activations");
    return w;
}

static void workspace_free(workspace *w)
{
    float *all[] = {w->x, w->xn, w->rstd, w->q, w->k, w->v, w->att, w->lse, w->gate, w->up};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static void layer_forward(const sl_model_config *c, const layer_view *lv, workspace *w, const sl_batch *b)
{
    const int T = b->T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    const int Q = c->num_heads * hd, KV = c->num_kv_heads * hd;
    const float eps = (float)c->rms_norm_eps;
    k_rmsnorm_fwd(w->xn, w->rstd, w->x, lv->input_norm, T, D, eps);
    k_linear_fwd(w->q, w->xn, lv->w[PROJ_Q], lv->bias[PROJ_Q], T, D, Q, 1.0f, 0);
    k_linear_fwd(w->k, w->xn, lv->w[PROJ_K], lv->bias[PROJ_K], T, D, KV, 1.0f, 0);
    k_linear_fwd(w->v, w->xn, lv->w[PROJ_V], lv->bias[PROJ_V], T, D, KV, 1.0f, 0);
    k_rope(w->q, b->pos, T, c->num_heads, hd, c->rope_theta, 0);
    k_rope(w->k, b->pos, T, c->num_kv_heads, hd, c->rope_theta, 0);
    k_attention_fwd(w->att, w->lse, w->q, w->k, w->v, b->seq_start, b->n_seqs, c->num_heads,
                    c->num_kv_heads, hd, 1.0f / sqrtf((float)hd));
    k_linear_fwd(w->x, w->att, lv->w[PROJ_O], NULL, T, Q, D, 1.0f, 1);
    k_rmsnorm_fwd(w->xn, w->rstd, w->x, lv->post_norm, T, D, eps);
    k_linear_fwd(w->gate, w->xn, lv->w[PROJ_GATE], NULL, T, D, F, 1.0f, 0);
    k_linear_fwd(w->up, w->xn, lv->w[PROJ_UP], NULL, T, D, F, 1.0f, 0);
    k_swiglu_fwd(w->gate, w->gate, w->up, (int64_t)T * F);
    k_linear_fwd(w->x, w->gate, lv->w[PROJ_DOWN], NULL, T, F, D, 1.0f, 1);
}

/* Logits in row chunks, so that [T, vocab] is never held whole. */
static void head_loss(const sl_model_config *c, const float *head_w, workspace *w, const sl_batch *b,
                      double *row_loss)
{
    const int V = c->vocab_size, D = c->hidden_size;
    int chunk = (int)((64u << 20) / ((size_t)V * 4));
    if (chunk < 1) chunk = 1;
    float *logits = sl_malloc((size_t)chunk * (size_t)V * 4, "logits");
    for (int r = 0; r < b->T; r += chunk) {
        int n = b->T - r < chunk ? b->T - r : chunk;
        k_linear_fwd(logits, w->xn + (size_t)r * D, head_w, NULL, n, D, V, 1.0f, 0);
        k_cross_entropy_fwd(row_loss + r, logits, b->target + r, n, V);
    }
    free(logits);
}

void model_forward_loss(sl_model *m, const sl_batch *b, double *row_loss)
{
    const sl_model_config *c = &m->cfg;
    const int L = c->num_layers;
    workspace w = workspace_alloc(c, b->T > 0 ? b->T : 1);
    /* Every rank gathers every unit, even with an empty batch, so collectives stay matched. */
    const float *embed = fsdp_gather(&m->units[0]);
    k_embedding_fwd(w.x, embed, b->ids, b->T, c->hidden_size);
    if (!c->tie_word_embeddings) fsdp_release(&m->units[0]);
    for (int l = 0; l < L; l++) {
        fsdp_gather(&m->units[1 + l]);
        layer_view lv = view_layer(m, &m->units[1 + l]);
        if (b->T > 0) layer_forward(c, &lv, &w, b);
        fsdp_release(&m->units[1 + l]);
    }
    fsdp_unit *head = &m->units[L + 1];
    fsdp_gather(head);
    const float *final_norm = head->full; /* the head unit starts with the final norm */
    const float *head_w = c->tie_word_embeddings ? embed : head->full + head->members[1].offset;
    if (b->T > 0) {
        k_rmsnorm_fwd(w.xn, w.rstd, w.x, final_norm, b->T, c->hidden_size, (float)c->rms_norm_eps);
        head_loss(c, head_w, &w, b, row_loss);
    }
    fsdp_release(head);
    if (c->tie_word_embeddings) fsdp_release(&m->units[0]);
    workspace_free(&w);
}
