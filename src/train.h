/* train: the training loop of `shardlora train`. */
#ifndef SL_TRAIN_H
#define SL_TRAIN_H

#include "config.h"

/* Collective. Trains adapters (and the classification head) and writes OUT/adapter.h5,
 * OUT/metrics.h5 and OUT/checkpoints/. Returns the exit status: 0, or SL_EXIT_REQUEUE when it
 * stopped early (signal or wall time) after a checkpoint. */
int train_run(const sl_config *cfg);

#endif
