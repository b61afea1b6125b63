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

/* Projections that read one input: q, k and v (n1); o; gate and up (n2); down. A fused group's
 * outputs sit side by side in one buffer (q | k | v), so one base GEMM over the members' stacked
 * weights (consecutive in their unit: modelcfg_tensors) computes them all; gate and up keep
 * buffers of their own. */
typedef struct { int first, n, fused; } proj_group;
static const proj_group QKV = {PROJ_Q, 3, 1}, O = {PROJ_O, 1, 1}, GATE_UP = {PROJ_GATE, 2, 0},
                        DOWN = {PROJ_DOWN, 1, 1};
enum { MAX_GROUP = 3 };

static proj_group member(int p) { return (proj_group){p, 1, 1}; }

/* The width of a fused group's output rows, and where member p's columns start in them. */
static int64_t group_width(const sl_model_config *c, proj_group g)
{
    int64_t w = 0;
    for (int p = g.first; p < g.first + g.n; p++) w += dims_of(c, p).out;
    return w;
}

static int64_t column_of(const sl_model_config *c, proj_group g, int p)
{
    return group_width(c, (proj_group){g.first, p - g.first, 1});
}

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
                 Q = (size_t)c->num_heads * c->head_dim, W = (size_t)group_width(c, QKV);
    a->T = T;
    if ((a->owns_input = own_input)) a->x_in = acts(t, D);
    /* cuDNN's fused attention may read whole 64-row tiles past the last sequence */
    const size_t ta = t + ATTN_TILE_SLACK;
    a->xn1 = acts(t, D), a->rstd1 = stats(t), a->qkv = acts(ta, W), a->att = acts(ta, Q);
    /* the most sequences a batch of t rows can hold: one row each */
    a->attn_stats = BE->alloc(BE->attention_stats_bytes((int)t, (int)t, max_seq, c->num_heads), "activations");
    a->x_mid = acts(t, D), a->xn2 = acts(t, D), a->rstd2 = stats(t);
    a->gate = acts(t, F), a->up = acts(t, F), a->act = acts(t, F);
    if (c->qk_norm) {
        a->qkv_raw = acts(ta, W);
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
    void *all[] = {a->xn1, a->rstd1, a->qkv, a->att, a->attn_stats, a->x_mid, a->xn2, a->rstd2,
                   a->gate, a->up, a->act, a->qkv_raw, a->rstd_q, a->rstd_k};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) BE->release(all[i]);
    for (int p = 0; p < N_PROJ; p++) BE->release(a->lora_u_buf[p]), BE->release(a->lora_x[p]);
    if (a->owns_input) BE->release(a->x_in);
    memset(a, 0, sizeof *a);
}

void layer_scratch_alloc(layer_scratch *s, const sl_model_config *c, const sl_lora *l, int T)
{
    const size_t t = (size_t)(T > 0 ? T : 1), D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size,
                 Q = (size_t)c->num_heads * c->head_dim;
    size_t widest_in = D > Q ? D : Q;
    if (F > widest_in) widest_in = F;
    s->d_act = acts(t, F), s->d_xn = acts(t, D);
    const size_t ta = t + ATTN_TILE_SLACK;
    s->d_att = acts(ta, Q), s->dqkv = acts(ta, (size_t)group_width(c, QKV));
    s->du = l ? acts(t, (size_t)(MAX_GROUP * l->r)) : NULL; /* a stacked group's [T, n r] */
    s->dxd = l && l->dropout > 0 ? acts(t, widest_in) : NULL;
}

void layer_scratch_free(layer_scratch *s)
{
    void *all[] = {s->d_act, s->d_xn, s->d_att, s->dqkv, s->du, s->dxd};
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
    BE->linear_fwd(a->lora_u[p], a->lora_ld[p], xd, (int)d.in, lv->A[p], NULL, T, (int)d.in, ps->l->r, 1.0f, NULL);
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
    const int in = (int)dims_of(ps->c, g.first).in, nr = g.n * ps->l->r;
    check_stack(lv, g, ps->l->r, in);
    BE->linear_fwd(a->lora_u[g.first], nr, x, in, lv->A[g.first], NULL, a->T, in, nr, 1.0f, NULL);
}

/* A fused group's base weights (and biases, if any) as one stacked matrix: its first member's. */
static const void *stacked_weights(const sl_model_config *c, proj_group g, const void *const *per_proj, int64_t in,
                                   const char *what)
{
    for (int p = g.first + 1; p < g.first + g.n; p++)
        if (per_proj[p] != (per_proj[g.first] ? act_at(per_proj[g.first], column_of(c, g, p) * in) : NULL))
            sl_fatal("internal error: the %s of %s do not follow those of %s in their unit", what, PROJ_NAMES[p],
                     PROJ_NAMES[g.first]);
    return per_proj[g.first];
}

static int all_adapted(const lora_view *lv, proj_group g)
{
    for (int p = g.first; lv && p < g.first + g.n; p++)
        if (!lv->A[p]) return 0;
    return lv != NULL;
}

/* y (+ residual, NULL: none) = the fused group g's projections of x, side by side in rows of
 * group_width, their adapter inputs already in a. The thin LoRA products land in y first and the
 * base GEMM accumulates onto them: the base GEMM is compute-bound, so reading its output operand
 * there costs nothing, while LoRA products after it would read and write their columns of y once
 * more. That order needs every column written first, so a group with unadapted members takes the
 * base GEMM first. */
static void proj_forward(void *y, const void *residual, const void *x, proj_group g, const layer_pass *ps,
                         const layer_weights *w, const lora_view *lv, layer_acts *a)
{
    const sl_model_config *c = ps->c;
    const int T = a->T, in = (int)dims_of(c, g.first).in, width = (int)group_width(c, g),
              lora_first = all_adapted(lv, g);
    for (int p = g.first; lv && p < g.first + g.n; p++) {
        if (!lv->A[p] || !lora_first) continue;
        BE->linear_fwd(act_at(y, column_of(c, g, p)), width, a->lora_u[p], a->lora_ld[p], lv->B[p], NULL, T,
                       ps->l->r, (int)dims_of(c, p).out, ps->l->scale, residual);
    }
    BE->linear_fwd(y, width, x, in, stacked_weights(c, g, w->w, in, "weights"), stacked_weights(c, g, w->bias, 1, "biases"),
                   T, in, width, 1.0f, lora_first ? y : residual);
    for (int p = g.first; lv && p < g.first + g.n; p++) {
        if (!lv->A[p] || lora_first) continue;
        void *cols = act_at(y, column_of(c, g, p));
        BE->linear_fwd(cols, width, a->lora_u[p], a->lora_ld[p], lv->B[p], NULL, T, ps->l->r, (int)dims_of(c, p).out,
                       ps->l->scale, cols);
    }
}

/* dx (+)= the base part of group g's input gradient, given each member's dy (rows lddy apart):
 * one product over the stacked weights when the dy's sit side by side (a fused group). */
static void base_backward(void *dx, int *acc, const void *const *dy, int lddy, proj_group g, const layer_pass *ps,
                          const layer_weights *w, int T)
{
    const sl_model_config *c = ps->c;
    const int in = (int)dims_of(c, g.first).in;
    if (g.fused) {
        BE->linear_bwd_data(dx, in, dy[0], lddy, stacked_weights(c, g, w->w, in, "weights"), T, in,
                            (int)group_width(c, g), 1.0f, *acc);
    } else {
        for (int i = 0; i < g.n; i++, *acc = 1)
            BE->linear_bwd_data(dx, in, dy[i], lddy, w->w[g.first + i], T, in, (int)dims_of(c, g.first + i).out, 1.0f,
                                *acc);
    }
    *acc = 1;
}

/* dx (+)= the adapter part of projection p's input gradient at input x given dy; its gradients
 * into lv. With LoRA dropout the mask's backward adds into dx, which must hold a value already. */
static void adapter_backward(void *dx, int *acc, const void *dy, int lddy, const void *x, int p, const layer_pass *ps,
                             const lora_view *lv, const layer_acts *a, layer_scratch *s)
{
    const int T = a->T, r = ps->l->r, in = (int)dims_of(ps->c, p).in, out = (int)dims_of(ps->c, p).out;
    BE->linear_bwd_data(s->du, r, dy, lddy, lv->B[p], T, r, out, ps->l->scale, 0);
    BE->linear_bwd_weight(lv->dB[p], dy, lddy, a->lora_u[p], a->lora_ld[p], T, r, out, ps->l->scale);
    if (!a->lora_x[p]) {
        BE->linear_bwd_data(dx, in, s->du, r, lv->A[p], T, in, r, 1.0f, *acc);
        BE->linear_bwd_weight(lv->dA[p], s->du, r, x, in, T, in, r, 1.0f);
        *acc = 1;
    } else {
        BE->linear_bwd_data(s->dxd, in, s->du, r, lv->A[p], T, in, r, 1.0f, 0);
        BE->linear_bwd_weight(lv->dA[p], s->du, r, a->lora_x[p], in, T, in, r, 1.0f);
        BE->dropout_bwd(dx, s->dxd, (int64_t)T * in, ps->l->dropout, a->dropout_key, (uint64_t)p);
    }
}

/* dx (+)= d/dx of group g's projections at their input x, given each one's dy (rows lddy apart);
 * adapter gradients into lv. Stacked: the rank-r products of every member side by side in du
 * [T, n r], then one product each for dx and dA; the adapters' dx products land first and the
 * base GEMMs accumulate onto them, except under LoRA dropout (see adapter_backward). */
static void group_backward(void *dx, int accumulate, const void *const *dy, int lddy, const void *x, proj_group g,
                           const layer_pass *ps, const layer_weights *w, const lora_view *lv, const layer_acts *a,
                           layer_scratch *s)
{
    const int T = a->T, base_first = lv && ps->l->dropout > 0;
    int acc = accumulate;
    if (base_first) base_backward(dx, &acc, dy, lddy, g, ps, w, T);
    if (lv && stacked(ps->l, g)) {
        const int r = ps->l->r, in = (int)dims_of(ps->c, g.first).in, nr = g.n * r;
        for (int i = 0; i < g.n; i++) {
            const int p = g.first + i, out = (int)dims_of(ps->c, p).out;
            BE->linear_bwd_data(act_at(s->du, (int64_t)i * r), nr, dy[i], lddy, lv->B[p], T, r, out, ps->l->scale, 0);
            BE->linear_bwd_weight(lv->dB[p], dy[i], lddy, a->lora_u[p], a->lora_ld[p], T, r, out, ps->l->scale);
        }
        BE->linear_bwd_data(dx, in, s->du, nr, lv->A[g.first], T, in, nr, 1.0f, acc);
        BE->linear_bwd_weight(lv->dA[g.first], s->du, nr, x, in, T, in, nr, 1.0f);
        acc = 1;
    } else {
        for (int i = 0; lv && i < g.n; i++)
            if (lv->A[g.first + i]) adapter_backward(dx, &acc, dy[i], lddy, x, g.first + i, ps, lv, a, s);
    }
    if (!base_first) base_backward(dx, &acc, dy, lddy, g, ps, w, T);
}

static float attn_scale(const sl_model_config *c) { return 1.0f / sqrtf((float)c->head_dim); }

void layer_forward(const layer_pass *ps, const layer_weights *w, const lora_view *lv, layer_acts *a, void *x_out)
{
    const sl_model_config *c = ps->c;
    const sl_batch *b = ps->b;
    const int T = b->T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim, nh = c->num_heads,
              nkv = c->num_kv_heads, W = (int)group_width(c, QKV);
    const int64_t Q = (int64_t)nh * hd, KV = (int64_t)nkv * hd;
    const float eps = (float)c->rms_norm_eps;
    if (T == 0) return;
    BE->rmsnorm_fwd(a->xn1, a->rstd1, a->x_in, w->input_norm, T, 1, D, D, eps);
    group_adapter_inputs(a->xn1, QKV, ps, lv, a);
    void *proj = c->qk_norm ? a->qkv_raw : a->qkv;
    proj_forward(proj, NULL, a->xn1, QKV, ps, w, lv, a);
    if (c->qk_norm) { /* each head's vector normalised on its own */
        BE->rmsnorm_fwd(a->qkv, a->rstd_q, proj, w->q_norm, T, nh, hd, W, eps);
        BE->rmsnorm_fwd(act_at(a->qkv, Q), a->rstd_k, act_at(proj, Q), w->k_norm, T, nkv, hd, W, eps);
    }
    BE->rope(a->qkv, W, ps->pos, T, nh + nkv, hd, ps->rope_cs, 0); /* q's heads and k's, side by side */
    BE->attention_fwd(a->att, a->attn_stats, a->qkv, act_at(a->qkv, Q), act_at(proj, Q + KV), W, b->seq_start,
                      b->n_seqs, ps->max_seq, nh, nkv, hd, attn_scale(c));
    group_adapter_inputs(a->att, O, ps, lv, a);
    proj_forward(a->x_mid, a->x_in, a->att, O, ps, w, lv, a);
    BE->rmsnorm_fwd(a->xn2, a->rstd2, a->x_mid, w->post_norm, T, 1, D, D, eps);
    group_adapter_inputs(a->xn2, GATE_UP, ps, lv, a);
    proj_forward(a->gate, NULL, a->xn2, member(PROJ_GATE), ps, w, lv, a);
    proj_forward(a->up, NULL, a->xn2, member(PROJ_UP), ps, w, lv, a);
    BE->swiglu_fwd(a->act, a->gate, a->up, (int64_t)T * F);
    group_adapter_inputs(a->act, DOWN, ps, lv, a);
    if (!x_out) return; /* a recompute: backward needs the down projection's input, not its output */
    proj_forward(x_out, a->x_mid, a->act, DOWN, ps, w, lv, a);
}

void layer_backward(const layer_pass *ps, const layer_weights *w, const lora_view *lv, const layer_acts *a,
                    layer_scratch *s, void *dx)
{
    const sl_model_config *c = ps->c;
    const sl_batch *b = ps->b;
    const int T = b->T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim, nh = c->num_heads,
              nkv = c->num_kv_heads, W = (int)group_width(c, QKV);
    const int64_t Q = (int64_t)nh * hd, KV = (int64_t)nkv * hd;
    if (T == 0) return;
    /* MLP: dx already holds d(x_out), which is also the residual part of d(x_mid) */
    const void *const d_out[] = {dx};
    group_backward(s->d_act, 0, d_out, D, a->act, DOWN, ps, w, lv, a, s);
    /* gate and up are read for the last time here: their gradients take their place */
    void *d_gate = a->gate, *d_up = a->up;
    BE->swiglu_bwd(d_gate, d_up, s->d_act, a->gate, a->up, (int64_t)T * F);
    const void *const d_mlp[] = {d_gate, d_up};
    group_backward(s->d_xn, 0, d_mlp, F, a->xn2, GATE_UP, ps, w, lv, a, s);
    BE->rmsnorm_bwd(dx, s->d_xn, a->x_mid, w->post_norm, a->rstd2, T, 1, D, D, 1);
    /* attention: dx now holds d(x_mid), the residual part of d(x_in) */
    group_backward(s->d_att, 0, d_out, D, a->att, O, ps, w, lv, a, s);
    const void *proj = c->qk_norm ? a->qkv_raw : a->qkv;
    void *dq = s->dqkv, *dk = act_at(s->dqkv, Q), *dv = act_at(s->dqkv, Q + KV);
    BE->attention_bwd(dq, dk, dv, s->d_att, a->att, a->attn_stats, a->qkv, act_at(a->qkv, Q), act_at(proj, Q + KV), W,
                      b->seq_start, b->n_seqs, ps->max_seq, nh, nkv, hd, attn_scale(c));
    BE->rope(s->dqkv, W, ps->pos, T, nh + nkv, hd, ps->rope_cs, 1);
    if (c->qk_norm) { /* in place: dqkv then holds the gradients of the projections themselves */
        BE->rmsnorm_bwd(dq, dq, proj, w->q_norm, a->rstd_q, T, nh, hd, W, 0);
        BE->rmsnorm_bwd(dk, dk, act_at(proj, Q), w->k_norm, a->rstd_k, T, nkv, hd, W, 0);
    }
    const void *const d_qkv[] = {dq, dk, dv};
    group_backward(s->d_xn, 0, d_qkv, W, a->xn1, QKV, ps, w, lv, a, s);
    BE->rmsnorm_bwd(dx, s->d_xn, a->x_in, w->input_norm, a->rstd1, T, 1, D, D, 1);
}
