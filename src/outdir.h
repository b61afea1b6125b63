/* outdir: the training output directory OUT. The state a previous run left there (checkpoints,
 * metrics.h5, adapter.h5) is continued (--resume) or replaced (--overwrite), never silently mixed
 * with a new run's. */
#ifndef SL_OUTDIR_H
#define SL_OUTDIR_H

#include "config.h"

/* Rank 0 (trapped by rt_rank0_checks): fatal when OUT holds another run's state and neither
 * --resume nor --overwrite says what to do with it. */
void outdir_check_previous(void *cfg);
/* Collective: rank 0 checks OUT as outdir_check_previous does; all ranks agree on the outcome
 * before anything is written. With --overwrite rank 0 then removes the previous run's state,
 * saying so. */
void outdir_claim(const sl_config *cfg);

#endif
