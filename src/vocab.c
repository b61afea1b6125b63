/* vocab: reading and checking llama2.c tokenizer files, piece lookup by hashing, and decoding. */
#include "vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "readall.h"
#include "runtime.h"

void vocab_take(vocab_reader *r, void *dst, size_t n, const char *what, int entry)
{
    if (r->len - r->pos < n)
        sl_fatal("tokenizer file '%s' is truncated: %s of token %d needs %zu bytes at offset %zu, "
                 "but the file ends at %zu bytes", r->path, what, entry, n, r->pos, r->len);
    memcpy(dst, r->buf + r->pos, n);
    r->pos += n;
}

static uint32_t hash_bytes(const char *s, int len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static void build_index(vocab *v)
{
    uint32_t size = 1;
    while (size < 2u * (uint32_t)v->n) size *= 2;
    v->slot_mask = size - 1;
    v->slots = sl_malloc(size * sizeof *v->slots, "tokenizer hash table");
    memset(v->slots, 0xff, size * sizeof *v->slots);
    for (int32_t id = 0; id < v->n; id++) {
        if (vocab_find(v, vocab_piece(v, id), v->lens[id]) >= 0) continue; /* keep the lowest id */
        uint32_t s = hash_bytes(vocab_piece(v, id), v->lens[id]) & v->slot_mask;
        while (v->slots[s] >= 0) s = (s + 1) & v->slot_mask;
        v->slots[s] = id;
    }
}

int32_t vocab_find(const vocab *v, const char *s, int len)
{
    for (uint32_t i = hash_bytes(s, len) & v->slot_mask;; i = (i + 1) & v->slot_mask) {
        int32_t id = v->slots[i];
        if (id < 0) return -1;
        if (v->lens[id] == len && memcmp(vocab_piece(v, id), s, (size_t)len) == 0) return id;
    }
}

/* Byte fallback must be where llama2.c encoding puts it: id = byte + 3. */
static void check_byte_fallback(const vocab *v, const char *path)
{
    if (v->n < VOCAB_BYTE_FALLBACK + 256)
        sl_fatal("tokenizer file '%s' has %d tokens (expected at least 259: <unk>, <s>, </s> and the "
                 "256 byte-fallback tokens)", path, v->n);
    for (int b = 0; b < 256; b++) {
        char want[8];
        int id = VOCAB_BYTE_FALLBACK + b;
        snprintf(want, sizeof want, "<0x%02X>", b);
        if (v->lens[id] != 6 || memcmp(vocab_piece(v, id), want, 6) != 0)
            sl_fatal("tokenizer file '%s': token %d should be the byte-fallback piece %s "
                     "(found %.*s)", path, id, want, v->lens[id], vocab_piece(v, id));
    }
}

static void read_entries(vocab *v, vocab_reader *r)
{
    int cap = 1024;
    v->scores = sl_malloc((size_t)cap * sizeof *v->scores, "tokenizer scores");
    v->starts = sl_malloc((size_t)cap * sizeof *v->starts, "tokenizer pieces");
    v->lens = sl_malloc((size_t)cap * sizeof *v->lens, "tokenizer pieces");
    for (v->n = 0; r->pos < r->len; v->n++) {
        if (v->n == cap) {
            cap *= 2;
            v->scores = realloc(v->scores, (size_t)cap * sizeof *v->scores);
            v->starts = realloc(v->starts, (size_t)cap * sizeof *v->starts);
            v->lens = realloc(v->lens, (size_t)cap * sizeof *v->lens);
            if (!v->scores || !v->starts || !v->lens) sl_fatal("out of memory reading tokenizer '%s'", r->path);
        }
        vocab_take(r, &v->scores[v->n], 4, "the score", v->n);
        vocab_take(r, &v->lens[v->n], 4, "the length", v->n);
        if (v->lens[v->n] < 0 || v->lens[v->n] > v->max_len)
            sl_fatal("tokenizer file '%s': token %d has length %d (expected 0..%d, the max_token_length "
                     "in its header)", r->path, v->n, v->lens[v->n], v->max_len);
        if (r->len - r->pos < (size_t)v->lens[v->n])
            sl_fatal("tokenizer file '%s' is truncated: the %d bytes of token %d at offset %zu go past "
                     "its end at %zu bytes", r->path, v->lens[v->n], v->n, r->pos, r->len);
        v->starts[v->n] = (int32_t)r->pos;
        r->pos += (size_t)v->lens[v->n];
    }
}

void vocab_load(vocab *v, const char *path)
{
    memset(v, 0, sizeof *v);
    size_t len;
    vocab_reader r = {.path = path, .buf = read_whole_file(path, "tokenizer", &len)};
    r.len = len;
    v->bytes = (char *)r.buf; /* v's from here, so vocab_free releases it after a caught error too */
    if (len < 4) sl_fatal("tokenizer file '%s' is truncated: %zu bytes, too short for its 4-byte header", path, len);
    memcpy(&v->max_len, r.buf, 4);
    r.pos = 4;
    if (v->max_len <= 0 || v->max_len > 4096)
        sl_fatal("tokenizer file '%s': max_token_length is %d (expected 1..4096; is this a llama2.c "
                 "tokenizer.bin?)", path, v->max_len);
    read_entries(v, &r);
    check_byte_fallback(v, path);
    build_index(v);
}

void vocab_free(vocab *v)
{
    free(v->scores);
    free(v->starts);
    free(v->lens);
    free(v->bytes);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

const char *vocab_decode(const vocab *v, int32_t prev, int32_t id, int *len, char *byte)
{
    if (id >= VOCAB_BYTE_FALLBACK && id < VOCAB_BYTE_FALLBACK + 256) {
        *byte = (char)(id - VOCAB_BYTE_FALLBACK);
        *len = 1;
        return byte;
    }
    const char *s = vocab_piece(v, id);
    *len = v->lens[id];
    if (prev == VOCAB_BOS && *len > 0 && s[0] == ' ') s++, (*len)--; /* as sentencepiece after BOS */
    return s;
}
