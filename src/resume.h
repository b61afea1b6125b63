/* resume: the options a run must share with the checkpoint it resumes from. One table holds every
 * option of train: those that change the trained function or the data of a step must match the
 * checkpoint's (LoRA shape and scale, task, windows, seed, base quantization, and the global batch
 * micro-batch x ranks x grad-accum); the optimizer's settings may change with a warning (a new rate
 * on restart is the user's choice); the run's length, output, pace and machine may change freely. */
#ifndef SL_RESUME_H
#define SL_RESUME_H

#include <hdf5.h>
#include <stdint.h>

#include "config.h"

/* Calling rank: fatal, naming the checkpoint file path, every option that differs and must match,
 * both values and what to pass; warns about the changed options that may change. f: the open
 * checkpoint, whose /shardlora/options config_write stored; step: the checkpoint's step. */
void resume_check_options(hid_t f, const char *path, const sl_config *cfg, int64_t step);

#endif
