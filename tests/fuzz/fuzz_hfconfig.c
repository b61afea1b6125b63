/* Fuzz target: a Hugging Face config.json as shardlora-import reads it (tools/import/hfconfig.c,
 * parsed by jsonfile.c): the architecture, the sizes with HF's defaults, the rotary scaling. */
#include "harness.h"
#include "import.h"

static void read_config(void *dir)
{
    sl_model_config cfg;
    hfconfig_read(dir, &cfg);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    fuzz_scratch_file("config.json", data, size);
    fuzz_try(read_config, (void *)fuzz_scratch_dir());
}

FUZZ_TARGET(fuzz_one)
