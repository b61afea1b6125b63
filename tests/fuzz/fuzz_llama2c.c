/* Fuzz target: a legacy llama2.c checkpoint imported whole (tools/import/llama2c.c): the header
 * checked against the file's size, the arrays located, the rotary rows permuted and every tensor
 * written by the model-file writer into a scratch file. */
#include "harness.h"
#include "import.h"

typedef struct {
    const char *path, *out;
} l2c_job;

static void import(void *arg)
{
    const l2c_job *job = arg;
    const import_options opt = {.out_dtype = SL_DTYPE_OTHER};
    import_llama2c(job->path, job->out, &opt);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    fuzz_start_mpi("fuzz-llama2c"); /* the import is collective (one rank here) */
    l2c_job job = {fuzz_scratch_file("model.bin", data, size), fuzz_scratch_file("model.h5", "", 0)};
    fuzz_try(import, &job);
}

FUZZ_TARGET(fuzz_one)
