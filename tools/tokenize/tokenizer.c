/* tokenizer: recognising a tokenizer file by its content, and what the loaders share. */
#include "tokenizer.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "tokenize.h"
#include "utf8.h"

static int looks_like_json(const char *b, size_t n)
{
    size_t i = 0;
    while (i < n && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    return i < n && b[i] == '{';
}

/* A SentencePiece ModelProto starts with field 1 (a piece message, length-delimited), whose
 * own first field is the piece string. */
static int looks_like_sentencepiece(const unsigned char *b, size_t n)
{
    if (n < 4 || b[0] != 0x0A || b[1] == 0) return 0;
    size_t i = 1;
    while (i < n && (b[i] & 0x80)) i++;
    return i + 1 < n && b[i + 1] == 0x0A;
}

/* A tiktoken file's first line: base64, one space, a decimal rank. */
static int looks_like_tiktoken(const char *b, size_t n)
{
    size_t i = 0;
    while (i < n && (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", b[i]) && b[i])) i++;
    if (i == 0 || i >= n || b[i] != ' ') return 0;
    size_t d = ++i;
    while (i < n && b[i] >= '0' && b[i] <= '9') i++;
    return i > d && (i == n || b[i] == '\n' || b[i] == '\r');
}

void tokenizer_load(tokenizer *t, const char *path, const char *pattern)
{
    memset(t, 0, sizeof *t);
    t->path = path;
    t->bos_id = t->eos_id = t->pad_id = t->unk_id = -1;
    memset(t->byte_id, 0xff, sizeof t->byte_id);
    pieces_init(&t->v);
    size_t len;
    char *buf = t->file = read_whole_file(path, "tokenizer", &len); /* t's, for tokenizer_free after an error */
    if (looks_like_json(buf, len)) load_hf_json(t, buf, len);
    else if (looks_like_sentencepiece((const unsigned char *)buf, len)) load_sentencepiece(t, buf, len);
    else if (looks_like_tiktoken(buf, len)) load_tiktoken(t, buf, len, pattern);
    else load_llama2c(t, buf, len);
    if (pattern && strcmp(t->format, "tiktoken") != 0)
        sl_usage_error("option --pattern is for tiktoken files, but '%s' is a %s tokenizer (its pre-tokenizer is in the file)",
                       path, t->format);
    free(buf);
    t->file = NULL;
    t->vocab_size = t->v.n;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->vocab_size) t->vocab_size = t->added[i].id + 1;
    for (int i = 0; i < t->n_special; i++)
        if (t->special[i].id >= t->vocab_size) t->vocab_size = t->special[i].id + 1;
}

void tokenizer_require_utf8(const tokenizer *t, const char *s, const char *what)
{
    for (size_t i = 0, n = strlen(s); i < n;) {
        int k = utf8_valid_len((const unsigned char *)s + i, n - i);
        if (k <= 0)
            sl_fatal("tokenizer '%s': %s (%zu bytes) is not valid UTF-8 at byte %zu, 0x%02X (expected UTF-8: it is put "
                     "into the text, which the encoder keeps valid)", t->path, what, n, i, (unsigned char)s[i]);
        i += (size_t)k;
    }
}

void tokenizer_add_norm(tokenizer *t, norm_kind kind, const char *a, const char *b)
{
    tokenizer_require_utf8(t, a ? a : "", "a normalizer's text");
    tokenizer_require_utf8(t, b ? b : "", "a normalizer's replacement");
    t->norm = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *t->norm);
    if (!t->norm) sl_fatal("out of memory reading tokenizer '%s'", t->path);
    t->norm[t->n_norm++] = (norm_step){kind, strdup(a ? a : ""), b ? strdup(b) : NULL};
}

pre_step *tokenizer_add_pre(tokenizer *t, pre_kind kind)
{
    t->pre = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *t->pre);
    if (!t->pre) sl_fatal("out of memory reading tokenizer '%s'", t->path);
    pre_step *p = &t->pre[t->n_pre++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    return p;
}

static void push_token(added_token **list, int *n, const char *text, int len, int32_t id)
{
    *list = realloc(*list, (size_t)(*n + 1) * sizeof **list);
    if (!*list) sl_fatal("out of memory reading a tokenizer's added tokens");
    char *copy = sl_malloc((size_t)len + 1, "added token");
    memcpy(copy, text, (size_t)len);
    copy[len] = '\0';
    (*list)[(*n)++] = (added_token){copy, len, id};
}

void tokenizer_add_special(tokenizer *t, const char *text, int len, int32_t id, int matched_in_text)
{
    if (len <= 0) sl_fatal("tokenizer '%s': token %d has empty text (expected its content)", t->path, id);
    if (matched_in_text) push_token(&t->added, &t->n_added, text, len, id);
    else push_token(&t->special, &t->n_special, text, len, id);
}

int32_t tokenizer_special_id(const tokenizer *t, const char *text)
{
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].text, text)) return t->added[i].id;
    for (int i = 0; i < t->n_special; i++)
        if (!strcmp(t->special[i].text, text)) return t->special[i].id;
    return -1;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

void tokenizer_find_byte_pieces(tokenizer *t)
{
    memset(t->byte_id, 0xff, sizeof t->byte_id);
    for (int32_t id = t->v.n - 1; id >= 0; id--) { /* downwards, so the lowest id wins */
        const char *p = pieces_text(&t->v, id);
        if (t->v.lens[id] != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') continue;
        int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
        if (hi >= 0 && lo >= 0) t->byte_id[hi * 16 + lo] = id;
    }
}

void tokenizer_free(tokenizer *t)
{
    pieces_free(&t->v);
    pairs_free(&t->pairs);
    for (int i = 0; i < t->n_norm; i++) free(t->norm[i].a), free(t->norm[i].b);
    for (int i = 0; i < t->n_pre; i++) regex_free(t->pre[i].re), free(t->pre[i].replacement);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].text);
    for (int i = 0; i < t->n_special; i++) free(t->special[i].text);
    free(t->norm), free(t->pre), free(t->added), free(t->special), free(t->atomic), free(t->chat_template);
    free(t->file);
    cJSON_Delete(t->json);
    memset(t, 0, sizeof *t);
}
