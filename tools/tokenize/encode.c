/* encode: the pipeline of tokenizer.h. The text is made valid UTF-8, cut at added tokens (each
 * becomes its id), and each segment between them is normalized, pre-tokenized into words by the
 * steps in order, and each word merged by BPE. */
#include "encode.h"

#include <stdlib.h>
#include <string.h>

#include "nfc.h"
#include "runtime.h"
#include "utf8.h"

static char *fit_chars(char **b, size_t *cap, size_t need)
{
    if (need + 1 > *cap) {
        *cap = 2 * (need + 1);
        *b = realloc(*b, *cap);
        if (!*b) sl_fatal("out of memory encoding a document of %zu bytes", need);
    }
    return *b;
}

static void push_piece(encoder *e, int k, size_t start, size_t len, int at_start)
{
    if (e->n_pieces[k] == e->cap_pieces[k]) {
        e->cap_pieces[k] = e->cap_pieces[k] ? 2 * e->cap_pieces[k] : 64;
        e->pieces[k] = realloc(e->pieces[k], (size_t)e->cap_pieces[k] * sizeof *e->pieces[k]);
        if (!e->pieces[k]) sl_fatal("out of memory pre-tokenizing a document");
    }
    e->pieces[k][e->n_pieces[k]++] = (text_piece){start, len, at_start};
}

/* Count the occurrences of a (non-empty) in s[0..n). */
static size_t count_of(const char *s, size_t n, const char *a, size_t la)
{
    size_t c = 0;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), a, la)); p += la) c++;
    return c;
}

/* out = s with every a replaced by b; returns its length. out has room for it. */
static size_t replace_into(char *out, const char *s, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), o = 0;
    for (size_t i = 0; i < n;) {
        if (i + la <= n && memcmp(s + i, a, la) == 0) memcpy(out + o, b, lb), o += lb, i += la;
        else out[o++] = s[i++];
    }
    return o;
}

/* Apply the normalizers to s[0..*len): returns the normalized text, in e's buffer *used (-1: none
 * written, the text is s itself). Each step writes the buffer the previous one did not. */
static const char *normalize(const tokenizer *t, encoder *e, const char *s, size_t *len, int *used)
{
    *used = -1;
    for (int i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        int k = *used == 0 ? 1 : 0;
        size_t la = strlen(st->a), lb = st->b ? strlen(st->b) : 0;
        if (st->kind == NORM_PREPEND && *len == 0) continue;
        if (st->kind == NORM_NFC) {
            *len = nfc_normalize(s, *len, &e->buf[k], &e->cap_buf[k]);
            s = e->buf[k];
            *used = k;
            continue;
        }
        size_t n = st->kind == NORM_PREPEND ? la + *len : *len + count_of(s, *len, st->a, la) * lb;
        char *out = fit_chars(&e->buf[k], &e->cap_buf[k], n);
        if (st->kind == NORM_PREPEND) {
            memcpy(out, st->a, la);
            memcpy(out + la, s, *len);
            *len = n;
        } else
            *len = replace_into(out, s, *len, st->a, st->b);
        s = out;
        *used = k;
    }
    return s;
}

typedef struct {
    encoder *e;
    int k;
    size_t base;
    int at_start;
} split_ctx;

static void on_piece(void *ctx, size_t start, size_t len)
{
    split_ctx *c = ctx;
    push_piece(c->e, c->k, c->base + start, len, c->at_start && start == 0);
}

static void split_piece(encoder *e, int k, regex *re, const char *text, text_piece p)
{
    split_ctx c = {e, k, p.start, p.at_start};
    regex_split(re, text + p.start, p.len, on_piece, &c);
}

/* Metaspace: spaces become the replacement, which may also be prepended; with split, a word
 * begins at every replacement. */
static size_t metaspace_into(const pre_step *st, char *out, const char *s, text_piece p)
{
    size_t lr = strlen(st->replacement), o = 0;
    char *body = out + lr;
    size_t n = replace_into(body, s + p.start, p.len, " ", st->replacement);
    int prepend = (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && p.at_start)) &&
                  !(n >= lr && memcmp(body, st->replacement, lr) == 0);
    if (prepend) memcpy(out, st->replacement, lr), o = lr + n;
    else memmove(out, body, n), o = n;
    return o;
}

static void metaspace_split(encoder *e, int k, const pre_step *st, const char *text, size_t start, size_t n, int at_start)
{
    size_t lr = strlen(st->replacement), from = start;
    for (size_t i = start + 1; st->split && i + lr <= start + n; i++)
        if (memcmp(text + i, st->replacement, lr) == 0) {
            push_piece(e, k, from, i - from, at_start && from == start);
            from = i;
        }
    push_piece(e, k, from, start + n - from, at_start && from == start);
}

/* Steps that rewrite the text (ByteLevel's prefix space, Metaspace) copy every piece into the
 * other buffer; the others only cut pieces. Returns the text the new pieces refer to. */
static const char *pre_tokenize_step(encoder *e, const pre_step *st, const char *text, int k, int *buf)
{
    int nk = k ^ 1;
    e->n_pieces[nk] = 0;
    if (st->kind == PRE_SPLIT) {
        for (int64_t i = 0; i < e->n_pieces[k]; i++) split_piece(e, nk, st->re, text, e->pieces[k][i]);
        return text;
    }
    size_t total = 0, lr = st->replacement ? strlen(st->replacement) : 1;
    for (int64_t i = 0; i < e->n_pieces[k]; i++) total += e->pieces[k][i].len * lr + lr;
    *buf = *buf == 0 ? 1 : 0;
    char *out = fit_chars(&e->buf[*buf], &e->cap_buf[*buf], total);
    size_t o = 0;
    for (int64_t i = 0; i < e->n_pieces[k]; i++) {
        text_piece p = e->pieces[k][i];
        size_t start = o;
        if (st->kind == PRE_METASPACE) {
            o += metaspace_into(st, out + o, text, p);
            metaspace_split(e, nk, st, out, start, o - start, p.at_start);
            continue;
        }
        if (st->add_prefix_space && (p.len == 0 || text[p.start] != ' ')) out[o++] = ' ';
        memcpy(out + o, text + p.start, p.len), o += p.len;
        text_piece q = {start, o - start, p.at_start};
        if (st->re) split_piece(e, nk, st->re, out, q);
        else push_piece(e, nk, q.start, q.len, q.at_start);
    }
    return out;
}

static void encode_segment(const tokenizer *t, encoder *e, const char *s, size_t len, int at_start, id_list *out)
{
    if (len == 0) return;
    int buf, k = 0;
    const char *text = normalize(t, e, s, &len, &buf);
    e->n_pieces[0] = 0;
    push_piece(e, 0, 0, len, at_start);
    for (int i = 0; i < t->n_pre; i++, k ^= 1) text = pre_tokenize_step(e, &t->pre[i], text, k, &buf);
    for (int64_t i = 0; i < e->n_pieces[k]; i++)
        bpe_word(t, &e->bpe, text + e->pieces[k][i].start, (int64_t)e->pieces[k][i].len, out);
}

/* The longest added token at s[0..n), or NULL. */
static const added_token *added_at(const tokenizer *t, const char *s, size_t n)
{
    const added_token *best = NULL;
    for (int i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        if ((size_t)a->len <= n && (!best || a->len > best->len) && memcmp(s, a->text, (size_t)a->len) == 0) best = a;
    }
    return best;
}

void encode_text(const tokenizer *t, encoder *e, const char *text, size_t len, int at_start, id_list *out)
{
    const char *clean = text;
    if (!t->keep_invalid_utf8) {
        char *c = fit_chars(&e->clean, &e->cap_clean, 3 * len);
        len = utf8_sanitize(text, len, c);
        clean = c;
    }
    size_t from = 0;
    uint8_t first[256] = {0};
    for (int i = 0; i < t->n_added; i++) first[(uint8_t)t->added[i].text[0]] = 1;
    for (size_t i = 0; t->n_added && i < len; i++) {
        const added_token *a = first[(uint8_t)clean[i]] ? added_at(t, clean + i, len - i) : NULL;
        if (!a) continue;
        encode_segment(t, e, clean + from, i - from, at_start && from == 0, out);
        ids_push(out, a->id);
        from = i + (size_t)a->len;
        i = from - 1;
    }
    encode_segment(t, e, clean + from, len - from, at_start && from == 0, out);
}

void encoder_free(encoder *e)
{
    free(e->clean), free(e->buf[0]), free(e->buf[1]), free(e->pieces[0]), free(e->pieces[1]);
    bpe_scratch_free(&e->bpe);
    memset(e, 0, sizeof *e);
}
