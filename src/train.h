/* train: the training loop of `shardlora train`. */
#ifndef SL_TRAIN_H
#define SL_TRAIN_H

#include "config.h"

/* Collective. Trains adapters (and the classification head) and writes OUT/adapter.h5 and
 * OUT/metrics.h5. */
void train_run(const sl_config *cfg);

#endif
