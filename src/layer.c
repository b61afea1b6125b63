/* layer: decoder layer forward and backward:
 *   x_mid = x_in + o(attn(rope(q(n1)), rope(k(n1)), v(n1)))   with n1 = rmsnorm(x_in)
 *   x_out = x_mid + down(silu(gate(n2)) * up(n2))              with n2 = rmsnorm(x_mid)
 * where every projection p may carry an adapter: p(x) = W x + b + scale * B (A dropout(x)). */
#include "layer.h"

#include <math.h>
#include <string.h>

#include "backend.h"
#include "runtime.h"

layer_weights layer_weights_of(const fsdp_unit *unit, int layer)
{
    layer_weights w = {0};
    char path[112], module[64];
    modelcfg_layer_path(path, sizeof path, layer, "input_layernorm/weight");
    w.input_norm = fsdp_unit_dev(unit, path);
    modelcfg_layer_path(path, sizeof path, layer, "post_attention_layernorm/weight");
    w.post_norm = fsdp_unit_dev(unit, path);
    modelcfg_layer_path(path, sizeof path, layer, "self_attn/q_norm/weight");
    w.q_norm = fsdp_unit_dev(unit, path);
    modelcfg_layer_path(path, sizeof path, layer, "self_attn/k_norm/weight");
    w.k_norm = fsdp_unit_dev(unit, path);
    for (int p = 0; p < N_PROJ; p++) {
        snprintf(module, sizeof module, "%s/%s/weight", p < PROJ_GATE ? "self_attn" : "mlp", PROJ_NAMES[p]);
        modelcfg_layer_path(path, sizeof path, layer, module);
        w.w[p] = fsdp_unit_dev(unit, path);
        snprintf(module, sizeof module, "self_attn/%s/bias", PROJ_NAMES[p]);
        modelcfg_layer_path(path, sizeof path, layer, module);
        w.bias[p] = fsdp_unit_dev(unit, path);
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

enum { ATTN_TILE_SLACK = 64 };

/* Projections that read one input: q, k and v (n1); o; gate and up (n2); down. */
typedef struct { int first, n; } proj_group;
static const proj_group QKV = {PROJ_Q, 3}, O = {PROJ_O, 1}, GATE_UP = {PROJ_GATE, 2}, DOWN = {PROJ_DOWN, 1};
enum { MAX_GROUP = 3 };

/* A group whose projections all carry an adapter, with no LoRA dropout (which gives each its own
 * input), stacks their A's: consecutive in the pool (lora_add_to_pool), they act as one [n r, in]
 * matrix, so one product gives every A x, and in backward one gives dx and one dA. */
static int stacked(const sl_lora *l, proj_group g)
{
    if (!l || g.n < 2 || l->dropout > 0) return 0;
    for (int i = 0; i < g.n; i++)
        if (!(l->targets & (1u << (g.first + i)))) return 0;
    return 1;
}

static proj_group group_of(int p)
{
    const proj_group all[] = {QKV, O, GATE_UP, DOWN};
    for (int i = 0;; i++)
        if (p < all[i].first + all[i].n) return all[i];
}

static void *acts(size_t t, size_t width) { return BE->alloc(t * width * (size_t)BE->act_bytes, "activations"); }
static float *stats(size_t n) { return BE->alloc(n * sizeof(float), "activations"); }

void layer_acts_alloc(layer_acts *a, const sl_model_config *c, const sl_lora *l, int T, int max_seq, int own_input)
{
    memset(a, 0, sizeof *a);
    const size_t t = (size_t)(T > 0 ? T : 1), D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size,
                 Q = (size_t)c->num_heads * c->head_dim, KV = (size_t)c->num_kv_heads * c->head_dim;
    a->T = T;
    if ((a->owns_input = own_input)) a->x_in = acts(t, D);
    /* cuDNN's fused attention may read whole 64-row tiles past the last sequence */
    const size_t ta = t + ATTN_TILE_SLACK;
    a->xn1 = acts(t, D), a->rstd1 = stats(t), a->q = acts(ta, Q), a->k = acts(ta, KV);
    a->v = acts(ta, KV), a->att = acts(ta, Q);
    /* the most sequences a batch of t rows can hold: one row each */
    a->attn_stats = BE->alloc(BE->attention_stats_bytes((int)t, (int)t, max_seq, c->num_heads), "activations");
    a->x_mid = acts(t, D), a->xn2 = acts(t, D), a->rstd2 = stats(t);
    a->gate = acts(t, F), a->up = acts(t, F), a->act = acts(t, F);
    if (c->qk_norm) {
        a->q_raw = acts(t, Q), a->k_raw = acts(t, KV);
        a->rstd_q = stats(t * (size_t)c->num_heads), a->rstd_k = stats(t * (size_t)c->num_kv_heads);
    }
    for (int p = 0; l && p < N_PROJ; p++) {
        if (!(l->targets & (1u << p))) continue;
        const proj_group g = group_of(p);
        if (stacked(l, g)) { /* one [T, n r] buffer; member i's A x is its column slice i */
            if (p == g.first) a->lora_u_buf[p] = acts(t, (size_t)(g.n * l->r));
            a->lora_u[p] = act_at(a->lora_u_buf[g.first], (int64_t)(p - g.first) * l->r);
            a->lora_ld[p] = g.n * l->r;
        } else {
            a->lora_u[p] = a->lora_u_buf[p] = acts(t, (size_t)l->r);
            a->lora_ld[p] = l->r;
        }
        if (l->dropout > 0) a->lora_x[p] = acts(t, (size_t)dims_of(c, p).in);
    }
}

void layer_acts_free(layer_acts *a)
{
    void *all[] = {a->xn1, a->rstd1, a->q, a->k, a->v, a->att, a->attn_stats, a->x_mid, a->xn2, a->rstd2,
                   a->gate, a->up, a->act, a->q_raw, a->k_raw, a->rstd_q, a->rstd_k};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) BE->release(all[i]);
    for (int p = 0; p < N_PROJ; p++) BE->release(a->lora_u_buf[p]), BE->release(a->lora_x[p]);
    if (a->owns_input) BE->release(a->x_in);
    memset(a, 0, sizeof *a);
}

void layer_scratch_alloc(layer_scratch *s, const sl_model_config *c, const sl_lora *l, int T)
{
    const size_t t = (size_t)(T > 0 ? T : 1), D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size,
                 Q = (size_t)c->num_heads * c->head_dim, KV = (size_t)c->num_kv_heads * c->head_dim;
    size_t widest_in = D > Q ? D : Q;
    if (F > widest_in) widest_in = F;
    s->d_act = acts(t, F), s->d_xn = acts(t, D);
    const size_t ta = t + ATTN_TILE_SLACK;
    s->d_att = acts(ta, Q), s->dq = acts(ta, Q), s->dk = acts(ta, KV), s->dv = acts(ta, KV);
    s->du = l ? acts(t, (size_t)(MAX_GROUP * l->r)) : NULL; /* a stacked group's [T, n r] */
    if (c->qk_norm) s->dq_raw = acts(t, Q), s->dk_raw = acts(t, KV);
    s->dxd = l && l->dropout > 0 ? acts(t, widest_in) : NULL;
}

void layer_scratch_free(layer_scratch *s)
{
    void *all[] = {s->d_act, s->d_xn, s->d_att, s->dq, s->dk, s->dv, s->du, s->dxd,
                   s->dq_raw, s->dk_raw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) BE->release(all[i]);
    memset(s, 0, sizeof *s);
}

/* What backward keeps of projection p's adapter at input x: the dropped-out input and A x. */
static void proj_adapter_input(const void *x, int p, const layer_pass *ps, const lora_view *lv, layer_acts *a)
{
    const int T = a->T;
    proj_dims d = dims_of(ps->c, p);
    const void *xd = x;
    if (a->lora_x[p]) {
        BE->dropout_fwd(a->lora_x[p], x, (int64_t)T * d.in, ps->l->dropout, a->dropout_key, (uint64_t)p);
        xd = a->lora_x[p];
    }
    BE->linear_fwd(a->lora_u[p], xd, (int)d.in, lv->A[p], NULL, T, (int)d.in, ps->l->r, 1.0f, NULL);
}

/* A stacked group's A's (and their gradients) must be one matrix in the pool. */
static void check_stack(const lora_view *lv, proj_group g, int r, int64_t in)
{
    for (int i = 1; i < g.n; i++)
        if (lv->A[g.first + i] != act_at(lv->A[g.first], i * r * in) ||
            (lv->dA[g.first] && lv->dA[g.first + i] != lv->dA[g.first] + i * r * in))
            sl_fatal("internal error: the adapters of %s are not consecutive in their pool", PROJ_NAMES[g.first + i]);
}

/* The adapter inputs of group g at its input x: one product when the group is stacked. */
static void group_adapter_inputs(const void *x, proj_group g, const layer_pass *ps, const lora_view *lv,
                                 layer_acts *a)
{
    if (!lv) return;
    if (!stacked(ps->l, g)) {
        for (int p = g.first; p < g.first + g.n; p++)
            if (lv->A[p]) proj_adapter_input(x, p, ps, lv, a);
        return;
    }
    const int in = (int)dims_of(ps->c, g.first).in;
    check_stack(lv, g, ps->l->r, in);
    BE->linear_fwd(a->lora_u[g.first], x, in, lv->A[g.first], NULL, a->T, in, g.n * ps->l->r, 1.0f, NULL);
}

/* y = residual (NULL: none) + projection p of x, its adapter input already in a. The thin LoRA
 * product lands in y first and the base GEMM accumulates onto it: the base GEMM is compute-bound,
 * so reading its output operand there costs nothing, while a LoRA product after it would read and
 * write all of y once more. */
static void proj_forward(void *y, const void *residual, const void *x, int p, const layer_pass *ps,
                         const layer_weights *w, const lora_view *lv, layer_acts *a)
{
    const int T = a->T, lora = lv && lv->A[p];
    proj_dims d = dims_of(ps->c, p);
    if (lora)
        BE->linear_fwd(y, a->lora_u[p], a->lora_ld[p], lv->B[p], NULL, T, ps->l->r, (int)d.out, ps->l->scale,
                       residual);
    BE->linear_fwd(y, x, (int)d.in, w->w[p], w->bias[p], T, (int)d.in, (int)d.out, 1.0f, lora ? y : residual);
}

/* dx (+)= d/dx of projection p at input x given dy; adapter gradients into lv. */
static void proj_backward(void *dx, int accumulate, const void *dy, const void *x, int p, const layer_pass *ps,
                          const layer_weights *w, const lora_view *lv, const layer_acts *a, layer_scratch *s)
{
    const int T = a->T, r = ps->l ? ps->l->r : 0, lora = lv && lv->A[p];
    proj_dims d = dims_of(ps->c, p);
    const int in = (int)d.in, out = (int)d.out;
    if (!lora || a->lora_x[p]) BE->linear_bwd_data(dx, in, dy, w->w[p], T, in, out, 1.0f, accumulate);
    if (!lora) return;
    BE->linear_bwd_data(s->du, r, dy, lv->B[p], T, r, out, ps->l->scale, 0);
    BE->linear_bwd_weight(lv->dB[p], dy, a->lora_u[p], a->lora_ld[p], T, r, out, ps->l->scale);
    if (!a->lora_x[p]) {
        BE->linear_bwd_data(dx, in, s->du, lv->A[p], T, in, r, 1.0f, accumulate);
        BE->linear_bwd_weight(lv->dA[p], s->du, x, in, T, in, r, 1.0f);
        BE->linear_bwd_data(dx, in, dy, w->w[p], T, in, out, 1.0f, 1);
    } else { /* the dropout mask's backward adds into dx, which the base product has filled */
        BE->linear_bwd_data(s->dxd, in, s->du, lv->A[p], T, in, r, 1.0f, 0);
        BE->linear_bwd_weight(lv->dA[p], s->du, a->lora_x[p], in, T, in, r, 1.0f);
        BE->dropout_bwd(dx, s->dxd, (int64_t)T * d.in, ps->l->dropout, a->dropout_key, (uint64_t)p);
    }
}

/* dx (+)= d/dx of group g's projections at their input x, given each one's dy; adapter gradients
 * into lv. Stacked: the rank-r products of every member side by side in du [T, n r], then one
 * product each for dx and dA, and the base GEMMs accumulate onto dx. */
static void group_backward(void *dx, int accumulate, const void *const *dy, const void *x, proj_group g,
                           const layer_pass *ps, const layer_weights *w, const lora_view *lv, const layer_acts *a,
                           layer_scratch *s)
{
    if (!lv || !stacked(ps->l, g)) {
        for (int i = 0; i < g.n; i++)
            proj_backward(dx, accumulate || i > 0, dy[i], x, g.first + i, ps, w, lv, a, s);
        return;
    }
    const int T = a->T, r = ps->l->r, in = (int)dims_of(ps->c, g.first).in, nr = g.n * r;
    for (int i = 0; i < g.n; i++) {
        const int p = g.first + i, out = (int)dims_of(ps->c, p).out;
        BE->linear_bwd_data(act_at(s->du, (int64_t)i * r), nr, dy[i], lv->B[p], T, r, out, ps->l->scale, 0);
        BE->linear_bwd_weight(lv->dB[p], dy[i], a->lora_u[p], a->lora_ld[p], T, r, out, ps->l->scale);
    }
    BE->linear_bwd_data(dx, in, s->du, lv->A[g.first], T, in, nr, 1.0f, accumulate);
    BE->linear_bwd_weight(lv->dA[g.first], s->du, x, in, T, in, nr, 1.0f);
    for (int i = 0; i < g.n; i++)
        BE->linear_bwd_data(dx, in, dy[i], w->w[g.first + i], T, in, (int)dims_of(ps->c, g.first + i).out, 1.0f, 1);
}

static float attn_scale(const sl_model_config *c) { return 1.0f / sqrtf((float)c->head_dim); }

void layer_forward(const layer_pass *ps, const layer_weights *w, const lora_view *lv, layer_acts *a, void *x_out)
{
    const sl_model_config *c = ps->c;
    const sl_batch *b = ps->b;
    const int T = b->T, D = c->hidden_size, hd = c->head_dim;
    const float eps = (float)c->rms_norm_eps;
    if (T == 0) return;
    BE->rmsnorm_fwd(a->xn1, a->rstd1, a->x_in, w->input_norm, T, D, eps);
    group_adapter_inputs(a->xn1, QKV, ps, lv, a);
    proj_forward(c->qk_norm ? a->q_raw : a->q, NULL, a->xn1, PROJ_Q, ps, w, lv, a);
    proj_forward(c->qk_norm ? a->k_raw : a->k, NULL, a->xn1, PROJ_K, ps, w, lv, a);
    proj_forward(a->v, NULL, a->xn1, PROJ_V, ps, w, lv, a);
    if (c->qk_norm) { /* each head's vector normalised on its own: rows of head_dim */
        BE->rmsnorm_fwd(a->q, a->rstd_q, a->q_raw, w->q_norm, T * c->num_heads, hd, eps);
        BE->rmsnorm_fwd(a->k, a->rstd_k, a->k_raw, w->k_norm, T * c->num_kv_heads, hd, eps);
    }
    BE->rope(a->q, ps->pos, T, c->num_heads, hd, ps->rope_cs, 0);
    BE->rope(a->k, ps->pos, T, c->num_kv_heads, hd, ps->rope_cs, 0);
    BE->attention_fwd(a->att, a->attn_stats, a->q, a->k, a->v, b->seq_start, b->n_seqs, ps->max_seq, c->num_heads,
                      c->num_kv_heads, hd, attn_scale(c));
    group_adapter_inputs(a->att, O, ps, lv, a);
    proj_forward(a->x_mid, a->x_in, a->att, PROJ_O, ps, w, lv, a);
    BE->rmsnorm_fwd(a->xn2, a->rstd2, a->x_mid, w->post_norm, T, D, eps);
    group_adapter_inputs(a->xn2, GATE_UP, ps, lv, a);
    proj_forward(a->gate, NULL, a->xn2, PROJ_GATE, ps, w, lv, a);
    proj_forward(a->up, NULL, a->xn2, PROJ_UP, ps, w, lv, a);
    BE->swiglu_fwd(a->act, a->gate, a->up, (int64_t)T * c->intermediate_size);
    group_adapter_inputs(a->act, DOWN, ps, lv, a);
    if (!x_out) return; /* a recompute: backward needs the down projection's input, not its output */
    proj_forward(x_out, a->x_mid, a->act, PROJ_DOWN, ps, w, lv, a);
}

void layer_backward(const layer_pass *ps, const layer_weights *w, const lora_view *lv, const layer_acts *a,
                    layer_scratch *s, void *dx)
{
    const sl_model_config *c = ps->c;
    const sl_batch *b = ps->b;
    const int T = b->T, D = c->hidden_size, hd = c->head_dim;
    if (T == 0) return;
    /* MLP: dx already holds d(x_out), which is also the residual part of d(x_mid) */
    proj_backward(s->d_act, 0, dx, a->act, PROJ_DOWN, ps, w, lv, a, s);
    /* gate and up are read for the last time here: their gradients take their place */
    void *d_gate = a->gate, *d_up = a->up;
    BE->swiglu_bwd(d_gate, d_up, s->d_act, a->gate, a->up, (int64_t)T * c->intermediate_size);
    const void *const d_mlp[] = {d_gate, d_up};
    group_backward(s->d_xn, 0, d_mlp, a->xn2, GATE_UP, ps, w, lv, a, s);
    BE->rmsnorm_bwd(dx, s->d_xn, a->x_mid, w->post_norm, a->rstd2, T, D, 1);
    /* attention: dx now holds d(x_mid), the residual part of d(x_in) */
    proj_backward(s->d_att, 0, dx, a->att, PROJ_O, ps, w, lv, a, s);
    BE->attention_bwd(s->dq, s->dk, s->dv, s->d_att, a->att, a->attn_stats, a->q, a->k, a->v, b->seq_start,
                      b->n_seqs, ps->max_seq, c->num_heads, c->num_kv_heads, hd, attn_scale(c));
    BE->rope(s->dq, ps->pos, T, c->num_heads, hd, ps->rope_cs, 1);
    BE->rope(s->dk, ps->pos, T, c->num_kv_heads, hd, ps->rope_cs, 1);
    void *dq = s->dq, *dk = s->dk;
    if (c->qk_norm) {
        BE->rmsnorm_bwd(s->dq_raw, s->dq, a->q_raw, w->q_norm, a->rstd_q, T * c->num_heads, hd, 0);
        BE->rmsnorm_bwd(s->dk_raw, s->dk, a->k_raw, w->k_norm, a->rstd_k, T * c->num_kv_heads, hd, 0);
        dq = s->dq_raw, dk = s->dk_raw;
    }
    const void *const d_qkv[] = {dq, dk, s->dv};
    group_backward(s->d_xn, 0, d_qkv, a->xn1, QKV, ps, w, lv, a, s);
    BE->rmsnorm_bwd(dx, s->d_xn, a->x_in, w->input_norm, a->rstd1, T, D, 1);
}
