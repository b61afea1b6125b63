/* spelling: whether a tokenization spells its text back, the oracle of the tokenizer targets. */
#ifndef SL_FUZZ_SPELLING_H
#define SL_FUZZ_SPELLING_H

#include <stddef.h>
#include <stdint.h>

#include "vocab.h"

/* 1 when ids[0..n) are " " + text[0..len) byte for byte (nothing for an empty text), as
 * bpe_encode promises: each token spells its piece, a byte-fallback token its byte. */
int spells_text(const vocab *v, const int32_t *ids, int64_t n, const uint8_t *text, size_t len);

#endif
