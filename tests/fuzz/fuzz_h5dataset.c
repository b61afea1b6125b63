/* Fuzz target: the dataset validation of shardlora train and eval (src/data.c: data_validate, then
 * data_check_contents over every token, mask and label) on edited copies (h5edit.h) of two valid
 * dataset files that shardlora-tokenize's writer makes (tiny_files.h): plain tokens, and with a loss mask and
 * labels. The first input byte picks the file, the rest are the edits. */
#include <stdlib.h>

#include "data.h"
#include "h5edit.h"
#include "harness.h"
#include "tiny_files.h"

static void write_plain(void *path) { tiny_dataset_write(path, 0); }
static void write_masked(void *path) { tiny_dataset_write(path, 1); }

typedef struct {
    const char *path;
    sl_dataset d;
    data_summary s;
} dataset_job;

static void validate(void *arg)
{
    dataset_job *job = arg;
    data_validate(job->path, TINY_VOCAB);
    data_open(&job->d, job->path);
    const data_checks checks = {.model_vocab = TINY_VOCAB, .model = "model.h5", .causal = 1, .seq_len = 4,
                                .num_labels = job->d.has_labels ? TINY_LABELS : 0, .purpose = "train on"};
    data_check_contents(&job->d, &checks, &job->s);
    free(job->s.window_has_target);
    data_close(&job->d);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    static const uint8_t *bases[2];
    static size_t sizes[2];
    static const char *const extra_paths[] = {"/loss_mask", "/labels", NULL};
    static const char *const extra_attrs[] = {"num_labels", "bos_id", "eos_id", "pad_id", NULL};
    if (!bases[0]) {
        bases[0] = h5edit_base("dataset-plain", write_plain, &sizes[0]);
        bases[1] = h5edit_base("dataset-masked", write_masked, &sizes[1]);
    }
    if (size < 1) return;
    int which = data[0] & 1;
    dataset_job job = {.path = fuzz_scratch_file("dataset.h5", bases[which], sizes[which])};
    h5edit_apply(job.path, data + 1, size - 1, extra_paths, extra_attrs);
    fuzz_try(validate, &job);
}

FUZZ_TARGET(fuzz_one)
