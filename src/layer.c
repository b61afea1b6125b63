/* layer: decoder layer forward and backward:
 *   x_mid = x_in + o(attn(rope(q(n1)), rope(k(n1)), v(n1)))   with n1 = rmsnorm(x_in)
 *   x_out = x_mid + down(silu(gate(n2)) * up(n2))              with n2 = rmsnorm(x_mid)
 * where every projection p may carry an adapter: p(x) = W x + b + scale * B (A dropout(x)). */
#include "layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"
#include "runtime.h"

layer_weights layer_weights_of(const fsdp_unit *unit, int layer)
{
    layer_weights w = {0};
    char path[112], module[64];
    modelcfg_layer_path(path, sizeof path, layer, "input_layernorm/weight");
    w.input_norm = fsdp_unit_data(unit, path);
    modelcfg_layer_path(path, sizeof path, layer, "post_attention_layernorm/weight");
    w.post_norm = fsdp_unit_data(unit, path);
    for (int p = 0; p < N_PROJ; p++) {
        snprintf(module, sizeof module, "%s/%s/weight", p < PROJ_GATE ? "self_attn" : "mlp", PROJ_NAMES[p]);
        modelcfg_layer_path(path, sizeof path, layer, module);
        w.w[p] = fsdp_unit_data(unit, path);
        snprintf(module, sizeof module, "self_attn/%s/bias", PROJ_NAMES[p]);
        modelcfg_layer_path(path, sizeof path, layer, module);
        w.bias[p] = fsdp_unit_data(unit, path);
    }
    return w;
}

typedef struct { int64_t in, out; } proj_dims;

static proj_dims dims_of(const sl_model_config *c, int p)
{
    const int64_t D = c->hidden_size, F = c->intermediate_size, Q = (int64_t)c->num_heads * c->head_dim,
                  KV = (int64_t)c->num_kv_heads * c->head_dim;
    const proj_dims d[N_PROJ] = {{D, Q}, {D, KV}, {D, KV}, {Q, D}, {D, F}, {D, F}, {F, D}};
    return d[p];
}

static float *falloc(size_t n) { return sl_malloc(n * sizeof(float), "activations"); }

void layer_acts_alloc(layer_acts *a, const sl_model_config *c, const sl_lora *l, int T, int own_input)
{
    memset(a, 0, sizeof *a);
    const size_t t = (size_t)(T > 0 ? T : 1), D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size,
                 Q = (size_t)c->num_heads * c->head_dim, KV = (size_t)c->num_kv_heads * c->head_dim;
    a->T = T;
    if ((a->owns_input = own_input)) a->x_in = falloc(t * D);
    a->xn1 = falloc(t * D), a->rstd1 = falloc(t), a->q = falloc(t * Q), a->k = falloc(t * KV);
    a->v = falloc(t * KV), a->att = falloc(t * Q), a->lse = falloc(t * (size_t)c->num_heads);
    a->x_mid = falloc(t * D), a->xn2 = falloc(t * D), a->rstd2 = falloc(t);
    a->gate = falloc(t * F), a->up = falloc(t * F), a->act = falloc(t * F);
    for (int p = 0; l && p < N_PROJ; p++) {
        if (!(l->targets & (1u << p))) continue;
        a->lora_u[p] = falloc(t * (size_t)l->r);
        if (l->dropout > 0) a->lora_x[p] = falloc(t * (size_t)dims_of(c, p).in);
    }
}

void layer_acts_free(layer_acts *a)
{
    float *all[] = {a->xn1, a->rstd1, a->q, a->k, a->v, a->att, a->lse, a->x_mid, a->xn2, a->rstd2,
                    a->gate, a->up, a->act};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    for (int p = 0; p < N_PROJ; p++) free(a->lora_u[p]), free(a->lora_x[p]);
    if (a->owns_input) free(a->x_in);
    memset(a, 0, sizeof *a);
}

/* Inverted dropout keep-mask entry for element i of projection p's input. */
static int dropout_keeps(const layer_acts *a, int p, int64_t i, double rate)
{
    return rng_hash_uniform(a->dropout_key, (uint64_t)p, (uint64_t)i) >= rate;
}

static void proj_forward(float *y, const float *x, int p, int accumulate, const sl_model_config *c,
                         const layer_weights *w, const sl_lora *l, const lora_view *lv, layer_acts *a)
{
    const int T = a->T;
    proj_dims d = dims_of(c, p);
    k_linear_fwd(y, x, w->w[p], w->bias[p], T, (int)d.in, (int)d.out, 1.0f, accumulate);
    if (!lv || !lv->A[p]) return;
    const float *xd = x;
    if (a->lora_x[p]) {
        const float keep = (float)(1.0 / (1.0 - l->dropout));
        for (int64_t i = 0; i < (int64_t)T * d.in; i++)
            a->lora_x[p][i] = dropout_keeps(a, p, i, l->dropout) ? x[i] * keep : 0.0f;
        xd = a->lora_x[p];
    }
    k_linear_fwd(a->lora_u[p], xd, lv->A[p], NULL, T, (int)d.in, l->r, 1.0f, 0);
    k_linear_fwd(y, a->lora_u[p], lv->B[p], NULL, T, l->r, (int)d.out, l->scale, 1);
}

/* dx += d/dx of projection p at input x given dy; adapter gradients into lv. */
static void proj_backward(float *dx, const float *dy, const float *x, int p, const sl_model_config *c,
                          const layer_weights *w, const sl_lora *l, const lora_view *lv, const layer_acts *a)
{
    const int T = a->T;
    proj_dims d = dims_of(c, p);
    k_linear_bwd(dx, NULL, NULL, dy, x, w->w[p], T, (int)d.in, (int)d.out, 1.0f);
    if (!lv || !lv->A[p]) return;
    float *du = sl_calloc((size_t)T * (size_t)l->r, sizeof(float), "adapter gradient");
    k_linear_bwd(du, lv->dB[p], NULL, dy, a->lora_u[p], lv->B[p], T, l->r, (int)d.out, l->scale);
    if (!a->lora_x[p]) {
        k_linear_bwd(dx, lv->dA[p], NULL, du, x, lv->A[p], T, (int)d.in, l->r, 1.0f);
    } else {
        float *dxd = sl_calloc((size_t)T * (size_t)d.in, sizeof(float), "adapter gradient");
        k_linear_bwd(dxd, lv->dA[p], NULL, du, a->lora_x[p], lv->A[p], T, (int)d.in, l->r, 1.0f);
        const float keep = (float)(1.0 / (1.0 - l->dropout));
        for (int64_t i = 0; i < (int64_t)T * d.in; i++)
            if (dropout_keeps(a, p, i, l->dropout)) dx[i] += dxd[i] * keep;
        free(dxd);
    }
    free(du);
}

void layer_forward(const sl_model_config *c, const layer_weights *w, const sl_lora *l, const lora_view *lv,
                   layer_acts *a, const sl_batch *b, float *x_out)
{
    const int T = b->T, D = c->hidden_size, hd = c->head_dim;
    const float eps = (float)c->rms_norm_eps;
    if (T == 0) return;
    k_rmsnorm_fwd(a->xn1, a->rstd1, a->x_in, w->input_norm, T, D, eps);
    proj_forward(a->q, a->xn1, PROJ_Q, 0, c, w, l, lv, a);
    proj_forward(a->k, a->xn1, PROJ_K, 0, c, w, l, lv, a);
    proj_forward(a->v, a->xn1, PROJ_V, 0, c, w, l, lv, a);
    k_rope(a->q, b->pos, T, c->num_heads, hd, c->rope_theta, 0);
    k_rope(a->k, b->pos, T, c->num_kv_heads, hd, c->rope_theta, 0);
    k_attention_fwd(a->att, a->lse, a->q, a->k, a->v, b->seq_start, b->n_seqs, c->num_heads, c->num_kv_heads,
                    hd, 1.0f / sqrtf((float)hd));
    memcpy(a->x_mid, a->x_in, (size_t)T * D * sizeof(float));
    proj_forward(a->x_mid, a->att, PROJ_O, 1, c, w, l, lv, a);
    k_rmsnorm_fwd(a->xn2, a->rstd2, a->x_mid, w->post_norm, T, D, eps);
    proj_forward(a->gate, a->xn2, PROJ_GATE, 0, c, w, l, lv, a);
    proj_forward(a->up, a->xn2, PROJ_UP, 0, c, w, l, lv, a);
    k_swiglu_fwd(a->act, a->gate, a->up, (int64_t)T * c->intermediate_size);
    if (x_out != a->x_mid) memcpy(x_out, a->x_mid, (size_t)T * D * sizeof(float));
    proj_forward(x_out, a->act, PROJ_DOWN, 1, c, w, l, lv, a);
}

void layer_backward(const sl_model_config *c, const layer_weights *w, const sl_lora *l, const lora_view *lv,
                    const layer_acts *a, const sl_batch *b, float *dx)
{
    const int T = b->T, D = c->hidden_size, hd = c->head_dim;
    if (T == 0) return;
    const size_t t = (size_t)T, F = (size_t)c->intermediate_size, Q = (size_t)c->num_heads * hd,
                 KV = (size_t)c->num_kv_heads * hd;
    float *d_act = sl_calloc(t * F, 4, "gradients"), *d_gate = sl_calloc(t * F, 4, "gradients");
    float *d_up = sl_calloc(t * F, 4, "gradients"), *d_xn = sl_calloc(t * (size_t)D, 4, "gradients");
    /* MLP: dx already holds d(x_out), which is also the residual part of d(x_mid) */
    proj_backward(d_act, dx, a->act, PROJ_DOWN, c, w, l, lv, a);
    k_swiglu_bwd(d_gate, d_up, d_act, a->gate, a->up, (int64_t)t * (int64_t)F);
    proj_backward(d_xn, d_gate, a->xn2, PROJ_GATE, c, w, l, lv, a);
    proj_backward(d_xn, d_up, a->xn2, PROJ_UP, c, w, l, lv, a);
    k_rmsnorm_bwd(dx, NULL, d_xn, a->x_mid, w->post_norm, a->rstd2, T, D);
    free(d_act), free(d_gate), free(d_up);
    /* attention: dx now holds d(x_mid), the residual part of d(x_in) */
    float *d_att = sl_calloc(t * Q, 4, "gradients"), *dq = sl_calloc(t * Q, 4, "gradients");
    float *dk = sl_calloc(t * KV, 4, "gradients"), *dv = sl_calloc(t * KV, 4, "gradients");
    proj_backward(d_att, dx, a->att, PROJ_O, c, w, l, lv, a);
    k_attention_bwd(dq, dk, dv, d_att, a->att, a->lse, a->q, a->k, a->v, b->seq_start, b->n_seqs, c->num_heads,
                    c->num_kv_heads, hd, 1.0f / sqrtf((float)hd));
    k_rope(dq, b->pos, T, c->num_heads, hd, c->rope_theta, 1);
    k_rope(dk, b->pos, T, c->num_kv_heads, hd, c->rope_theta, 1);
    memset(d_xn, 0, t * (size_t)D * 4);
    proj_backward(d_xn, dq, a->xn1, PROJ_Q, c, w, l, lv, a);
    proj_backward(d_xn, dk, a->xn1, PROJ_K, c, w, l, lv, a);
    proj_backward(d_xn, dv, a->xn1, PROJ_V, c, w, l, lv, a);
    k_rmsnorm_bwd(dx, NULL, d_xn, a->x_in, w->input_norm, a->rstd1, T, D);
    free(d_att), free(dq), free(dk), free(dv), free(d_xn);
}
