/* llama2c: tokenizer.bin of llama2.c (int32 max_token_length, then per token: float32 score,
 * int32 length, bytes). Encoded as llama2.c does: a leading space, one symbol per character,
 * merges by score, byte fallback to ids 3..258. */
#include <string.h>

#include "runtime.h"
#include "tokenizer.h"
#include "vocab.h"

#define LLAMA2C_BYTE_FALLBACK 3 /* ids 3..258 are the pieces <0x00>..<0xFF> */

static void check_byte_fallback(const tokenizer *t)
{
    if (t->v.n < LLAMA2C_BYTE_FALLBACK + 256)
        sl_fatal("tokenizer file '%s' has %d tokens (expected at least 259: <unk>, <s>, </s> and the "
                 "256 byte-fallback tokens)", t->path, t->v.n);
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] != LLAMA2C_BYTE_FALLBACK + b) {
            int id = LLAMA2C_BYTE_FALLBACK + b;
            sl_fatal("tokenizer file '%s': token %d should be the byte-fallback piece <0x%02X> (found %.*s)", t->path,
                     id, b, t->v.lens[id], pieces_text(&t->v, id));
        }
}

void load_llama2c(tokenizer *t, const char *buf, size_t len)
{
    t->format = "llama2.c";
    vocab_reader r = {.path = t->path, .buf = buf, .len = len};
    int32_t max_len;
    if (len < 4) sl_fatal("tokenizer file '%s' is truncated: %zu bytes, too short for its 4-byte header", t->path, len);
    vocab_take(&r, &max_len, 4, "the header", -1);
    if (max_len <= 0 || max_len > 4096)
        sl_fatal("tokenizer file '%s': max_token_length is %d (expected 1..4096; is this a llama2.c "
                 "tokenizer.bin, a tokenizer.json, a SentencePiece .model or a tiktoken file?)", t->path, max_len);
    for (int32_t id = 0; r.pos < r.len; id++) {
        float score;
        int32_t n;
        vocab_take(&r, &score, 4, "the score", id);
        vocab_take(&r, &n, 4, "the length", id);
        if (n < 0 || n > max_len)
            sl_fatal("tokenizer file '%s': token %d has length %d (expected 0..%d, the max_token_length "
                     "in its header)", t->path, id, n, max_len);
        if (r.len - r.pos < (size_t)n)
            sl_fatal("tokenizer file '%s' is truncated: the %d bytes of token %d at offset %zu go past "
                     "its end at %zu bytes", t->path, n, id, r.pos, r.len);
        pieces_put(&t->v, id, r.buf + r.pos, n, score);
        r.pos += (size_t)n;
    }
    pieces_index(&t->v, NULL);
    tokenizer_find_byte_pieces(t);
    check_byte_fallback(t);
    t->rule = MERGE_PIECE_SCORE;
    t->byte_fallback = 1;
    t->keep_invalid_utf8 = 1;
    t->unk_id = 0, t->bos_id = 1, t->eos_id = 2;
    tokenizer_add_norm(t, NORM_PREPEND, " ", NULL); /* sentencepiece's dummy prefix */
}
