/* bpe: byte-pair encoding of one word by the tokenizer's merge rule. */
#ifndef SL_BPE_H
#define SL_BPE_H

#include <stdint.h>

#include "ids.h"
#include "tokenizer.h"

typedef struct bpe_pair bpe_pair;
typedef struct bpe_cached bpe_cached;
typedef struct {
    int32_t *start, *len, *id, *prev, *next;
    uint8_t *frozen;
    bpe_pair *heap;
    int64_t n_heap, cap;
    bpe_cached *cache; /* recent short words and their ids (words repeat: most are found here) */
} bpe_scratch;

/* Append the ids of the word w[0..n) (valid UTF-8) to out. */
void bpe_word(const tokenizer *t, bpe_scratch *s, const char *w, int64_t n, id_list *out);
void bpe_scratch_free(bpe_scratch *s);

#endif
