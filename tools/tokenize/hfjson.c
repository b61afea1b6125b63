/* hfjson: Hugging Face tokenizer.json files with a BPE model: byte-level (GPT-2, Llama 3, Qwen2)
 * or SentencePiece-style with byte fallback (Llama 2, Mistral). The normalizers, pre-tokenizers
 * and options those use are read; anything else is refused by name. tokenizer_config.json beside
 * the file gives the BOS/EOS/pad tokens and the chat template when present. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "presets.h"
#include "runtime.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "utf8.h"

static const char *type_of(const cJSON *o)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "(no type)";
}

static const char *string_field(const tokenizer *t, const cJSON *o, const char *field, const char *where)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!cJSON_IsString(s)) sl_fatal("tokenizer '%s': %s needs the string field \"%s\"", t->path, where, field);
    return s->valuestring;
}

static int bool_field(const cJSON *o, const char *field, int dflt)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, field);
    return cJSON_IsBool(b) ? cJSON_IsTrue(b) : dflt;
}

static int is_set(const cJSON *o, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    return v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]) && !cJSON_IsFalse(v);
}

/* A Sequence: each component of its list field, read in order by read. Returns 0 for another type. */
static int read_sequence(tokenizer *t, const cJSON *c, const char *list, void (*read)(tokenizer *, const cJSON *))
{
    if (strcmp(type_of(c), "Sequence") != 0) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, list)) read(t, e);
    return 1;
}

/* ---- normalizers ---- */

static void read_normalizer(tokenizer *t, const cJSON *n)
{
    if (!n || cJSON_IsNull(n) || read_sequence(t, n, "normalizers", read_normalizer)) return;
    const char *type = type_of(n);
    if (!strcmp(type, "Prepend"))
        tokenizer_add_norm(t, NORM_PREPEND, string_field(t, n, "prepend", "the Prepend normalizer"), NULL);
    else if (!strcmp(type, "NFC"))
        tokenizer_add_norm(t, NORM_NFC, NULL, NULL);
    else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if (!cJSON_IsString(str) || !str->valuestring[0])
            sl_fatal("tokenizer '%s': a Replace normalizer with a %s pattern is not supported (only a non-empty String)",
                     t->path, cJSON_GetObjectItemCaseSensitive(pat, "Regex") ? "Regex" : "missing");
        tokenizer_add_norm(t, NORM_REPLACE, str->valuestring, string_field(t, n, "content", "the Replace normalizer"));
    } else
        sl_fatal("tokenizer '%s': the normalizer %s is not supported (supported: NFC, Prepend, Replace, Sequence of them)",
                 t->path, type);
}

/* ---- pre-tokenizers ---- */

/* A literal string as a regular expression. */
static char *quote_regex(const char *s)
{
    char *out = sl_malloc(2 * strlen(s) + 1, "pattern");
    size_t o = 0;
    for (; *s; s++) {
        if (strchr("\\^$.|?*+()[]{}", *s)) out[o++] = '\\';
        out[o++] = *s;
    }
    out[o] = '\0';
    return out;
}

static void read_split(tokenizer *t, const cJSON *p)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex"), *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const char *behavior = string_field(t, p, "behavior", "the Split pre-tokenizer");
    if (strcmp(behavior, "Isolated") != 0)
        sl_fatal("tokenizer '%s': the Split pre-tokenizer's behavior %s is not supported (only Isolated)", t->path, behavior);
    if (bool_field(p, "invert", 0)) sl_fatal("tokenizer '%s': an inverted Split pre-tokenizer is not supported", t->path);
    char where[600];
    snprintf(where, sizeof where, "tokenizer '%s', the Split pre-tokenizer", t->path);
    if (cJSON_IsString(re)) tokenizer_add_pre(t, PRE_SPLIT)->re = regex_compile(re->valuestring, where);
    else if (cJSON_IsString(str)) {
        char *q = quote_regex(str->valuestring);
        tokenizer_add_pre(t, PRE_SPLIT)->re = regex_compile(q, where);
        free(q);
    } else
        sl_fatal("tokenizer '%s': the Split pre-tokenizer has no Regex or String pattern", t->path);
}

static void read_metaspace(tokenizer *t, const cJSON *p)
{
    pre_step *st = tokenizer_add_pre(t, PRE_METASPACE);
    st->replacement = strdup(string_field(t, p, "replacement", "the Metaspace pre-tokenizer"));
    tokenizer_require_utf8(t, st->replacement, "the Metaspace pre-tokenizer's replacement");
    if (!st->replacement[0])
        sl_fatal("tokenizer '%s': the Metaspace pre-tokenizer's replacement is empty (expected the text that stands "
                 "for a space, such as U+2581)", t->path);
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
    const char *s = cJSON_IsString(scheme) ? scheme->valuestring : bool_field(p, "add_prefix_space", 1) ? "always" : "never";
    if (!strcmp(s, "always")) st->prepend = PREPEND_ALWAYS;
    else if (!strcmp(s, "first")) st->prepend = PREPEND_FIRST;
    else if (!strcmp(s, "never")) st->prepend = PREPEND_NEVER;
    else sl_fatal("tokenizer '%s': the Metaspace prepend_scheme '%s' is unknown (expected always, first or never)", t->path, s);
    st->split = bool_field(p, "split", 1);
}

static void read_pre_tokenizer(tokenizer *t, const cJSON *p)
{
    if (!p || cJSON_IsNull(p) || read_sequence(t, p, "pretokenizers", read_pre_tokenizer)) return;
    const char *type = type_of(p);
    if (!strcmp(type, "Split"))
        read_split(t, p);
    else if (!strcmp(type, "ByteLevel")) {
        pre_step *st = tokenizer_add_pre(t, PRE_BYTELEVEL);
        st->add_prefix_space = bool_field(p, "add_prefix_space", 1);
        if (bool_field(p, "use_regex", 1)) st->re = regex_compile(GPT2_PATTERN, "the ByteLevel pre-tokenizer");
        t->units_are_bytes = 1;
    } else if (!strcmp(type, "Metaspace"))
        read_metaspace(t, p);
    else
        sl_fatal("tokenizer '%s': the pre-tokenizer %s is not supported (supported: ByteLevel, Split, Metaspace, "
                 "Sequence of them)", t->path, type);
}

/* ---- the BPE model ---- */

typedef struct {
    char *s;
    size_t cap;
} char_buf;

/* Room for n bytes and a terminator. */
static char *fit_buf(char_buf *b, size_t n)
{
    if (n + 1 > b->cap) {
        b->cap = 2 * n + 16;
        b->s = realloc(b->s, b->cap);
        if (!b->s) sl_fatal("out of memory reading a tokenizer (%zu bytes for a token)", b->cap);
    }
    return b->s;
}

/* A vocabulary entry as raw bytes: byte-level tokens spell each byte as one character; -1 when s
 * is not spelled so. */
static int piece_bytes(const tokenizer *t, const char *s, char *out)
{
    if (!t->units_are_bytes) {
        size_t n = strlen(s);
        memcpy(out, s, n);
        return (int)n;
    }
    int o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_valid_len(p, strlen((const char *)p)); /* JSON text may hold ill-formed bytes */
        int b = n > 0 ? bytelevel_byte(utf8_decode(p, &n)) : -1;
        if (b < 0) return -1;
        out[o++] = (char)b;
        p += n;
    }
    return o;
}

static int is_utf8(const char *s)
{
    for (size_t i = 0, n = strlen(s), k; i < n; i += k)
        if ((k = (size_t)utf8_valid_len((const unsigned char *)s + i, n - i)) == 0) return 0;
    return 1;
}

/* A token id of the file: an integer in [0, TOKENIZER_MAX_IDS); what names the token's field. */
static int32_t token_id(const tokenizer *t, const cJSON *id, const char *what, const char *token)
{
    if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOKENIZER_MAX_IDS ||
        id->valuedouble != (double)(int32_t)id->valuedouble)
        sl_fatal("tokenizer '%s': %s \"%s\" has no valid id (expected an integer from 0 to %d)", t->path, what, token,
                 TOKENIZER_MAX_IDS - 1);
    return (int32_t)id->valuedouble;
}

static void read_vocab(tokenizer *t, const cJSON *vocab_json)
{
    if (!cJSON_IsObject(vocab_json)) sl_fatal("tokenizer '%s': model.vocab must be an object of token -> id", t->path);
    char_buf buf = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab_json)
    {
        char *bytes = fit_buf(&buf, strlen(e->string));
        int32_t id = token_id(t, e, "model.vocab token", e->string);
        int len = piece_bytes(t, e->string, bytes);
        if (len < 0) {
            int shown = is_utf8(e->string);
            sl_fatal("tokenizer '%s': model.vocab token %d (%s%s%s) is not spelled in the byte-level alphabet (expected "
                     "by its ByteLevel pre-tokenizer)", t->path, id, shown ? "\"" : "", shown ? e->string : "ill-formed UTF-8",
                     shown ? "\"" : "");
        }
        pieces_put(&t->v, id, bytes, len, 0);
    }
    free(buf.s);
    pieces_index(&t->v, NULL);
}

/* A merge is "left right" (older files) or ["left", "right"]; *tmp (grown as needed) holds the
 * left side of the older form. */
static void merge_sides(const tokenizer *t, const cJSON *m, long rank, const char **l, const char **r, char_buf *tmp)
{
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *l = m->child->valuestring, *r = m->child->next->valuestring;
        return;
    }
    const char *sp = cJSON_IsString(m) ? strchr(m->valuestring, ' ') : NULL;
    if (!sp) sl_fatal("tokenizer '%s': model.merges[%ld] is not \"left right\" or [left, right]", t->path, rank);
    size_t n = (size_t)(sp - m->valuestring);
    char *left = fit_buf(tmp, n);
    memcpy(left, m->valuestring, n);
    left[n] = '\0';
    *l = left, *r = sp + 1;
}

static void read_merges(tokenizer *t, const cJSON *merges)
{
    int64_t n = cJSON_GetArraySize(merges);
    pairs_init(&t->pairs, n);
    char_buf tmp = {0}, a = {0}; /* the left side; both sides' bytes, one after the other */
    long rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        const char *l, *r;
        merge_sides(t, m, rank, &l, &r, &tmp);
        char *both = fit_buf(&a, strlen(l) + strlen(r)); /* piece_bytes writes at most a byte per byte */
        int nl = piece_bytes(t, l, both), nr = nl < 0 ? -1 : piece_bytes(t, r, both + nl);
        int32_t li = nl < 0 ? -1 : pieces_find(&t->v, both, nl), ri = nr < 0 ? -1 : pieces_find(&t->v, both + nl, nr);
        int32_t merged = li >= 0 && ri >= 0 ? pieces_find(&t->v, both, nl + nr) : -1;
        if (merged < 0)
            sl_fatal("tokenizer '%s': model.merges[%ld] (\"%s\" + \"%s\") names a token missing from model.vocab", t->path,
                     rank, l, r);
        pairs_put(&t->pairs, li, ri, (int32_t)rank++, merged);
    }
    free(tmp.s);
    free(a.s);
}

static void read_model(tokenizer *t, const cJSON *model)
{
    const char *type = type_of(model);
    if (strcmp(type, "BPE") != 0) sl_fatal("tokenizer '%s': the model %s is not supported (only BPE)", t->path, type);
    static const char *const UNSUPPORTED[] = {"dropout", "continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 3; i++)
        if (is_set(model, UNSUPPORTED[i]))
            sl_fatal("tokenizer '%s': the BPE model's %s is not supported", t->path, UNSUPPORTED[i]);
    read_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"));
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) sl_fatal("tokenizer '%s': model.merges must be an array", t->path);
    read_merges(t, merges);
    t->rule = MERGE_PAIR_RANK;
    t->byte_fallback = bool_field(model, "byte_fallback", 0);
    t->fuse_unk = bool_field(model, "fuse_unk", 0);
    t->whole_word_first = bool_field(model, "ignore_merges", 0);
    if (t->byte_fallback) tokenizer_find_byte_pieces(t);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        t->unk_id = pieces_find(&t->v, unk->valuestring, (int)strlen(unk->valuestring));
        if (t->unk_id < 0) sl_fatal("tokenizer '%s': model.unk_token \"%s\" is not in model.vocab", t->path, unk->valuestring);
    }
}

/* ---- added tokens, BOS/EOS and tokenizer_config.json ---- */

static void read_added_tokens(tokenizer *t, const cJSON *added)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, added)
    {
        const char *content = string_field(t, a, "content", "an added token");
        int32_t id = token_id(t, cJSON_GetObjectItemCaseSensitive(a, "id"), "added token", content);
        static const char *const FLAGS[] = {"single_word", "lstrip", "rstrip"};
        for (int i = 0; i < 3; i++)
            if (bool_field(a, FLAGS[i], 0))
                sl_fatal("tokenizer '%s': added token \"%s\" has %s set, which is not supported", t->path, content, FLAGS[i]);
        /* such a token is looked for in the normalized text; every other one in the text itself */
        if (bool_field(a, "normalized", 0) && t->n_norm > 0)
            sl_fatal("tokenizer '%s': added token \"%s\" is matched after normalization (\"normalized\": true), "
                     "which is not supported with a normalizer", t->path, content);
        tokenizer_add_special(t, content, (int)strlen(content), id, 1);
    }
}

/* The BOS of a TemplateProcessing post-processor: the special token its single template starts with. */
static int32_t template_bos(const tokenizer *t, const cJSON *post)
{
    if (!post || strcmp(type_of(post), "TemplateProcessing") != 0) return -1;
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(post, "single"), 0);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(first, "SpecialToken"), "id");
    return cJSON_IsString(id) ? tokenizer_special_id(t, id->valuestring) : -1;
}

/* A token field of tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token(const tokenizer *t, const cJSON *cfg, const char *field, const char *cfg_path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, field);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return -1;
    int32_t id = tokenizer_special_id(t, v->valuestring);
    if (id < 0) id = pieces_find(&t->v, v->valuestring, (int)strlen(v->valuestring));
    if (id < 0) sl_fatal("%s: %s \"%s\" is not a token of '%s'", cfg_path, field, v->valuestring, t->path);
    return id;
}

static void read_config(tokenizer *t)
{
    char cfg_path[4096];
    const char *slash = strrchr(t->path, '/');
    snprintf(cfg_path, sizeof cfg_path, "%.*stokenizer_config.json", slash ? (int)(slash - t->path + 1) : 0, t->path);
    FILE *f = fopen(cfg_path, "rb");
    if (!f) return;
    fclose(f);
    size_t len;
    char *buf = read_whole_file(cfg_path, "tokenizer config", &len);
    cJSON *cfg = cJSON_ParseWithLength(buf, len);
    if (!cJSON_IsObject(cfg)) sl_fatal("%s: not a JSON object (expected tokenizer_config.json)", cfg_path);
    int32_t bos = config_token(t, cfg, "bos_token", cfg_path), eos = config_token(t, cfg, "eos_token", cfg_path);
    int32_t pad = config_token(t, cfg, "pad_token", cfg_path);
    if (bos >= 0) t->bos_id = bos;
    if (eos >= 0) t->eos_id = eos;
    if (pad >= 0) t->pad_id = pad;
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(tpl)) t->chat_template = strdup(tpl->valuestring);
    cJSON_Delete(cfg);
    free(buf);
}

/* tokenizer.json's pre-tokenizer decides how the vocabulary is spelled, so it is read first. */
void load_hf_json(tokenizer *t, const char *buf, size_t len)
{
    t->format = "tokenizer.json";
    cJSON *root = t->json = cJSON_ParseWithLength(buf, len); /* t's, for tokenizer_free after an error */
    if (!cJSON_IsObject(root))
        sl_fatal("tokenizer '%s': malformed JSON near byte %ld (expected a tokenizer.json object)", t->path,
                 (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - buf : 0) + 1);
    read_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    read_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) sl_fatal("tokenizer '%s': no \"model\" object (is this a tokenizer.json?)", t->path);
    read_model(t, model);
    read_added_tokens(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    t->bos_id = template_bos(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    read_config(t);
    cJSON_Delete(root);
    t->json = NULL;
}
