/* eval: next-token loss and perplexity of a model over every document of a dataset. */
#ifndef SL_EVAL_H
#define SL_EVAL_H

#include "config.h"

/* Collective. Writes cfg->out (HDF5) on rank 0 and prints the result. */
void eval_run(const sl_config *cfg);

#endif
