/* Fuzz target: the model-file validation of shardlora train and eval (src/model.c: model_validate,
 * model_stored_format) on edited copies (h5edit.h) of two valid model files that shardlora-import's
 * writer makes (tiny_files.h): float32, and with NF4 double-quantized projections. The first input byte picks
 * the file, the rest are the edits. */
#include "h5edit.h"
#include "harness.h"
#include "model.h"
#include "tiny_files.h"

static void write_float_model(void *path) { tiny_model_write(path, NULL); }
static void write_nf4_model(void *path) { tiny_model_write(path, "nf4"); }

static void validate(void *path)
{
    sl_model_config cfg;
    model_validate(path, &cfg);
    quant_format fmt;
    model_stored_format(path, &fmt);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    static const uint8_t *bases[2];
    static size_t sizes[2];
    if (!bases[0]) {
        bases[0] = h5edit_base("model-f32", write_float_model, &sizes[0]);
        bases[1] = h5edit_base("model-nf4", write_nf4_model, &sizes[1]);
    }
    if (size < 1) return;
    int which = data[0] & 1;
    const char *path = fuzz_scratch_file("model.h5", bases[which], sizes[which]);
    h5edit_apply(path, data + 1, size - 1, NULL, NULL);
    fuzz_try(validate, (void *)path);
}

FUZZ_TARGET(fuzz_one)
