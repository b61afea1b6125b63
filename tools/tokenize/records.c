/* records: text and conversation records of JSONL input. */
#include "records.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "utf8.h"

void text_records_init(text_records *r, const tokenizer *tok, chat_template tpl, train_on on)
{
    memset(r, 0, sizeof *r);
    r->tok = tok, r->tpl = tpl, r->on = on;
}

/* JSON strings may hold escaped lone surrogates; like any text, they become U+FFFD. */
static const char *valid_text(text_records *r, int k, const char *s)
{
    if (k >= r->n_texts) {
        r->texts = realloc(r->texts, (size_t)(k + 1) * sizeof *r->texts);
        r->cap_texts = realloc(r->cap_texts, (size_t)(k + 1) * sizeof *r->cap_texts);
        if (!r->texts || !r->cap_texts) sl_fatal("out of memory reading a conversation");
        for (; r->n_texts <= k; r->n_texts++) r->texts[r->n_texts] = NULL, r->cap_texts[r->n_texts] = 0;
    }
    size_t n = strlen(s);
    if (3 * n + 1 > r->cap_texts[k]) {
        r->cap_texts[k] = 3 * n + 1;
        r->texts[k] = realloc(r->texts[k], r->cap_texts[k]);
        if (!r->texts[k]) sl_fatal("out of memory reading a conversation");
    }
    r->texts[k][utf8_sanitize(s, n, r->texts[k])] = '\0';
    return r->texts[k];
}

static void ready_chat(text_records *r, const char *where)
{
    if (r->chat_ready) return;
    if (r->tpl == CHAT_NONE && r->tok->chat_template) {
        r->tpl = chat_template_of_jinja(r->tok->chat_template);
        if (r->tpl == CHAT_NONE)
            sl_fatal("%s: a \"messages\" record, but the chat_template of the tokenizer_config.json beside '%s' is not "
                     "one of the built-in templates (llama3, chatml, mistral); give --chat-template", where, r->tok->path);
    }
    if (r->tpl == CHAT_NONE)
        sl_fatal("%s: a \"messages\" record needs a chat template: give --chat-template llama3, chatml or mistral "
                 "(tokenizer '%s' has no tokenizer_config.json chat_template beside it)", where, r->tok->path);
    chat_init(&r->chat, r->tok, r->tpl, r->on);
    r->chat_ready = 1;
}

static const char *message_field(text_records *r, const cJSON *m, const char *field, int i, int k, const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, field);
    if (!cJSON_IsString(v)) sl_fatal("%s: messages[%d] needs a string \"%s\"", where, i, field);
    return valid_text(r, k, v->valuestring);
}

static void encode_messages(text_records *r, const cJSON *messages, const char *where)
{
    if (!cJSON_IsArray(messages)) sl_fatal("%s: \"messages\" must be an array of {\"role\", \"content\"} objects", where);
    int n = cJSON_GetArraySize(messages), i = 0;
    if (n == 0) sl_fatal("%s: \"messages\" is empty (expected at least one message)", where);
    chat_message *m = sl_malloc((size_t)n * sizeof *m, "messages");
    for (const cJSON *e = messages->child; e; e = e->next, i++) {
        if (!cJSON_IsObject(e)) sl_fatal("%s: messages[%d] is not an object (expected {\"role\", \"content\"})", where, i);
        m[i].role = message_field(r, e, "role", i, 2 * i, where);
        m[i].content = message_field(r, e, "content", i, 2 * i + 1, where);
    }
    ready_chat(r, where);
    chat_encode(&r->chat, m, n, where);
    free(m);
}

int text_record(text_records *r, const cJSON *obj, const char *where, const int32_t **ids, const uint8_t **mask, int64_t *n)
{
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, "text"), *messages = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!text && !messages) return 0;
    if (text && messages) sl_fatal("%s: a record has both \"text\" and \"messages\" (expected one of them)", where);
    if (!r->tok) sl_fatal("%s: a \"%s\" record needs --tokenizer", where, text ? "text" : "messages");
    if (text) {
        if (!cJSON_IsString(text)) sl_fatal("%s: \"text\" must be a string", where);
        r->ids.n = 0;
        encode_text(r->tok, &r->enc, text->valuestring, strlen(text->valuestring), 1, &r->ids);
        *ids = r->ids.v, *mask = NULL, *n = r->ids.n;
        return 1;
    }
    encode_messages(r, messages, where);
    *ids = r->chat.ids.v, *mask = r->chat.mask, *n = r->chat.ids.n;
    return 1;
}

void text_records_free(text_records *r)
{
    if (r->chat_ready) chat_free(&r->chat);
    encoder_free(&r->enc);
    free(r->ids.v);
    for (int i = 0; i < r->n_texts; i++) free(r->texts[i]);
    free(r->texts), free(r->cap_texts);
    memset(r, 0, sizeof *r);
}
