/* Fuzz target: a llama2.c tokenizer file, read by both of its readers: shardlora generate's
 * (src/vocab.c: the header, every entry, the byte-fallback pieces, the piece index) and
 * shardlora-tokenize's (tools/tokenize/llama2c.c through tokenizer_load), whose tokenizer then
 * encodes a short text that its ids must spell back (spelling.h). */
#include <stdio.h>

#include "harness.h"
#include "tokenizer_file.h"
#include "vocab.h"

typedef struct {
    const char *path;
    vocab v;
} vocab_job;

static void load_vocab(void *arg)
{
    vocab_job *job = arg;
    vocab_load(&job->v, job->path);
    for (int32_t id = 0; id < job->v.n; id++) { /* every piece is found, as itself or an earlier duplicate */
        int32_t found = vocab_find(&job->v, vocab_piece(&job->v, id), job->v.lens[id]);
        if (found < 0 || found > id) {
            fprintf(stderr, "fuzz_vocab: piece %d is found as %d\n", id, found);
            __builtin_trap();
        }
    }
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    vocab_job job = {.path = fuzz_scratch_file("tokenizer.bin", data, size)};
    fuzz_try(load_vocab, &job);
    vocab_free(&job.v); /* vocab.h: it releases what was loaded after an error too */
    fuzz_tokenizer_file(data, size, "tokenizer.bin", NULL, "fuzz_vocab");
}

FUZZ_TARGET(fuzz_one)
