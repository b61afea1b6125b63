/* Fuzz target: JSONL input of shardlora-tokenize (tools/tokenize/jsonl.c, records.c, chat.c), one
 * document per line: input_ids with an optional loss_mask and label, or text, or messages. The
 * first input byte picks --bos (bit 0), --eos (bit 1), the llama2.c tokenizer of ../shared/data
 * (bit 2; without it ids must lie below 300 and text records are errors), --chat-template (bits 3-4:
 * the tokenizer's, llama3, chatml, mistral) and --max-docs (bits 5-7); the rest is the file. An
 * accepted corpus is written as a dataset file (tools/tokenize/corpus.c, one MPI rank), which
 * shardlora's dataset validation (src/data.c) must accept. */
#include "corpus.h"
#include "data.h"
#include "harness.h"
#include "runtime.h"
#include "tokenize.h"
#include "tokenizer_file.h"

enum { VOCAB = 300 }; /* without a tokenizer, ids at and above it are out of range */

typedef struct {
    tk_options opts;
    const tokenizer *tok;
    corpus c;
    const char *dataset;
    int64_t vocab;
} jsonl_job;

static void read_and_write(void *arg)
{
    jsonl_job *job = arg;
    progress prog;
    read_jsonl(&job->opts, job->tok, &job->c, &prog);
    const corpus_meta meta = {.vocab_size = job->vocab, .bos_id = job->c.bos_id, .eos_id = job->c.eos_id,
                              .pad_id = -1, .tokenizer = job->tok ? "llama2c" : "jsonl", .source = job->opts.files[0]};
    int64_t tokens;
    corpus_write(&job->c, job->dataset, &meta, &tokens);
}

static void validate(void *arg)
{
    const jsonl_job *job = arg;
    data_validate(job->dataset, (int)job->vocab);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    fuzz_start_mpi("fuzz-jsonl");
    if (size < 1) return;
    const uint8_t flags = data[0];
    const char *file = fuzz_scratch_file("input.jsonl", data + 1, size - 1);
    jsonl_job job = {.opts = {.input = INPUT_JSONL, .files = &file, .n_files = 1, .vocab_size = VOCAB,
                              .chat_template = (chat_template)(flags >> 3 & 3)},
                     .tok = flags & 4 ? fuzz_shared_llama2c("fuzz_jsonl") : NULL,
                     .dataset = fuzz_scratch_file("dataset.h5", "", 0)};
    job.vocab = job.tok ? job.tok->vocab_size : VOCAB;
    int32_t bos = job.tok ? job.tok->bos_id : BOS_ID, eos = job.tok ? job.tok->eos_id : EOS_ID;
    corpus_init(&job.c, flags >> 5, flags & 1 ? bos : -1, flags & 2 ? eos : -1, job.dataset);
    if (fuzz_try(read_and_write, &job) && !fuzz_try(validate, &job)) {
        log_warn("fuzz_jsonl: shardlora-tokenize wrote a dataset that shardlora refuses: %s", fuzz_outcome());
        __builtin_trap();
    }
    corpus_free(&job.c);
}

FUZZ_TARGET(fuzz_one)
