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
    for (size_t i = 0; i < want->n;) {
        int n = t->units_are_bytes ? 1 : utf8_group_len(want->s + i, (int64_t)(want->n - i));
        if (pieces_find(&t->v, want->s + i, n) < 0 && !has_fallback(t, want->s + i, n))
            return "not checked: a unit of the text is no piece and has no byte fallback";
        i += (size_t)n;
    }
    return NULL;
}

/* The byte a byte-fallback token stands for, or -1. */
static int fallback_byte(const tokenizer *t, int32_t id)
{
    for (int b = 0; t->byte_fallback && b < 256; b++)
        if (t->byte_id[b] == id) return b;
    return -1;
}

/* Whether ids spell want: each its piece's bytes, a byte-fallback token also its byte (its piece,
 * <0xNN>, may come from text that reads so). Else *bad is the first id that does not fit and *at
 * where it stands in want (ids->n when they end early or run past it). */
static int spells(const tokenizer *t, const id_list *ids, const text_buf *want, int64_t *bad, size_t *at)
{
    *at = 0;
    for (*bad = 0; *bad < ids->n; ++*bad) {
        int32_t id = ids->v[*bad];
        if (!pieces_has(&t->v, id)) return 0;
        size_t n = (size_t)t->v.lens[id];
        int byte = fallback_byte(t, id);
        if (*at + n <= want->n && !memcmp(want->s + *at, pieces_text(&t->v, id), n)) *at += n;
        else if (byte >= 0 && *at < want->n && (uint8_t)want->s[*at] == byte) ++*at;
        else return 0;
    }
    return *at == want->n;
}

/* What did not fit, on stderr before the target stops. */
static void report(const tokenizer *t, const id_list *ids, const text_buf *want, int64_t bad, size_t at)
{
    int32_t id = bad < ids->n ? ids->v[bad] : -1;
    int known = pieces_has(&t->v, id);
    fprintf(stderr, "spelling: id %lld of %lld (%d, %s '%.*s') does not fit at byte %zu of the %zu expected: '%.*s'\n",
            (long long)bad, (long long)ids->n, id, known ? "piece" : "no piece", known ? t->v.lens[id] : 0,
            known ? pieces_text(&t->v, id) : "", at, want->n, (int)(want->n < 200 ? want->n : 200), want->s);
}

spelling_verdict spelling_check(const tokenizer *t, const char *text, size_t len, const char **why)
{
    encoder e = {0};
    id_list ids = {0};
    encode_text(t, &e, text, len, 1, &ids);
    encoder_free(&e);
    text_buf want = {0};
    put(&want, text, len);
    if (len > 0) normalize(t, &want); /* an empty text is no segment: nothing is prepended */
    spelling_verdict v = SPELLING_NOT_PROMISED;
    int64_t bad = 0;
    size_t at = 0;
    if (len > 0 && !pre_tokenize(t, &want)) *why = "not checked: a pre-tokenizer rewrites cut pieces";
    else if (!(*why = unpromised(t, text, len, &want))) v = spells(t, &ids, &want, &bad, &at) ? SPELLS_BACK : SPELLS_OTHERWISE;
    if (v == SPELLS_BACK) *why = "spelled back";
    if (v == SPELLS_OTHERWISE) report(t, &ids, &want, bad, at), *why = "the ids spell other bytes";
    free(want.s), free(ids.v);
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
