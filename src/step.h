/* step: the training forward and backward of one micro-batch over all FSDP units: gather each
 * unit just before use, keep (or, with activation checkpointing, recompute) what backward
 * needs, and accumulate the trainable pools' full gradients for the later reduce-scatter. */
#ifndef SL_STEP_H
#define SL_STEP_H

#include "layer.h"
#include "model.h"
#include "pass.h"
#include "saved_inputs.h"

typedef struct {
    int max_T, act_ckpt;
    layer_acts *acts;     /* one per layer, or one scratch with activation checkpointing */
    saved_inputs saved;   /* activation checkpointing: each layer's input */
    void *x, *dx, *xn_final, *d_xn;
    float *rstd_final;
    layer_scratch scratch;
    sl_pass pass;
    uint64_t dropout_key;
    int reduce_grads; /* the last micro-batch of a step: reduce-scatter each unit's gradient after its backward */
} step_state;

/* act_offload (with act_ckpt): the saved layer inputs wait in host memory (saved_inputs.h). */
void step_init(step_state *s, const sl_model *m, int max_T, int max_seq, int act_ckpt, int act_offload);
void step_free(step_state *s, const sl_model *m);

/* Zero the full gradients of every trainable pool (allocating them once). */
void step_zero_grads(sl_model *m);
/* After the last micro-step (reduce_grads set): order the compute after every unit's reduce-scatter. */
void step_grads_wait(sl_model *m);

/* Forward and backward of one micro-batch. Causal LM: every counted target row contributes
 * loss_weight * its cross-entropy. Sequence classification (m->num_labels > 0): the last row of
 * each sequence is pooled and classified against labels[s]. Returns the weighted loss sum of
 * this micro-batch (this rank only). dropout_key selects the LoRA dropout masks. */
double step_micro(sl_model *m, step_state *s, const sl_batch *b, const int32_t *labels, double loss_weight,
                  uint64_t dropout_key);

#endif
