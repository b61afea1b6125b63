/* spmodel: SentencePiece .model files (a ModelProto, protobuf wire format), BPE models only.
 * Encoded as sentencepiece does: spaces become U+2581 with one prepended (the dummy prefix),
 * user-defined pieces are kept whole, merges by score, byte fallback after merging; control
 * pieces (<s>, [INST], ...) are never produced by text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "tokenizer.h"

#define META_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's visible space */

enum { PIECE_NORMAL = 1, PIECE_UNKNOWN = 2, PIECE_CONTROL = 3, PIECE_USER_DEFINED = 4, PIECE_UNUSED = 5, PIECE_BYTE = 6 };

typedef struct {
    const char *path;
    const uint8_t *p, *end;
} pb;

static uint64_t varint(pb *b)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) sl_fatal("SentencePiece model '%s' is truncated inside a varint", b->path);
        uint8_t c = *b->p++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return v;
    }
    sl_fatal("SentencePiece model '%s': a varint longer than 10 bytes (is this a .model file?)", b->path);
}

/* The next field: its number and wire type; *sub gets a length-delimited field's bytes. */
static int next_field(pb *b, int *wire, pb *sub, uint64_t *value)
{
    if (b->p >= b->end) return 0;
    uint64_t key = varint(b);
    *wire = (int)(key & 7);
    if (*wire == 0) *value = varint(b);
    else if (*wire == 2) {
        uint64_t n = varint(b);
        if (n > (uint64_t)(b->end - b->p)) sl_fatal("SentencePiece model '%s' is truncated: a field of %llu bytes", b->path, (unsigned long long)n);
        *sub = (pb){b->path, b->p, b->p + n};
        b->p += n;
    } else if (*wire == 5) {
        if (b->end - b->p < 4) sl_fatal("SentencePiece model '%s' is truncated in a 32-bit field", b->path);
        uint32_t v;
        memcpy(&v, b->p, 4);
        *value = v;
        b->p += 4;
    } else if (*wire == 1) {
        if (b->end - b->p < 8) sl_fatal("SentencePiece model '%s' is truncated in a 64-bit field", b->path);
        memcpy(value, b->p, 8);
        b->p += 8;
    } else
        sl_fatal("SentencePiece model '%s': wire type %d of field %llu is not protobuf's (is this a .model file?)",
                 b->path, *wire, (unsigned long long)(key >> 3));
    return (int)(key >> 3);
}

typedef struct {
    int model_type, byte_fallback, treat_whitespace_as_suffix;
    int32_t unk_id, bos_id, eos_id, pad_id;
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    char name[64];
    size_t charsmap_len;
} sp_specs;

static void read_piece(tokenizer *t, pb b, int32_t id, uint8_t *types)
{
    int wire, f;
    pb sub = {0};
    uint64_t v = 0;
    const char *piece = "";
    int len = 0, type = PIECE_NORMAL;
    float score = 0;
    while ((f = next_field(&b, &wire, &sub, &v)))
        if (f == 1 && wire == 2) piece = (const char *)sub.p, len = (int)(sub.end - sub.p);
        else if (f == 2 && wire == 5) memcpy(&score, &(uint32_t){(uint32_t)v}, 4);
        else if (f == 3 && wire == 0) type = (int)v;
    if (len == 0) /* as sentencepiece refuses it: an empty user-defined piece would match everywhere */
        sl_fatal("SentencePiece model '%s': piece %d is empty (expected its text)", t->path, id);
    pieces_put(&t->v, id, piece, len, score);
    types[id] = (uint8_t)type;
}

static void read_trainer(pb b, sp_specs *s)
{
    int wire, f;
    pb sub;
    uint64_t v = 0;
    while ((f = next_field(&b, &wire, &sub, &v))) {
        if (wire != 0) continue;
        int32_t i = (int32_t)(int64_t)v;
        if (f == 3) s->model_type = i;
        else if (f == 24) s->treat_whitespace_as_suffix = i;
        else if (f == 35) s->byte_fallback = i;
        else if (f == 40) s->unk_id = i;
        else if (f == 41) s->bos_id = i;
        else if (f == 42) s->eos_id = i;
        else if (f == 43) s->pad_id = i;
    }
}

static void read_normalizer(pb b, sp_specs *s)
{
    int wire, f;
    pb sub;
    uint64_t v = 0;
    while ((f = next_field(&b, &wire, &sub, &v))) {
        if (f == 1 && wire == 2) snprintf(s->name, sizeof s->name, "%.*s", (int)(sub.end - sub.p), (const char *)sub.p);
        else if (f == 2 && wire == 2) s->charsmap_len = (size_t)(sub.end - sub.p);
        else if (f == 3 && wire == 0) s->add_dummy_prefix = (int)v;
        else if (f == 4 && wire == 0) s->remove_extra_whitespaces = (int)v;
        else if (f == 5 && wire == 0) s->escape_whitespaces = (int)v;
    }
}

static void check_supported(const tokenizer *t, const sp_specs *s)
{
    static const char *const MODEL[] = {"", "Unigram", "BPE", "Word", "Char"};
    if (s->model_type != 2)
        sl_fatal("SentencePiece model '%s' is a %s model (model_type %d); only BPE models are supported", t->path,
                 s->model_type >= 1 && s->model_type <= 4 ? MODEL[s->model_type] : "unknown", s->model_type);
    if (s->charsmap_len > 0)
        sl_fatal("SentencePiece model '%s': its normalizer '%s' (a precompiled character map of %zu bytes) is not "
                 "supported (only the identity normalizer)", t->path, s->name, s->charsmap_len);
    if (s->remove_extra_whitespaces)
        sl_fatal("SentencePiece model '%s': its normalizer's remove_extra_whitespaces is not supported", t->path);
    if (s->treat_whitespace_as_suffix)
        sl_fatal("SentencePiece model '%s': treat_whitespace_as_suffix is not supported", t->path);
}

static void classify_pieces(tokenizer *t, const uint8_t *types, const sp_specs *s)
{
    uint8_t *findable = sl_calloc((size_t)t->v.n, 1, "piece types");
    for (int32_t id = 0; id < t->v.n; id++) {
        findable[id] = types[id] == PIECE_NORMAL || types[id] == PIECE_USER_DEFINED;
        if (types[id] == PIECE_CONTROL) tokenizer_add_special(t, pieces_text(&t->v, id), t->v.lens[id], id, 0);
        if (types[id] == PIECE_USER_DEFINED) {
            t->atomic = realloc(t->atomic, (size_t)(t->n_atomic + 1) * sizeof *t->atomic);
            if (!t->atomic) sl_fatal("out of memory reading '%s'", t->path);
            t->atomic[t->n_atomic++] = id;
        }
    }
    pieces_index(&t->v, findable);
    free(findable);
    if (s->byte_fallback) tokenizer_find_byte_pieces(t);
    else memset(t->byte_id, 0xff, sizeof t->byte_id);
}

/* A trainer spec's id: -1 (none) or a piece's. */
static int32_t special_id(const tokenizer *t, int32_t id, const char *field)
{
    if (id != -1 && !pieces_has(&t->v, id))
        sl_fatal("SentencePiece model '%s': its trainer spec's %s is %d, which is no piece (expected -1 or 0..%d)",
                 t->path, field, id, t->v.n - 1);
    return id;
}

void load_sentencepiece(tokenizer *t, const char *buf, size_t len)
{
    t->format = "sentencepiece";
    sp_specs s = {.unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1, .model_type = 1, /* protobuf defaults */
                  .add_dummy_prefix = 1, .remove_extra_whitespaces = 1, .escape_whitespaces = 1};
    pb b = {t->path, (const uint8_t *)buf, (const uint8_t *)buf + len}, sub;
    uint8_t *types = sl_malloc(len / 2 + 1, "piece types"); /* a piece takes at least 2 bytes */
    int wire, f;
    int32_t n = 0;
    uint64_t v;
    while ((f = next_field(&b, &wire, &sub, &v)))
        if (f == 1 && wire == 2) read_piece(t, sub, n++, types);
        else if (f == 2 && wire == 2) read_trainer(sub, &s);
        else if (f == 3 && wire == 2) read_normalizer(sub, &s);
    if (n == 0) sl_fatal("SentencePiece model '%s' has no pieces", t->path);
    check_supported(t, &s);
    classify_pieces(t, types, &s);
    free(types);
    t->rule = MERGE_PIECE_SCORE;
    t->byte_fallback = s.byte_fallback;
    t->unk_id = special_id(t, s.unk_id, "unk_id"), t->bos_id = special_id(t, s.bos_id, "bos_id");
    t->eos_id = special_id(t, s.eos_id, "eos_id"), t->pad_id = special_id(t, s.pad_id, "pad_id");
    if (s.add_dummy_prefix) tokenizer_add_norm(t, NORM_PREPEND, META_SPACE, NULL);
    if (s.escape_whitespaces) tokenizer_add_norm(t, NORM_REPLACE, " ", META_SPACE);
}
