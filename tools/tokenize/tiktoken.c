/* tiktoken: rank files (a base64 token and its rank per line), with the pre-tokenizer pattern of
 * --pattern. Encoded as tiktoken's encode_ordinary: a word that is a token is that token, else
 * bytes merged by the lowest rank of the concatenation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "presets.h"
#include "runtime.h"
#include "tokenizer.h"

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode base64 s[0..n) into out; returns the length, or -1 when it is not base64. */
static int b64_decode(const char *s, size_t n, char *out)
{
    while (n > 0 && s[n - 1] == '=') n--;
    int o = 0, bits = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v, bits += 6;
        if (bits >= 8) out[o++] = (char)(acc >> (bits - 8)), bits -= 8;
    }
    return o;
}

static void read_ranks(tokenizer *t, const char *buf, size_t len)
{
    char *piece = sl_malloc(len + 1, "tiktoken piece");
    long line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len, next = end + (nl != NULL);
        line++;
        if (end > pos && buf[end - 1] == '\r') end--;
        if (end == pos) {
            pos = next;
            continue;
        }
        const char *sp = memchr(buf + pos, ' ', end - pos);
        char *stop;
        long rank = sp ? strtol(sp + 1, &stop, 10) : -1;
        int n = sp ? b64_decode(buf + pos, (size_t)(sp - (buf + pos)), piece) : -1;
        if (!sp || n < 0 || stop != buf + end || stop == sp + 1 || rank < 0)
            sl_fatal("tiktoken file '%s' line %ld: expected a base64 token, a space and a rank, found '%.*s'", t->path,
                     line, (int)(end - pos < 80 ? end - pos : 80), buf + pos);
        if (rank >= TOKENIZER_MAX_IDS)
            sl_fatal("tiktoken file '%s' line %ld: rank %ld is too large (expected below %d)", t->path, line, rank,
                     TOKENIZER_MAX_IDS);
        if (pieces_has(&t->v, (int32_t)rank))
            sl_fatal("tiktoken file '%s' line %ld: rank %ld appears twice", t->path, line, rank);
        pieces_put(&t->v, (int32_t)rank, piece, n, 0);
        pos = next;
    }
    free(piece);
}

static void add_preset_tokens(tokenizer *t, const preset *p)
{
    int32_t after = t->v.n;
    for (int i = 0; i < p->n_tokens; i++) {
        int32_t id = p->tokens[i].id >= 0 ? p->tokens[i].id : after - 1 - p->tokens[i].id;
        if (pieces_has(&t->v, id))
            sl_fatal("tiktoken file '%s': --pattern=%s puts its special token %s at id %d, which the file's ranks already use",
                     t->path, p->name, p->tokens[i].text, id);
        tokenizer_add_special(t, p->tokens[i].text, (int)strlen(p->tokens[i].text), id, 0);
    }
    char name[64];
    for (int32_t id = p->tokens[0].id, k = 0; id < p->reserved_end; id++) {
        int named = 0;
        for (int i = 0; i < p->n_tokens; i++) named |= p->tokens[i].id == id;
        if (named) continue;
        int n = snprintf(name, sizeof name, "<|reserved_special_token_%d|>", k++);
        tokenizer_add_special(t, name, n, id, 0);
    }
    t->bos_id = p->bos ? tokenizer_special_id(t, p->bos) : -1;
    t->eos_id = p->eos ? tokenizer_special_id(t, p->eos) : -1;
}

void load_tiktoken(tokenizer *t, const char *buf, size_t len, const char *pattern)
{
    t->format = "tiktoken";
    if (!pattern)
        sl_usage_error("tokenizer '%s' is a tiktoken file, which does not hold its pre-tokenizer: give --pattern "
                       "(%s, or a regular expression)", t->path, preset_names());
    read_ranks(t, buf, len);
    pieces_index(&t->v, NULL);
    for (int b = 0; b < 256; b++)
        if (pieces_find(&t->v, (const char *)&(uint8_t){(uint8_t)b}, 1) < 0)
            sl_fatal("tiktoken file '%s' has no token for the byte 0x%02X (expected all 256 single bytes)", t->path, b);
    const preset *p = preset_find(pattern);
    tokenizer_add_pre(t, PRE_SPLIT)->re = regex_compile(p ? p->pattern : pattern, "option --pattern");
    if (p) add_preset_tokens(t, p);
    t->rule = MERGE_PIECE_RANK;
    t->units_are_bytes = 1;
    t->whole_word_first = 1;
}
