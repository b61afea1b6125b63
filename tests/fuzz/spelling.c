/* spelling: the text a tokenizer's pipeline promises its ids spell, worked out on the whole text,
 * and the bytes the ids spell. */
#include "spelling.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "nfc.h"
#include "runtime.h"
#include "utf8.h"

typedef struct {
    char *s;
    size_t n, cap;
} text_buf;

static void put(text_buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->s = realloc(b->s, b->cap);
        if (!b->s) sl_fatal("fuzz spelling: out of memory for %zu bytes", b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
}

/* *b = prefix + *b */
static void prepend(text_buf *b, const char *prefix)
{
    text_buf out = {0};
    put(&out, prefix, strlen(prefix));
    put(&out, b->s, b->n);
    free(b->s);
    *b = out;
}

/* Every a (non-empty) in *b replaced by r, left to right. */
static void replace_all(text_buf *b, const char *a, const char *r)
{
    size_t la = strlen(a), lr = strlen(r);
    text_buf out = {0};
    put(&out, "", 0);
    for (size_t i = 0; i < b->n;) {
        if (la && i + la <= b->n && !memcmp(b->s + i, a, la)) put(&out, r, lr), i += la;
        else put(&out, b->s + i++, 1);
    }
    free(b->s);
    *b = out;
}

static void normalize(const tokenizer *t, text_buf *b)
{
    for (int i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        if (st->kind == NORM_PREPEND && b->n > 0) prepend(b, st->a);
        else if (st->kind == NORM_REPLACE) replace_all(b, st->a, st->b);
        else if (st->kind == NORM_NFC) {
            text_buf out = {0};
            out.n = nfc_normalize(b->s, b->n, &out.s, &out.cap);
            free(b->s);
            *b = out;
        }
    }
}

/* The pre-tokenizers' rewrites of the text as one piece; NULL when it is cut before a rewrite. */
static const char *pre_tokenize(const tokenizer *t, text_buf *b)
{
    int cut = 0, rewritten = 0;
    for (int i = 0; i < t->n_pre; i++) {
        const pre_step *st = &t->pre[i];
        int rewrites = st->kind == PRE_METASPACE || (st->kind == PRE_BYTELEVEL && st->add_prefix_space);
        if (rewrites && (cut || rewritten)) return NULL;
        if (st->kind == PRE_BYTELEVEL && st->add_prefix_space && (b->n == 0 || b->s[0] != ' ')) prepend(b, " ");
        if (st->kind == PRE_METASPACE) {
            replace_all(b, " ", st->replacement);
            size_t lr = strlen(st->replacement);
            int starts = b->n >= lr && !memcmp(b->s, st->replacement, lr);
            if (st->prepend != PREPEND_NEVER && !starts) prepend(b, st->replacement);
        }
        rewritten |= rewrites;
        cut |= st->kind == PRE_SPLIT || st->re || (st->kind == PRE_METASPACE && st->split);
    }
    return "";
}

static int has_fallback(const tokenizer *t, const char *s, int n)
{
    for (int i = 0; t->byte_fallback && i < n; i++)
        if (t->byte_id[(uint8_t)s[i]] < 0) return 0;
    return t->byte_fallback;
}

/* Why the text's spelling is not promised, or NULL when it is. */
static const char *unpromised(const tokenizer *t, const char *text, size_t len, const text_buf *want)
{
    for (int i = 0; i < t->n_added; i++)
        if (memmem(text, len, t->added[i].text, (size_t)t->added[i].len)) return "not checked: an added token is in the text";
    for (int b = 0; t->byte_fallback && b < 256; b++) {
        int32_t id = t->byte_id[b];
        if (id >= 0 && memmem(want->s, want->n, pieces_text(&t->v, id), (size_t)t->v.lens[id]))
            return "not checked: the text holds a byte-fallback piece's spelling";
    }
    for (size_t i = 0; i < want->n;) {
        int n = t->units_are_bytes ? 1 : utf8_group_len(want->s + i, (int64_t)(want->n - i));
        if (pieces_find(&t->v, want->s + i, n) < 0 && !has_fallback(t, want->s + i, n))
            return "not checked: a unit of the text is no piece and has no byte fallback";
        i += (size_t)n;
    }
    return NULL;
}

/* The bytes ids spell into *got; 0 when an id spells nothing (no piece). */
static int spell(const tokenizer *t, const id_list *ids, text_buf *got)
{
    put(got, "", 0);
    for (int64_t i = 0; i < ids->n; i++) {
        int32_t id = ids->v[i];
        int byte = -1;
        for (int b = 0; t->byte_fallback && b < 256 && byte < 0; b++)
            if (t->byte_id[b] == id) byte = b;
        if (byte >= 0) put(got, &(char){(char)byte}, 1);
        else if (pieces_has(&t->v, id)) put(got, pieces_text(&t->v, id), (size_t)t->v.lens[id]);
        else return 0;
    }
    return 1;
}

spelling_verdict spelling_check(const tokenizer *t, const char *text, size_t len, const char **why)
{
    encoder e = {0};
    id_list ids = {0};
    encode_text(t, &e, text, len, 1, &ids);
    encoder_free(&e);
    text_buf want = {0}, got = {0};
    put(&want, text, len);
    if (len > 0) normalize(t, &want); /* an empty text is no segment: nothing is prepended */
    spelling_verdict v = SPELLS_BACK;
    *why = "spelled back";
    if (len > 0 && !pre_tokenize(t, &want)) v = SPELLING_NOT_PROMISED, *why = "not checked: a pre-tokenizer rewrites cut pieces";
    else if ((*why = unpromised(t, text, len, &want))) v = SPELLING_NOT_PROMISED;
    else if (!spell(t, &ids, &got)) v = SPELLS_OTHERWISE, *why = "an id is no piece";
    else if (len == 0 ? ids.n != 0 : got.n != want.n || memcmp(got.s, want.s, got.n) != 0)
        v = SPELLS_OTHERWISE, *why = "the ids spell other bytes";
    else
        *why = "spelled back";
    if (v == SPELLS_OTHERWISE)
        fprintf(stderr, "spelling: %lld ids spell %zu bytes '%.*s'; expected %zu bytes '%.*s'\n", (long long)ids.n,
                got.n, (int)(got.n < 200 ? got.n : 200), got.s ? got.s : "", want.n, (int)(want.n < 200 ? want.n : 200),
                want.s);
    free(want.s), free(got.s), free(ids.v);
    return v;
}

const char *spelling_require(const tokenizer *t, const char *text, size_t len, const char *target)
{
    const char *why;
    if (spelling_check(t, text, len, &why) == SPELLS_OTHERWISE) {
        fprintf(stderr, "%s: a %s tokenizer's ids for a %zu-byte text do not spell it back: %s\n", target, t->format, len, why);
        __builtin_trap();
    }
    return why;
}
