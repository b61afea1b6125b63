/* chat: conversations rendered with a built-in chat template (the token sequence transformers'
 * apply_chat_template gives for the same template) and their loss mask. */
#ifndef SL_CHAT_H
#define SL_CHAT_H

#include <stdint.h>

#include "encode.h"
#include "ids.h"
#include "tokenizer.h"

typedef enum { CHAT_NONE, CHAT_LLAMA3, CHAT_CHATML, CHAT_MISTRAL } chat_template;
typedef enum { TRAIN_ON_ASSISTANT, TRAIN_ON_ALL, TRAIN_ON_LAST } train_on;

typedef struct {
    const char *role, *content;
} chat_message;

typedef struct {
    const tokenizer *tok;
    chat_template tpl;
    train_on on;
    int32_t bos, eos, start_header, end_header, eot, im_start, im_end;
    int32_t inst, inst_end; /* mistral on a SentencePiece model: its control tokens [INST], [/INST], or -1 */
    int parts_apart;        /* mistral on a SentencePiece model: user and assistant text encoded apart */
    regex *lead_space, *trail_space; /* Jinja's trim */
    encoder enc;
    id_list ids, prefix; /* the conversation's ids; a text run's prefix, re-encoded */
    uint8_t *mask;
    int64_t cap_mask;
    char *run;           /* the text between two special tokens */
    size_t run_len, cap_run;
    size_t part_start[8]; /* where each part of the run begins, and its mask */
    uint8_t part_mask[8];
    int n_parts, started;
} chat_ctx;

/* The template called name (llama3, chatml, mistral), or CHAT_NONE. */
chat_template chat_template_named(const char *name);
/* The built-in template a Jinja chat_template is, or CHAT_NONE. */
chat_template chat_template_of_jinja(const char *jinja);
const char *chat_template_name(chat_template t);

/* Check that the template's special tokens exist in tok (fatal naming the missing ones). */
void chat_init(chat_ctx *c, const tokenizer *tok, chat_template tpl, train_on on);
/* Render and encode one conversation into c->ids and c->mask; where names it in messages. */
void chat_encode(chat_ctx *c, const chat_message *m, int n, const char *where);
void chat_free(chat_ctx *c);

#endif
