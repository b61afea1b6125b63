/* generate: greedy continuation of prompts of token ids, with or without an adapter. */
#ifndef SL_GENERATE_H
#define SL_GENERATE_H

#include "config.h"

/* Collective. Prints each prompt's continuation on rank 0 (and writes cfg->out when given). */
void generate_run(const sl_config *cfg);

#endif
