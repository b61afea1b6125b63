/* layer: one LLaMA-family decoder layer with LoRA adapters, forward and backward, on packed
 * batches, computed through the backend (kernels/backend.h). The frozen base gets input
 * gradients only; adapters get weight gradients. */
#ifndef SL_LAYER_H
#define SL_LAYER_H

#include <stdint.h>

#include "fsdp.h"
#include "lora.h"
#include "model.h"

/* What every layer of one pass shares: the shapes, the adapters, the rotary table and the
 * batch as the backend sees it. */
typedef struct {
    const sl_model_config *c;
    const sl_lora *l;          /* NULL: no adapters */
    const float *rope_cs;      /* backend table [max_seq][head_dim / 2][2] */
    int max_seq;               /* the longest sequence a batch may hold */
    const sl_batch *b;         /* host view: sequence starts for attention */
    const int32_t *pos, *ids;  /* backend mirrors of b->pos, b->ids */
} layer_pass;

/* What backward needs of one layer for one micro-batch (backend buffers, act-typed unless noted). */
typedef struct {
    int T;
    void *x_in, *xn1, *att, *x_mid, *xn2, *gate, *up, *act;
    void *qkv;            /* [T, q | k | v] after rotary (and qk_norm), the fused projection's layout */
    void *qkv_raw;        /* qk_norm: the projections before their per-head norm (v is read from here) */
    float *rstd1, *rstd2; /* f32 */
    float *rstd_q, *rstd_k;
    void *attn_stats;
    void *lora_u[N_PROJ]; /* A x per adapted projection [T, r], row stride lora_ld (a stacked group's slice) */
    int lora_ld[N_PROJ];
    void *lora_u_buf[N_PROJ]; /* the buffers lora_u point into */
    void *lora_x[N_PROJ]; /* dropped-out input [T, in] when LoRA dropout > 0 */
    uint64_t dropout_key; /* selects this micro-batch's dropout masks */
    int owns_input;
} layer_acts;

/* Backward's temporaries, shared by all layers of a step. */
typedef struct {
    void *d_act, *d_xn, *d_att, *du, *dxd;
    void *dqkv; /* [T, dq | dk | dv] */
} layer_scratch;

/* Backend pointers into a gathered decoder-layer unit. */
typedef struct {
    const void *input_norm, *post_norm;
    const void *q_norm, *k_norm; /* qk_norm: [head_dim] each */
    const void *w[N_PROJ], *bias[N_PROJ];
} layer_weights;

layer_weights layer_weights_of(const fsdp_unit *unit, int layer);
/* own_input = 0: x_in points at a buffer the caller keeps (activation checkpointing). */
void layer_acts_alloc(layer_acts *a, const sl_model_config *c, const sl_lora *l, int T, int max_seq, int own_input);
void layer_acts_free(layer_acts *a);
void layer_scratch_alloc(layer_scratch *s, const sl_model_config *c, const sl_lora *l, int T);
void layer_scratch_free(layer_scratch *s);

/* x_out[T, D] = layer(a->x_in); fills a. lv may be NULL (no adapters). x_out NULL: only fill a,
 * for a backward that recomputes the layer (the output product is skipped). */
void layer_forward(const layer_pass *p, const layer_weights *w, const lora_view *lv, layer_acts *a, void *x_out);
/* dx: in, the gradient of the layer output; out, the gradient of its input. Adapter gradients
 * are added to lv's dA/dB. a's gate and up are overwritten (with their gradients): a backs one
 * backward. */
void layer_backward(const layer_pass *p, const layer_weights *w, const lora_view *lv, const layer_acts *a,
                    layer_scratch *s, void *dx);

#endif
