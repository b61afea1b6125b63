/* forward: the forward pass without activations kept (eval, generate), through the backend. */
#ifndef SL_FORWARD_H
#define SL_FORWARD_H

#include "layer.h"
#include "model.h"
#include "pass.h"

/* One layer's activations, reused by every layer in turn, and the pass buffers. */
typedef struct {
    layer_acts acts;
    sl_pass pass;
    /* next-token logits (forward_plan_next_logits): the last row of each sequence */
    int max_seqs;
    int32_t *last_rows_host;
    void *last_rows_buf; /* the backend's copy of last_rows_host (NULL on the CPU backend) */
    void *last_xn;       /* [max_seqs, hidden] act: their normalised hidden states */
} forward_state;

/* For batches of at most max_T rows and sequences of at most max_seq tokens. */
void forward_init(forward_state *f, const sl_model *m, int max_T, int max_seq);
void forward_free(forward_state *f);

/* Collective: forward pass, writing each row's next-token loss (natural log; 0 where target < 0).
 * Sequence classification (m->num_labels > 0): each sequence's cross-entropy against labels[s]
 * into row_loss[s], and its logits into logits[s * num_labels ...] (host). */
void model_forward_loss(sl_model *m, forward_state *f, const sl_batch *b, const int32_t *labels, double *row_loss,
                        float *logits);

/* Plan model_forward_next_logits for batches of at most max_seqs sequences. */
void forward_plan_next_logits(forward_state *f, const sl_model *m, int max_seqs);
/* Collective: forward pass, writing the logits of the token after each sequence of b (fp32, host,
 * [b->n_seqs, vocab]). */
void model_forward_next_logits(sl_model *m, forward_state *f, const sl_batch *b, float *logits);

#endif
