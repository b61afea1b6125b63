/* Fuzz target: JSONL input of shardlora-tokenize (tools/tokenize/jsonl.c), one document per line
 * with input_ids, an optional loss_mask and label. The first input byte picks --bos, --eos and
 * --max-docs; the rest is the file. An accepted corpus is written as a dataset file
 * (tools/tokenize/corpus.c), which shardlora's dataset validation (src/data.c) must accept. */
#include "corpus.h"
#include "data.h"
#include "harness.h"
#include "runtime.h"
#include "tokenize.h"

enum { VOCAB = 300 }; /* ids at and above it are out of range */

typedef struct {
    tk_options opts;
    corpus c;
    const char *dataset;
} jsonl_job;

static void read_and_write(void *arg)
{
    jsonl_job *job = arg;
    read_jsonl(&job->opts, &job->c);
    const corpus_meta meta = {.vocab_size = VOCAB, .bos_id = BOS_ID, .eos_id = EOS_ID, .pad_id = -1,
                              .tokenizer = "none", .source = job->opts.files[0]};
    corpus_write(&job->c, job->dataset, &meta);
}

static void validate(void *path) { data_validate(path, VOCAB); }

static void fuzz_one(const uint8_t *data, size_t size)
{
    if (size < 1) return;
    const char *file = fuzz_scratch_file("input.jsonl", data + 1, size - 1);
    jsonl_job job = {.opts = {.input = INPUT_JSONL, .files = &file, .n_files = 1, .vocab_size = VOCAB},
                     .dataset = fuzz_scratch_file("dataset.h5", "", 0)};
    corpus_init(&job.c, data[0] >> 2, data[0] & 1, data[0] >> 1 & 1);
    if (fuzz_try(read_and_write, &job) && !fuzz_try(validate, (void *)job.dataset)) {
        log_warn("fuzz_jsonl: shardlora-tokenize wrote a dataset that shardlora refuses: %s", fuzz_outcome());
        __builtin_trap();
    }
    corpus_free(&job.c);
}

FUZZ_TARGET(fuzz_one)
