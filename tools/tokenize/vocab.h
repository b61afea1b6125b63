/* vocab: token pieces (byte strings) by id, with a hash map from piece bytes to id. Ids may be
 * sparse (a tiktoken file may skip ranks): an absent id has length -1 and is never found. */
#ifndef SL_VOCAB_H
#define SL_VOCAB_H

#include <stdint.h>

typedef struct {
    int32_t n; /* ids are 0 .. n-1 */
    int32_t cap;
    int64_t *starts; /* piece i is bytes[starts[i] .. starts[i] + lens[i]) */
    int32_t *lens;
    float *scores;
    char *bytes;
    int64_t n_bytes, cap_bytes;
    int32_t *slots; /* open-addressing hash table of ids, -1 when empty */
    uint32_t slot_mask;
    int max_len;
} vocab;

void vocab_init(vocab *v);
/* Set piece id to s[0..len) with a score (ids may come in any order). */
void vocab_put(vocab *v, int32_t id, const char *s, int len, float score);
/* Make pieces findable by their bytes: those with findable[id] != 0, or every piece when findable
 * is NULL. With duplicate pieces the lowest id wins. */
void vocab_index(vocab *v, const uint8_t *findable);
/* The id of the piece s[0..len), or -1. */
int32_t vocab_find(const vocab *v, const char *s, int len);
static inline const char *vocab_piece(const vocab *v, int32_t id) { return v->bytes + v->starts[id]; }
static inline int vocab_has(const vocab *v, int32_t id) { return id >= 0 && id < v->n && v->lens[id] >= 0; }
void vocab_free(vocab *v);

#endif
