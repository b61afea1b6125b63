/* checkpoint: OUT/checkpoints/step_NNNNNNNN.h5, written collectively (each rank writes its range
 * of every logical tensor), so it loads on any number of ranks. It holds the adapter (/lora,
 * /score: the fp32 master weights), the AdamW moments (/optim/exp_avg/..., /optim/exp_avg_sq/...),
 * a checksum attribute per dataset, the step and tokens seen (the data order and every dropout
 * mask follow from the seed and the step), the resolved options and the build version. It is
 * written to a temporary name, closed (flushed) and renamed, and the last --ckpt-keep are kept. */
#ifndef SL_CHECKPOINT_H
#define SL_CHECKPOINT_H

#include <stdint.h>

#include "config.h"
#include "model.h"

enum { CKPT_PARAM, CKPT_EXP_AVG, CKPT_EXP_AVG_SQ, CKPT_ROLES };

typedef struct {
    int64_t step;
    double tokens_seen;
} ckpt_meta;

/* Collective. roles: the flat trainable shards (parameters, then the two moments). */
void checkpoint_save(const sl_model *m, float *const roles[CKPT_ROLES], const sl_config *cfg, const char *quant,
                     ckpt_meta meta);
/* Collective: --resume auto (the newest valid checkpoint in OUT; damaged ones are reported and
 * skipped) or a path. Returns 0 when auto finds none. The model's shapes and the options that
 * must match the checkpoint (resume.h) are checked, with an error naming both values. */
int checkpoint_resume(sl_model *m, float *const roles[CKPT_ROLES], const sl_config *cfg, ckpt_meta *meta);

#endif
