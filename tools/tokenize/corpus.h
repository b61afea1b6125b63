/* corpus: the documents this rank tokenizes, spilled to temporary files as they come (memory
 * bounded by a buffer, not the corpus), then written collectively by every rank into one dataset
 * file: each rank's documents follow those of the ranks before it, so the file is the same for
 * any rank count. */
#ifndef SL_CORPUS_H
#define SL_CORPUS_H

#include <stdint.h>
#include <stdio.h>

#define BOS_ID 1 /* LLaMA / llama2.c convention: --bos and --eos without a tokenizer */
#define EOS_ID 2

typedef struct {
    FILE *tokens, *mask, *docs; /* int32 ids; uint8 targets; per document int64 length, int32 label */
    int64_t n_tokens, n_docs;
    int64_t max_docs; /* 0: no limit (over all ranks: the first max_docs documents are kept) */
    int32_t bos_id, eos_id; /* added around each document when >= 0 */
    int has_mask, has_labels, lacks_labels;
    int32_t max_label;
    int32_t *scratch;
    uint8_t *scratch_mask;
    int64_t cap_scratch;
} corpus;

typedef struct {
    int64_t vocab_size, bos_id, eos_id, pad_id; /* ids are -1 when none */
    const char *tokenizer, *source;
} corpus_meta;

/* Spill files go beside out (created and unlinked at once, so nothing is left behind). */
void corpus_init(corpus *c, int64_t max_docs, int32_t bos_id, int32_t eos_id, const char *out);
/* No more documents are wanted from this rank (--max-docs reached). */
int corpus_full(const corpus *c);
/* Append one document: mask may be NULL (every token a target); label < 0 means none. BOS, when
 * added, is never a target; EOS is. */
void corpus_add(corpus *c, const int32_t *ids, int64_t n, const uint8_t *mask, int32_t label);
/* Collective over MPI_COMM_WORLD: write every rank's documents into path. Returns the number of
 * documents in the file, and *tokens their tokens. */
int64_t corpus_write(corpus *c, const char *path, const corpus_meta *meta, int64_t *tokens);
void corpus_free(corpus *c);

#endif
