/* pieces: token pieces (byte strings) by id, with a hash map from piece bytes to id. Ids may be
 * sparse (a tiktoken file may skip ranks): an absent id has length -1 and is never found. */
#ifndef SL_PIECES_H
#define SL_PIECES_H

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
} piece_table;

void pieces_init(piece_table *v);
/* Set piece id to s[0..len) with a score (ids may come in any order). */
void pieces_put(piece_table *v, int32_t id, const char *s, int len, float score);
/* Make pieces findable by their bytes: those with findable[id] != 0, or every piece when findable
 * is NULL. With duplicate pieces the lowest id wins. */
void pieces_index(piece_table *v, const uint8_t *findable);
/* The id of the piece s[0..len), or -1. */
int32_t pieces_find(const piece_table *v, const char *s, int len);
static inline const char *pieces_text(const piece_table *v, int32_t id) { return v->bytes + v->starts[id]; }
static inline int pieces_has(const piece_table *v, int32_t id) { return id >= 0 && id < v->n && v->lens[id] >= 0; }
void pieces_free(piece_table *v);

#endif
