/* sampler: the training micro-batches of each rank, a pure function of (seed, step, micro-step).
 *
 * Units. Causal LM: the windows of data_eval_windows (each document cut into windows of at most
 * seq_len + 1 tokens overlapping by one token; never crossing a document; documents under 2 tokens
 * give none). Sequence classification: one unit per non-empty document, its FIRST seq_len tokens
 * (the classifier pools the last kept token), with its /labels entry.
 *
 * Order. Epoch e uses a permutation of the N units: Fisher-Yates with rng_seed(seed, stream = e).
 * The epochs' permutations form one endless stream; position p is unit perm_{p / N}[p % N].
 *
 * Slicing. A step takes G = world * micro_batch * grad_accum units: step s owns positions
 * [s*G, (s+1)*G). Rank r, micro-step a takes the micro_batch positions starting at
 * s*G + (a*world + r) * micro_batch. So the units of a step depend only on G: -np 1 --grad-accum 4
 * and -np 4 --grad-accum 1 (same micro-batch) train on the same windows in every step. The state
 * to resume is the step number alone.
 *
 * Packing. A micro-batch is its units back to back as separate sequences (positions restart at 0,
 * attention never crosses a sequence). Causal LM: a window of L tokens gives L - 1 rows, input
 * token t and target token t + 1, where the target counts only if /loss_mask of token t + 1 is 1
 * (else -1). Sequence classification: a unit of L tokens gives L rows, all targets -1. */
#ifndef SL_SAMPLER_H
#define SL_SAMPLER_H

#include <stdint.h>

#include "data.h"
#include "model.h"

enum { SAMPLER_CAUSAL_LM = 0, SAMPLER_SEQ_CLS = 1 };

typedef struct {
    int task;         /* SAMPLER_CAUSAL_LM or SAMPLER_SEQ_CLS */
    int seq_len, micro_batch, grad_accum;
    int num_labels;   /* seq_cls: labels must lie in [0, num_labels) */
    uint64_t seed;
} sampler_options;

typedef struct {
    sl_batch batch;    /* the packed micro-batch (capacity micro_batch * seq_len rows) */
    int32_t *labels;   /* seq_cls: label of each sequence; NULL for causal LM */
    int64_t n_targets; /* rows whose target counts (causal LM) */
} sl_micro_batch;

typedef struct {
    int64_t epoch, index; /* the step's first unit is position index of epoch's permutation */
} sampler_pos;

typedef struct {
    const sl_dataset *d;
    sampler_options o;
    int world, rank;   /* RT's at init */
    int64_t n_units;
    sl_window *units;
    int32_t *doc_labels;   /* seq_cls: /labels, one per document */
    int64_t *perm, perm_epoch;
    sl_micro_batch mb;
    int32_t *tokens;
    uint8_t *mask;
} sl_sampler;

/* Every rank calls it (errors that every rank finds alike end all ranks): lists the units, reads
 * and checks /labels for seq_cls. The dataset must stay open while the sampler is used. */
void sampler_init(sl_sampler *s, const sl_dataset *d, const sampler_options *o);
void sampler_free(sl_sampler *s);

/* Collective (rt_agree on the token ids read): this rank's micro-batch for optimizer step `step`,
 * micro-step `micro` in [0, grad_accum). The result is owned by the sampler, valid until the next call. */
const sl_micro_batch *sampler_batch(sl_sampler *s, int64_t step, int micro);

/* Units in a step (world * micro_batch * grad_accum) and steps that see every unit at least once. */
int64_t sampler_global_batch(const sl_sampler *s);
int64_t sampler_steps_per_epoch(const sl_sampler *s);
/* Where step's first unit lies in the order, for logs and checkpoint attributes. */
sampler_pos sampler_position(const sl_sampler *s, int64_t step);

/* Epoch's order of n units (Fisher-Yates with rng_seed(seed, epoch)), as the sampler draws it. */
void sampler_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);
/* The first of steps optimizer steps (0-based) of global_batch units each whose units all have
 * has[u] == 0, in the sampler's order; -1 when every step has one with has[u] != 0. */
int64_t sampler_first_step_without(const uint8_t *has, int64_t n_units, int64_t global_batch, uint64_t seed,
                                   int64_t steps);

/* The index of the first label outside [0, num_labels), or -1. */
int64_t sampler_bad_label(const int32_t *labels, int64_t n, int num_labels);

#endif
