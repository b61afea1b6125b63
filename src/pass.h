/* pass: what one forward (and backward) pass over the model needs besides the weights, made
 * once before the first batch: the backend's copy of each batch, the rotary table, and the
 * buffers of the heads (logits in row chunks, never [T, vocab] whole). Eval and training share it. */
#ifndef SL_PASS_H
#define SL_PASS_H

#include <stdint.h>

#include "layer.h"
#include "model.h"

typedef struct {
    int max_T, max_seq;
    float *rope_host;                  /* [max_seq][head_dim / 2][2] */
    const float *rope_cs;              /* its backend copy */
    void *rope_buf, *batch_buf;        /* the backend's copies (NULL on the CPU backend) */
    const int32_t *ids, *pos, *target; /* the current batch where the backend computes */
    const int32_t *labels, *rows;      /* classification: labels and pooled rows, likewise */
    int chunk;                         /* LM-head rows per chunk */
    float *logits;                     /* [chunk, vocab] (or [max_T, num_labels]) fp32 */
    void *dlogits;                     /* act-typed gradient of the logits (the logits themselves on fp32 backends) */
    double *row_loss;                  /* host, max_T rows: each row's loss after a head */
    double *row_loss_be;               /* the backend's (row_loss itself on the CPU backend) */
    int32_t *rows_host;                /* sequence classification: the pooled row of each sequence */
    void *pooled, *d_pooled;           /* [max_T, hidden] act */
} sl_pass;

/* train: also the buffers backward needs. logits_bytes: the fp32 logits chunk (0: the backend's). */
void pass_init(sl_pass *p, const sl_model *m, int max_T, int max_seq, int train, size_t logits_bytes);
void pass_free(sl_pass *p);
/* Mirror batch b (and, when non-NULL, its labels) to the backend; the layers' view of it. */
layer_pass pass_batch(sl_pass *p, const sl_model *m, const sl_batch *b, const int32_t *labels);

/* Causal LM head on normalised hidden states xn[T, D]: each row's next-token loss into
 * p->row_loss. With d_xn non-NULL also d(xn) for loss = weight * sum of counted rows' losses. */
void pass_lm_head(sl_pass *p, const sl_model *m, const void *xn, const sl_batch *b, float weight, void *d_xn);
/* Classification head on the last row of each sequence: loss per sequence into p->row_loss,
 * d(xn) (zero elsewhere) and the head weight's gradient into its pool. */
void pass_cls_head(sl_pass *p, sl_model *m, const void *xn, const sl_batch *b, float weight, void *d_xn);

#endif
