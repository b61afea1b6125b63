/* outdir: the training output directory OUT. A run lock keeps two runs out of one OUT; the state a
 * previous run left there (checkpoints, metrics.h5, adapter.h5) is continued (--resume) or replaced
 * (--overwrite), never silently mixed with a new run's. */
#ifndef SL_OUTDIR_H
#define SL_OUTDIR_H

#include "config.h"

/* The lock file in OUT: host, pid and Slurm job of the run holding it, locked with flock. */
#define OUTDIR_LOCK_NAME "shardlora.lock"

/* Rank 0 (trapped by rt_rank0_checks): fatal when OUT holds another run's state and neither
 * --resume nor --overwrite says what to do with it. */
void outdir_check_previous(void *cfg);
/* Collective: rank 0 takes OUT's run lock (a stale one, from a dead process on this host, is
 * reported and taken over) and checks OUT as outdir_check_previous does; all ranks agree on the
 * outcome before anything is written. With --overwrite rank 0 then removes the previous run's
 * state, saying so. The lock is held until outdir_release or the process exits. */
void outdir_claim(const sl_config *cfg);
/* Rank 0: remove the lock (the end of a run, also the checkpoint-and-requeue end). */
void outdir_release(void);

#endif
