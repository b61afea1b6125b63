/* Fuzz target: a llama2.c tokenizer file (tools/tokenize/vocab.c): its header, every entry, the
 * byte-fallback pieces and the piece index; an accepted file then encodes a short text
 * (tools/tokenize/bpe.c), whose tokens must spell the text back. */
#include <string.h>

#include "bpe.h"
#include "harness.h"
#include "runtime.h"
#include "spelling.h"

typedef struct {
    const char *path;
    vocab v;
} vocab_job;

static void load(void *arg)
{
    vocab_job *job = arg;
    vocab_load(&job->v, job->path);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    vocab_job job = {.path = fuzz_scratch_file("tokenizer.bin", data, size)};
    if (fuzz_try(load, &job)) {
        static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xe2\x82\xac\xf0\x9f\x99\x82 <0x41>\n";
        const int64_t len = (int64_t)sizeof text - 1;
        int32_t ids[sizeof text + 1];
        int64_t n = bpe_encode(&job.v, text, len, ids);
        if (!spells_text(&job.v, ids, n, (const uint8_t *)text, (size_t)len)) {
            log_warn("fuzz_vocab: the tokens do not spell the text back");
            __builtin_trap();
        }
    }
    vocab_free(&job.v);
}

FUZZ_TARGET(fuzz_one)
