/* data: token datasets in HDF5 (/tokens, /doc_offsets, optional /loss_mask and /labels), their
 * validation, and the windows that documents are cut into. */
#ifndef SL_DATA_H
#define SL_DATA_H

#include <hdf5.h>
#include <stdint.h>

typedef struct {
    char *path;
    hid_t file;
    int64_t n_tokens, n_docs;
    int64_t *doc_offsets; /* n_docs + 1 */
    int vocab_size, bos_id, eos_id, pad_id;
    int has_loss_mask, has_labels, num_labels;
} sl_dataset;

/* A window of a document: tokens [start, start + len) of /tokens. The first len - 1 are inputs,
 * the last len - 1 are the targets. */
typedef struct {
    int64_t doc, start;
    int len;
} sl_window;

/* Check structure, types, shapes and offsets on the calling rank; fatal errors name the file and
 * the dataset. model_vocab > 0 also checks the dataset's vocabulary fits the model's. */
void data_validate(const char *path, int model_vocab);
/* Open for reading on this rank alone (every rank reads its own windows). */
void data_open(sl_dataset *d, const char *path);
void data_close(sl_dataset *d);
/* Read tokens [start, start + count); mask may be NULL (then it is not read). Ids are checked
 * against the vocabulary: returns the index of the first bad one, or -1. */
int64_t data_read(const sl_dataset *d, int64_t start, int64_t count, int32_t *tokens, uint8_t *mask);

/* Cut every document into windows of at most seq_len + 1 tokens that overlap by one token, so
 * each token after a document's first is predicted exactly once. Returns the count. */
int64_t data_eval_windows(const sl_dataset *d, int seq_len, sl_window **out);

#endif
