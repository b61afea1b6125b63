/* chat: a conversation is rendered as special tokens and runs of text between them, each run
 * encoded as one text (as transformers encodes the rendered string, whose special tokens split it
 * there). A run holds parts with and without loss; the first token of a part is found by
 * encoding the run up to it: the tokens of the whole run beyond that prefix's own tokens are
 * the part's, so a token that straddles the boundary counts as the later part's. The assistant's
 * content and the token ending its turn are the loss targets. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* The templates as tokenizer_config.json files hold them (Meta's Llama 3 Instruct, ChatML,
 * Mistral Instruct); \n in a Jinja string literal and a newline in it are the same. */
static const char *const JINJA[] = {
    [CHAT_LLAMA3] = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
                    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
                    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
                    "{% endif %}",
    [CHAT_CHATML] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                    "{% endif %}",
    [CHAT_MISTRAL] = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 "
                     "== 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
                     "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
                     "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
                     "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
};
static const char *const NAME[] = {[CHAT_NONE] = "none", [CHAT_LLAMA3] = "llama3", [CHAT_CHATML] = "chatml",
                                   [CHAT_MISTRAL] = "mistral"};

chat_template chat_template_named(const char *name)
{
    for (int t = CHAT_LLAMA3; t <= CHAT_MISTRAL; t++)
        if (!strcmp(name, NAME[t])) return (chat_template)t;
    return CHAT_NONE;
}

const char *chat_template_name(chat_template t) { return NAME[t]; }

/* A Jinja source with its \n escapes as newlines and without surrounding whitespace. */
static char *canonical(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    char *out = sl_malloc(strlen(s) + 1, "chat template");
    size_t o = 0;
    for (; *s; s++)
        if (s[0] == '\\' && s[1] == 'n') out[o++] = '\n', s++;
        else out[o++] = *s;
    while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\n' || out[o - 1] == '\t' || out[o - 1] == '\r')) o--;
    out[o] = '\0';
    return out;
}

chat_template chat_template_of_jinja(const char *jinja)
{
    char *given = canonical(jinja);
    chat_template found = CHAT_NONE;
    for (int t = CHAT_LLAMA3; t <= CHAT_MISTRAL && found == CHAT_NONE; t++) {
        char *ours = canonical(JINJA[t]);
        if (!strcmp(given, ours)) found = (chat_template)t;
        free(ours);
    }
    free(given);
    return found;
}

static int32_t need(const tokenizer *t, const char *what, const char *text, int32_t id, char *missing, size_t cap)
{
    if (text) id = tokenizer_special_id(t, text);
    if (id < 0) snprintf(missing + strlen(missing), cap - strlen(missing), "%s%s", missing[0] ? ", " : "", what);
    return id;
}

void chat_init(chat_ctx *c, const tokenizer *t, chat_template tpl, train_on on)
{
    memset(c, 0, sizeof *c);
    c->tok = t, c->tpl = tpl, c->on = on;
    char missing[512] = "";
    if (tpl == CHAT_LLAMA3) {
        c->bos = need(t, "a BOS token", NULL, t->bos_id, missing, sizeof missing);
        c->start_header = need(t, "<|start_header_id|>", "<|start_header_id|>", -1, missing, sizeof missing);
        c->end_header = need(t, "<|end_header_id|>", "<|end_header_id|>", -1, missing, sizeof missing);
        c->eot = need(t, "<|eot_id|>", "<|eot_id|>", -1, missing, sizeof missing);
    } else if (tpl == CHAT_CHATML) {
        c->im_start = need(t, "<|im_start|>", "<|im_start|>", -1, missing, sizeof missing);
        c->im_end = need(t, "<|im_end|>", "<|im_end|>", -1, missing, sizeof missing);
    } else {
        c->bos = need(t, "a BOS token", NULL, t->bos_id, missing, sizeof missing);
        c->eos = need(t, "an EOS token", NULL, t->eos_id, missing, sizeof missing);
        c->parts_apart = !strcmp(t->format, "sentencepiece");
        c->inst = c->inst_end = -1;
        if (c->parts_apart) c->inst = tokenizer_special_id(t, "[INST]"), c->inst_end = tokenizer_special_id(t, "[/INST]");
        if (c->inst < 0 || c->inst_end < 0) c->inst = c->inst_end = -1;
    }
    if (missing[0])
        sl_fatal("option --chat-template=%s: tokenizer '%s' lacks the template's special tokens: %s", NAME[tpl], t->path,
                 missing);
    c->lead_space = regex_compile("\\A[\\s\\x{1C}-\\x{1F}]+", "Jinja's trim");
    c->trail_space = regex_compile("[\\s\\x{1C}-\\x{1F}]+\\z", "Jinja's trim");
}

static void fit_mask(chat_ctx *c)
{
    if (c->ids.cap <= c->cap_mask) return;
    c->cap_mask = c->ids.cap;
    c->mask = realloc(c->mask, (size_t)c->cap_mask);
    if (!c->mask) sl_fatal("out of memory encoding a conversation of %lld tokens", (long long)c->ids.n);
}

static void add_text(chat_ctx *c, const char *s, size_t n, uint8_t target)
{
    if (n == 0) return;
    if (c->n_parts == (int)(sizeof c->part_start / sizeof c->part_start[0])) sl_fatal("chat: too many parts in one text run");
    if (c->run_len + n + 1 > c->cap_run) {
        c->cap_run = 2 * (c->run_len + n + 1);
        c->run = realloc(c->run, c->cap_run);
        if (!c->run) sl_fatal("out of memory rendering a conversation");
    }
    c->part_start[c->n_parts] = c->run_len, c->part_mask[c->n_parts++] = target;
    memcpy(c->run + c->run_len, s, n);
    c->run_len += n;
}

static void add_string(chat_ctx *c, const char *s, uint8_t target) { add_text(c, s, strlen(s), target); }

/* Encode the run; each part's first token is where the run's ids and those of the run up to the
 * part stop agreeing. */
static void flush_run(chat_ctx *c)
{
    if (c->run_len == 0) return;
    int at_start = !c->started;
    int64_t base = c->ids.n, first[8];
    encode_text(c->tok, &c->enc, c->run, c->run_len, at_start, &c->ids);
    first[0] = base;
    for (int p = 1; p < c->n_parts; p++) {
        first[p] = first[p - 1];
        if (c->part_mask[p] == c->part_mask[p - 1]) continue;
        c->prefix.n = 0;
        encode_text(c->tok, &c->enc, c->run, c->part_start[p], at_start, &c->prefix);
        int64_t k = 0;
        while (k < c->prefix.n && base + k < c->ids.n && c->prefix.v[k] == c->ids.v[base + k]) k++;
        if (base + k > first[p]) first[p] = base + k;
    }
    fit_mask(c);
    for (int p = 0; p < c->n_parts; p++)
        for (int64_t i = first[p]; i < (p + 1 < c->n_parts ? first[p + 1] : c->ids.n); i++) c->mask[i] = c->part_mask[p];
    c->run_len = 0, c->n_parts = 0;
    c->started = 1;
}

static void add_token(chat_ctx *c, int32_t id, uint8_t target)
{
    flush_run(c);
    ids_push(&c->ids, id);
    fit_mask(c);
    c->mask[c->ids.n - 1] = target;
    c->started = 1;
}

/* Jinja's trim (Python's str.strip): the span of s without leading and trailing whitespace. */
static void trimmed(chat_ctx *c, const char *s, size_t *start, size_t *len)
{
    size_t n = strlen(s), a, b, from = 0, to = n;
    if (regex_find(c->lead_space, s, n, &a, &b)) from = b;
    if (from < n && regex_find(c->trail_space, s, n, &a, &b)) to = a;
    *start = from, *len = to - from;
}

static void render_llama3(chat_ctx *c, const chat_message *m, int n, const uint8_t *target)
{
    add_token(c, c->bos, 0);
    for (int i = 0; i < n; i++) {
        add_token(c, c->start_header, 0);
        add_string(c, m[i].role, 0);
        add_token(c, c->end_header, 0);
        add_string(c, "\n\n", 0);
        size_t start, len;
        trimmed(c, m[i].content, &start, &len);
        add_text(c, m[i].content + start, len, target[i]);
        add_token(c, c->eot, target[i]);
    }
}

static void render_chatml(chat_ctx *c, const chat_message *m, int n, const uint8_t *target)
{
    for (int i = 0; i < n; i++) {
        add_token(c, c->im_start, 0);
        add_string(c, m[i].role, 0);
        add_string(c, "\n", 0);
        add_string(c, m[i].content, target[i]);
        add_token(c, c->im_end, target[i]);
        add_string(c, "\n", 0);
    }
}

/* With a tokenizer.json this is transformers' rendering of the Jinja template: one string, cut
 * only at its special tokens. A SentencePiece model is Mistral's own, so it follows mistral-common:
 * [INST] and [/INST] are the model's control tokens when it has them (v2 on, whose assistant text
 * also loses its trailing spaces), and the user's text and the assistant's are encoded apart,
 * each with the dummy prefix. */
static void render_mistral(chat_ctx *c, const chat_message *m, int n, const uint8_t *target, const char *where)
{
    add_token(c, c->bos, 0);
    for (int i = 0; i < n; i++) {
        int user = !strcmp(m[i].role, "user"), assistant = !strcmp(m[i].role, "assistant");
        if (!user && !assistant)
            sl_fatal("%s: message %d has role \"%s\", but the mistral template takes only user and assistant", where, i,
                     m[i].role);
        if (user != (i % 2 == 0))
            sl_fatal("%s: message %d is from the %s, but the mistral template needs the roles to alternate "
                     "user/assistant/user/..., starting with the user", where, i, m[i].role);
        if (user && c->inst >= 0) {
            add_token(c, c->inst, 0);
            add_string(c, m[i].content, 0);
            add_token(c, c->inst_end, 0);
        } else if (user) {
            add_string(c, "[INST] ", 0);
            add_string(c, m[i].content, 0);
            add_string(c, " [/INST]", 0);
        } else {
            size_t len = strlen(m[i].content);
            while (c->inst >= 0 && len > 0 && m[i].content[len - 1] == ' ') len--; /* as mistral-common v2 on */
            if (c->parts_apart) flush_run(c);
            add_text(c, m[i].content, len, target[i]);
            add_token(c, c->eos, target[i]);
        }
    }
}

void chat_encode(chat_ctx *c, const chat_message *m, int n, const char *where)
{
    c->ids.n = 0, c->run_len = 0, c->n_parts = 0, c->started = 0;
    uint8_t *target = sl_calloc((size_t)n + 1, 1, "chat mask");
    int last = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].role, "assistant")) last = i;
    for (int i = 0; i < n; i++)
        target[i] = c->on == TRAIN_ON_ALL || (!strcmp(m[i].role, "assistant") && (c->on == TRAIN_ON_ASSISTANT || i == last));
    if (c->tpl == CHAT_LLAMA3) render_llama3(c, m, n, target);
    else if (c->tpl == CHAT_CHATML) render_chatml(c, m, n, target);
    else render_mistral(c, m, n, target, where);
    flush_run(c);
    if (c->on == TRAIN_ON_ALL)
        for (int64_t i = 0; i < c->ids.n; i++) c->mask[i] = 1;
    free(target);
}

void chat_free(chat_ctx *c)
{
    encoder_free(&c->enc);
    regex_free(c->lead_space), regex_free(c->trail_space);
    free(c->ids.v), free(c->prefix.v), free(c->mask), free(c->run);
    memset(c, 0, sizeof *c);
}
