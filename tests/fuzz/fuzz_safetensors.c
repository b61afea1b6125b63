/* Fuzz target: a .safetensors file (tools/import/safetensors.c): the 8-byte header length, the JSON
 * header validated whole by st_open, then every tensor found by name and read. */
#include <stdlib.h>

#include "harness.h"
#include "safetensors.h"

typedef struct {
    const char *path;
    st_file st;
} st_job;

static void open_and_read_all(void *arg)
{
    st_job *job = arg;
    st_open(&job->st, job->path);
    for (const cJSON *e = job->st.header->child; e; e = e->next) {
        st_tensor t;
        if (!st_find(&job->st, e->string, &t)) continue;
        void *buf = malloc(t.nbytes ? (size_t)t.nbytes : 1);
        st_read(&job->st, &t, buf);
        free(buf);
    }
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    st_job job = {.path = fuzz_scratch_file("model.safetensors", data, size)};
    fuzz_try(open_and_read_all, &job);
    st_close(&job.st); /* also after an error: what st_open opened is in st */
}

FUZZ_TARGET(fuzz_one)
