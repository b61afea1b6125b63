/* Fuzz target: a Hugging Face config.json as shardlora-import reads it (tools/import/jsonfile.c
 * parses the file, hfconfig.c maps it onto the model config with HF's defaults and checks it). */
#include "harness.h"
#include "import.h"

typedef struct {
    const char *path;
    cJSON *json;
} config_job;

static void read_config(void *arg)
{
    config_job *job = arg;
    job->json = json_read_file(job->path, "model config");
    sl_model_config cfg;
    hfconfig_from_json(job->json, job->path, &cfg);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    config_job job = {.path = fuzz_scratch_file("config.json", data, size)};
    fuzz_try(read_config, &job);
    cJSON_Delete(job.json); /* also after an error, which leaves the parsed file to the caller */
}

FUZZ_TARGET(fuzz_one)
