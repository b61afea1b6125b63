/* shardlora-tokenize: options and the three input readers (text, JSONL, raw token files). Each
 * reader appends the documents of this rank's part of the inputs (partition.h) to a corpus until
 * they end or the corpus is full (--max-docs). */
#ifndef SL_TOKENIZE_H
#define SL_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "corpus.h"
#include "partition.h"
#include "progress.h"
#include "readall.h"
#include "tokenizer.h"

typedef enum { INPUT_NONE, INPUT_TEXT, INPUT_JSONL, INPUT_U16, INPUT_U32, INPUT_DECODE } tk_input;

typedef struct {
    tk_input input;
    const char **files; /* the input files, in order */
    int n_files;
    const char *tokenizer; /* --tokenizer: any file tokenizer_load reads */
    const char *pattern;   /* --pattern: a tiktoken file's pre-tokenizer */
    chat_template chat_template; /* --chat-template; CHAT_NONE: tokenizer_config.json's */
    train_on train_on;
    int train_on_given;
    const char *out;
    const char *decode; /* --decode: the dataset to print */
    int64_t vocab_size; /* 0: not given */
    int64_t max_docs;   /* 0: no limit */
    int bos, eos, doc_per_file;
} tk_options;

/* Parse argv into opts; --help prints the usage and exits 0, bad usage is fatal. */
void tk_parse_options(int argc, char **argv, tk_options *opts);

/* Text mode: paragraphs or files encoded with tok. */
void read_text(const tk_options *opts, const tokenizer *tok, corpus *c, progress *prog);
/* JSONL and raw modes: tokens must lie in [0, opts->vocab_size) (JSONL: the tokenizer's, when given). */
void read_jsonl(const tk_options *opts, const tokenizer *tok, corpus *c, progress *prog);
void read_raw(const tk_options *opts, corpus *c, progress *prog);

/* --decode: print the documents of opts->decode as text with their loss targets marked. */
void decode_dataset(const tk_options *opts, const tokenizer *tok);

#endif
