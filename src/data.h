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
    int loss_mask_dtype; /* the stored sl_dtype of /loss_mask */
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
/* What the contents are checked against. */
typedef struct {
    int model_vocab;     /* token ids must lie in [0, model_vocab) and below the file's vocab_size */
    const char *model;   /* the model file, for messages */
    int causal;          /* next-token loss: at least one loss target is needed */
    int seq_len;         /* > 0: note which training windows (data_eval_windows) have a loss target */
    int num_labels;      /* > 0: /labels must lie in [0, num_labels) */
    const char *purpose; /* "train on" or "evaluate", for messages */
} data_checks;

typedef struct {
    int64_t targets;            /* loss targets: tokens after their document's first with loss_mask 1 */
    int64_t masked_docs;        /* documents of 2 or more tokens without a loss target */
    int64_t n_windows, windows_with_target; /* with seq_len */
    uint8_t *window_has_target; /* with seq_len and a /loss_mask: one flag per window (free it), else NULL */
} data_summary;

/* Rank 0, inside rt_rank0_checks (fatal errors name the file, the dataset, the index, the value
 * and what was expected): read every value of /tokens, /loss_mask and (num_labels > 0) /labels
 * in chunks of 16 Mi elements, scanned on every thread. Causal: no loss target at all is fatal;
 * fully masked documents are a warning that says how many. */
void data_check_contents(const sl_dataset *d, const data_checks *c, data_summary *s);
/* Open for reading on this rank alone (every rank reads its own windows). */
void data_open(sl_dataset *d, const char *path);
void data_close(sl_dataset *d);
/* Read tokens [start, start + count); mask may be NULL (then it is not read). Ids are checked
 * against the vocabulary: returns the index of the first bad one, or -1. */
int64_t data_read(const sl_dataset *d, int64_t start, int64_t count, int32_t *tokens, uint8_t *mask);

/* Cut every document into windows of at most seq_len + 1 tokens that overlap by one token, so
 * each token after a document's first is predicted exactly once. Returns the count. */
int64_t data_eval_windows(const sl_dataset *d, int seq_len, sl_window **out);
/* Sequence classification: one unit per non-empty document, its first seq_len tokens (the
 * classifier pools the last one). Returns the count. */
int64_t data_document_units(const sl_dataset *d, int seq_len, sl_window **out);

#endif
