/* sampler: seeded epoch permutations of windows (or documents), sliced by step, micro-step and
 * rank; each rank reads only the tokens of its own units. */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "rng.h"
#include "runtime.h"

int64_t sampler_bad_label(const int32_t *labels, int64_t n, int num_labels)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= num_labels) return i;
    return -1;
}

static void read_labels(sl_sampler *s)
{
    const sl_dataset *d = s->d;
    if (s->o.num_labels <= 0)
        rt_fail_all("option --num-labels=%d: --task seq_cls needs at least 1 label", s->o.num_labels);
    if (!d->has_labels) rt_fail_all("%s: dataset has no /labels, needed by --task seq_cls", d->path);
    s->doc_labels = sl_malloc((size_t)(d->n_docs ? d->n_docs : 1) * 4, "labels");
    h5_read(d->file, "/labels", SL_I32, s->doc_labels);
    int64_t bad = sampler_bad_label(s->doc_labels, d->n_docs, s->o.num_labels);
    if (bad >= 0)
        rt_fail_all("%s: dataset /labels: document %lld has label %d, outside [0, %d) (--num-labels)", d->path,
                    (long long)bad, s->doc_labels[bad], s->o.num_labels);
}

void sampler_init(sl_sampler *s, const sl_dataset *d, const sampler_options *o)
{
    memset(s, 0, sizeof *s);
    s->d = d;
    s->o = *o;
    s->world = RT.world, s->rank = RT.rank;
    int cls = o->task == SAMPLER_SEQ_CLS;
    if (cls) read_labels(s);
    s->n_units = cls ? data_document_units(d, o->seq_len, &s->units) : data_eval_windows(d, o->seq_len, &s->units);
    if (s->n_units == 0)
        rt_fail_all("%s: nothing to train on: every document is %s", d->path,
                    cls ? "empty" : "shorter than 2 tokens");
    s->perm = sl_malloc((size_t)s->n_units * sizeof *s->perm, "epoch order");
    s->perm_epoch = -1;
    size_t rows = (size_t)o->micro_batch * (size_t)o->seq_len;
    sl_batch *b = &s->mb.batch;
    b->ids = sl_malloc(rows * 4, "batch"), b->pos = sl_malloc(rows * 4, "batch");
    b->target = sl_malloc(rows * 4, "batch");
    b->seq_start = sl_malloc(((size_t)o->micro_batch + 1) * 4, "batch");
    if (cls) s->mb.labels = sl_malloc((size_t)o->micro_batch * 4, "batch labels");
    s->tokens = sl_malloc(((size_t)o->seq_len + 1) * 4, "tokens");
    s->mask = sl_malloc((size_t)o->seq_len + 1, "loss mask");
}

void sampler_free(sl_sampler *s)
{
    sl_batch *b = &s->mb.batch;
    free(b->ids), free(b->pos), free(b->target), free(b->seq_start), free(s->mb.labels);
    free(s->tokens), free(s->mask), free(s->perm), free(s->units), free(s->doc_labels);
    memset(s, 0, sizeof *s);
}

int64_t sampler_global_batch(const sl_sampler *s)
{
    return (int64_t)s->world * s->o.micro_batch * s->o.grad_accum;
}

int64_t sampler_steps_per_epoch(const sl_sampler *s)
{
    int64_t g = sampler_global_batch(s);
    return (s->n_units + g - 1) / g;
}

sampler_pos sampler_position(const sl_sampler *s, int64_t step)
{
    int64_t p = step * sampler_global_batch(s);
    return (sampler_pos){.epoch = p / s->n_units, .index = p % s->n_units};
}

void sampler_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
    sl_rng r;
    rng_seed(&r, seed, (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

int64_t sampler_first_step_without(const uint8_t *has, int64_t n_units, int64_t global_batch, uint64_t seed,
                                   int64_t steps)
{
    int64_t without = 0;
    for (int64_t u = 0; u < n_units; u++) without += !has[u];
    /* A step's positions fall in at most two epochs, distinct units within each, one part at least
     * half of them (or the step holds a whole epoch): fewer units without a target than that
     * leaves every step one with a target. */
    if (without < (global_batch + 1) / 2 || without == 0) return -1;
    int64_t *perm = sl_malloc((size_t)n_units * sizeof *perm, "epoch order"), epoch = -1, found = -1;
    for (int64_t step = 0; step < steps && found < 0; step++) {
        int any = 0;
        for (int64_t p = step * global_batch; p < (step + 1) * global_batch && !any; p++) {
            if (p / n_units != epoch) sampler_permutation(perm, n_units, seed, epoch = p / n_units);
            any = has[perm[p % n_units]];
        }
        if (!any) found = step;
    }
    free(perm);
    return found;
}

/* The unit at stream position p; the permutation of p's epoch is drawn when first needed. */
static const sl_window *unit_at(sl_sampler *s, int64_t p)
{
    int64_t epoch = p / s->n_units;
    if (epoch != s->perm_epoch) {
        sampler_permutation(s->perm, s->n_units, s->o.seed, epoch);
        s->perm_epoch = epoch;
    }
    return &s->units[s->perm[p % s->n_units]];
}

/* Append one unit as a sequence; returns the index of its first bad token id, or -1. */
static int64_t pack_unit(sl_sampler *s, const sl_window *w)
{
    sl_micro_batch *mb = &s->mb;
    sl_batch *b = &mb->batch;
    int lm = s->o.task == SAMPLER_CAUSAL_LM;
    int64_t bad = data_read(s->d, w->start, w->len, s->tokens, lm ? s->mask : NULL);
    int rows = lm ? w->len - 1 : w->len;
    for (int j = 0; j < rows; j++) {
        int t = b->T + j;
        b->ids[t] = s->tokens[j];
        b->pos[t] = j;
        b->target[t] = lm && s->mask[j + 1] ? s->tokens[j + 1] : -1;
        mb->n_targets += b->target[t] >= 0;
    }
    if (!lm) mb->labels[b->n_seqs] = s->doc_labels[w->doc];
    b->T += rows;
    b->seq_start[++b->n_seqs] = b->T;
    return bad;
}

const sl_micro_batch *sampler_batch(sl_sampler *s, int64_t step, int micro)
{
    sl_micro_batch *mb = &s->mb;
    mb->batch.T = mb->batch.n_seqs = 0;
    mb->batch.seq_start[0] = 0;
    mb->n_targets = 0;
    int64_t first = step * sampler_global_batch(s) + ((int64_t)micro * s->world + s->rank) * s->o.micro_batch;
    int64_t bad = -1;
    int32_t bad_id = 0;
    for (int i = 0; i < s->o.micro_batch; i++) {
        const sl_window *w = unit_at(s, first + i);
        int64_t bad_here = pack_unit(s, w);
        if (bad < 0 && bad_here >= 0) bad = bad_here, bad_id = s->tokens[bad_here - w->start];
    }
    rt_agree(bad < 0, "%s: dataset /tokens: token id %d at index %lld is outside the vocabulary [0, %d)",
             s->d->path, bad_id, (long long)bad, s->d->vocab_size);
    return mb;
}
