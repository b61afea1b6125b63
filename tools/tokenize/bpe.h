/* bpe: llama2.c / sentencepiece-style encoding of text with a vocab: a dummy-prefix space, one
 * token per UTF-8 character (byte fallback when absent), then greedy merges by score. */
#ifndef SL_BPE_H
#define SL_BPE_H

#include <stdint.h>

#include "vocab.h"

/* Encode text[0..len) into ids (room for len + 1 ids); returns the number of ids. */
int64_t bpe_encode(const vocab *v, const char *text, int64_t len, int32_t *ids);

#endif
