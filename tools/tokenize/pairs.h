/* pairs: a hash map from a pair of token ids to its merge (rank and resulting id), for the merges
 * list of a tokenizer.json BPE model. */
#ifndef SL_PAIRS_H
#define SL_PAIRS_H

#include <stdint.h>

typedef struct {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 marks an empty slot */
    int32_t *rank, *merged;
    uint64_t mask;
    int64_t n;
} pair_map;

void pairs_init(pair_map *m, int64_t expected);
/* Add a merge; a pair already present keeps its first (lower) rank. */
void pairs_put(pair_map *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
/* The rank of merging left and right (and *merged), or -1 when they do not merge. */
int32_t pairs_find(const pair_map *m, int32_t left, int32_t right, int32_t *merged);
void pairs_free(pair_map *m);

#endif
