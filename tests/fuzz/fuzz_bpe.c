/* Fuzz target: the encoder of shardlora-tokenize (tools/tokenize/bpe.c) on any text, with the llama2.c
 * tokenizer of ../shared/data. The tokens must spell the text back: the dummy-prefix space, then
 * the text byte for byte (byte-fallback tokens standing for their byte). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "harness.h"
#include "runtime.h"
#include "spelling.h"

static void load(void *v)
{
    const char *shared = getenv("SHARDLORA_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/data/llama2c_tokenizer.bin", shared ? shared : "../shared");
    vocab_load(v, path);
}

static const vocab *tokenizer(void)
{
    static vocab v;
    static int loaded;
    if (!loaded && !fuzz_try(load, &v)) {
        fprintf(stderr, "fuzz_bpe: %s (set SHARDLORA_SHARED)\n", fuzz_outcome());
        exit(1);
    }
    loaded = 1;
    return &v;
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    const vocab *v = tokenizer();
    int32_t *ids = malloc((size + 1) * sizeof *ids);
    int64_t n = bpe_encode(v, (const char *)data, (int64_t)size, ids);
    if (!spells_text(v, ids, n, data, size)) {
        fprintf(stderr, "fuzz_bpe: the %lld tokens do not spell the %zu-byte text back\n", (long long)n, size);
        __builtin_trap();
    }
    free(ids);
}

FUZZ_TARGET(fuzz_one)
