/* layer: one LLaMA-family decoder layer with LoRA adapters, forward and backward, on packed
 * batches. The frozen base gets input gradients only; adapters get weight gradients. */
#ifndef SL_LAYER_H
#define SL_LAYER_H

#include <stdint.h>

#include "fsdp.h"
#include "lora.h"
#include "model.h"

/* What backward needs of one layer for one micro-batch. */
typedef struct {
    int T;
    float *x_in, *xn1, *rstd1, *q, *k, *v, *att, *lse, *x_mid, *xn2, *rstd2, *gate, *up, *act;
    float *lora_u[N_PROJ]; /* A x per adapted projection [T, r] */
    float *lora_x[N_PROJ]; /* dropped-out input [T, in] when LoRA dropout > 0 */
    uint64_t dropout_key;  /* selects this micro-batch's dropout masks */
    int owns_input;
} layer_acts;

/* Pointers into a gathered decoder-layer unit. */
typedef struct {
    const float *input_norm, *post_norm;
    const float *w[N_PROJ], *bias[N_PROJ];
} layer_weights;

layer_weights layer_weights_of(const fsdp_unit *unit, int layer);
/* own_input = 0: x_in points at a buffer the caller keeps (activation checkpointing). */
void layer_acts_alloc(layer_acts *a, const sl_model_config *c, const sl_lora *l, int T, int own_input);
void layer_acts_free(layer_acts *a);

/* x_out[T, D] = layer(a->x_in); fills a. lora/lv may be NULL (no adapters). */
void layer_forward(const sl_model_config *c, const layer_weights *w, const sl_lora *l, const lora_view *lv,
                   layer_acts *a, const sl_batch *b, float *x_out);
/* dx: in, the gradient of the layer output; out, the gradient of its input. Adapter gradients
 * are added to lv's dA/dB. */
void layer_backward(const sl_model_config *c, const layer_weights *w, const sl_lora *l, const lora_view *lv,
                    const layer_acts *a, const sl_batch *b, float *dx);

#endif
