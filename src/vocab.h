/* vocab: a tokenizer in the llama2.c format (int32 max_token_length, then per token: float32
 * score, int32 length, bytes), with a hash map from piece bytes to token id. */
#ifndef SL_VOCAB_H
#define SL_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#define VOCAB_BYTE_FALLBACK 3 /* ids 3..258 are the pieces <0x00>..<0xFF> */
#define VOCAB_BOS 1

typedef struct {
    int n, max_len;
    float *scores;
    int32_t *starts, *lens; /* piece i is bytes[starts[i] .. starts[i] + lens[i]) */
    char *bytes;
    int32_t *slots; /* open-addressing hash table of ids, -1 when empty */
    uint32_t slot_mask;
} vocab;

/* Reading the file's fields in order: vocab_take copies n bytes at the cursor, or ends the program
 * naming the file, the field and the token (entry < 0: the header). */
typedef struct {
    const char *path, *buf;
    size_t len, pos;
} vocab_reader;
void vocab_take(vocab_reader *r, void *dst, size_t n, const char *what, int entry);

/* Load and check a tokenizer file; every problem is fatal and names the file. After an error
 * caught by rt_try, vocab_free releases what was loaded. */
void vocab_load(vocab *v, const char *path);
/* The id of the piece s[0..len), or -1. With duplicate pieces the lowest id wins. */
int32_t vocab_find(const vocab *v, const char *s, int len);
static inline const char *vocab_piece(const vocab *v, int32_t id) { return v->bytes + v->starts[id]; }
void vocab_free(vocab *v);
/* The bytes of token id after token prev (-1: none), as llama2.c decodes them: a byte-fallback
 * piece is its byte (put in *byte), and a piece's leading space after BOS is dropped. Returns
 * where they start; *len is their count. */
const char *vocab_decode(const vocab *v, int32_t prev, int32_t id, int *len, char *byte);

#endif
