/* slurm: stopping in time. USR1 (sent by `#SBATCH --signal=B:USR1@N` through the job script, or
 * scancel --signal=USR1) and TERM only set a flag; the training loop agrees on it across ranks at
 * the next step boundary, checkpoints and exits with SL_EXIT_REQUEUE. A second signal ends the
 * process at once. Under Slurm the remaining wall time comes from libslurm, so a checkpoint lands
 * before the limit even without a signal (--ckpt-before-end). */
#ifndef SL_SLURM_H
#define SL_SLURM_H

/* The exit status that asks the job script to requeue the job. */
#define SL_EXIT_REQUEUE 3

void slurm_catch_signals(void);
/* The signal received, or 0. */
int slurm_signal_received(void);
/* Seconds left before the job's time limit, or -1 when not under Slurm or unknown. Asks the
 * controller at most once a minute. */
double slurm_remaining_seconds(void);

#endif
