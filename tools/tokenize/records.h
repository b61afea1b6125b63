/* records: JSONL records of text, {"text": "..."} (every token a target), and of conversations,
 * {"messages": [{"role": ..., "content": ...}, ...]} (rendered with a chat template; the targets
 * follow --train-on). */
#ifndef SL_RECORDS_H
#define SL_RECORDS_H

#include <cJSON.h>
#include <stdint.h>

#include "chat.h"
#include "encode.h"
#include "tokenizer.h"

typedef struct {
    const tokenizer *tok; /* NULL: no --tokenizer, so such records are errors */
    chat_template tpl;    /* --chat-template, or tokenizer_config.json's when it is a built-in one */
    train_on on;
    int chat_ready;
    chat_ctx chat;
    encoder enc;
    id_list ids;
    char **texts; /* message strings made valid UTF-8 */
    size_t *cap_texts;
    int n_texts;
} text_records;

void text_records_init(text_records *r, const tokenizer *tok, chat_template tpl, train_on on);
/* Encode a text or messages record: returns 0 when obj is neither, else 1 with its ids and mask
 * (NULL: every token a target). where names the record (file and line) in messages. */
int text_record(text_records *r, const cJSON *obj, const char *where, const int32_t **ids, const uint8_t **mask, int64_t *n);
void text_records_free(text_records *r);

#endif
