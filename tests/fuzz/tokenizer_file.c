/* tokenizer_file: one tokenizer file loaded under fuzz_try, then a text encoded with it. */
#include "tokenizer_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spelling.h"

/* Words, punctuation, runs of spaces, a tab and newlines, digits, 2-, 3- and 4-byte characters
 * (precomposed, so NFC leaves them), and a byte-fallback piece's own spelling. */
static const char TEXT[] = "Once upon a time,  \xc3\xa9t\xc3\xa9 \xe2\x82\xac\xf0\x9f\x99\x82\tit's 2024!\n\n <0x41> end";

typedef struct {
    const char *path, *pattern;
    tokenizer t;
} load_job;

static void load(void *arg)
{
    load_job *job = arg;
    tokenizer_load(&job->t, job->path, job->pattern);
}

void fuzz_tokenizer_file(const uint8_t *data, size_t size, const char *name, const char *pattern, const char *target)
{
    load_job job = {.path = fuzz_scratch_file(name, data, size), .pattern = pattern};
    if (fuzz_try(load, &job)) {
        char what[128];
        snprintf(what, sizeof what, "%s, %s", job.t.format, spelling_require(&job.t, TEXT, sizeof TEXT - 1, target));
        fuzz_accepted_as(what);
    }
    tokenizer_free(&job.t); /* tokenizer.h: it releases what was loaded after an error too */
}

static void load_shared(void *t)
{
    static char path[4096]; /* the tokenizer keeps it for its messages */
    const char *shared = getenv("SHARDLORA_SHARED");
    snprintf(path, sizeof path, "%s/data/llama2c_tokenizer.bin", shared ? shared : "../shared");
    tokenizer_load(t, path, NULL);
}

const tokenizer *fuzz_shared_llama2c(const char *target)
{
    static tokenizer t;
    static int loaded;
    if (!loaded && !fuzz_try(load_shared, &t)) {
        fprintf(stderr, "%s: %s (set SHARDLORA_SHARED to the shared folder)\n", target, fuzz_outcome());
        exit(1);
    }
    loaded = 1;
    return &t;
}
