/* corpus: the documents being built in memory, and their writing as a shardlora dataset file. */
#ifndef SL_CORPUS_H
#define SL_CORPUS_H

#include <stdint.h>

#define BOS_ID 1 /* LLaMA / llama2.c convention: --bos and --eos without a tokenizer */
#define EOS_ID 2

typedef struct {
    int32_t *tokens;
    uint8_t *mask;    /* always kept in step with tokens; written only when has_mask */
    int64_t *offsets; /* n_docs + 1 entries */
    int32_t *labels;  /* one per document when has_labels */
    int64_t n_tokens, n_docs;
    int64_t cap_tokens, cap_mask, cap_offsets, cap_labels;
    int64_t max_docs; /* 0: no limit */
    int32_t bos_id, eos_id; /* added around each document when >= 0 */
    int has_mask, has_labels;
} corpus;

typedef struct {
    int64_t vocab_size, bos_id, eos_id, pad_id; /* ids are -1 when none */
    const char *tokenizer, *source;
} corpus_meta;

void corpus_init(corpus *c, int64_t max_docs, int32_t bos_id, int32_t eos_id);
/* No more documents are wanted (--max-docs reached). */
int corpus_full(const corpus *c);
/* Append one document: mask may be NULL (every token a target); label < 0 means none. BOS, when
 * added, is never a target; EOS is. Callers keep labels all-or-none. */
void corpus_add(corpus *c, const int32_t *ids, int64_t n, const uint8_t *mask, int32_t label);
void corpus_write(const corpus *c, const char *path, const corpus_meta *meta);
void corpus_free(corpus *c);

#endif
