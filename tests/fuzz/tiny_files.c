/* tiny_files: written with distinct, finite values so validators meet real content. */
#include "tiny_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"
#include "harness.h"
#include "import.h"

static const sl_model_config TINY = {
    .architecture = "llama", .hidden_size = 8, .intermediate_size = 16, .num_layers = 2, .num_heads = 2,
    .num_kv_heads = 1, .head_dim = 4, .vocab_size = TINY_VOCAB, .max_positions = 16, .rope = {.theta = 10000.0},
    .rms_norm_eps = 1e-5, .bos_token_id = 1, .eos_token_id = 2,
};

/* The writer's source of one tensor's values, from memory. */
static int read_floats(const import_source *s, int64_t first, int64_t count, void *dst, char *err, size_t len)
{
    (void)err, (void)len;
    memcpy(dst, (const float *)s->ctx + first, (size_t)count * sizeof(float));
    return 0;
}

void tiny_model_write(const char *path, const char *quantize)
{
    fuzz_start_mpi("fuzz-model"); /* the model writer is collective */
    import_options opt = {.out_dtype = SL_F32, .quantize = quantize};
    if (quantize) quant_format_make(quantize, 1, 64, &opt.quant);
    const import_origin origin = {"fuzz", "llama2c", "tiny"};
    import_writer *w = writer_open(path, &opt, &origin, &TINY);
    sl_tensor_spec specs[64];
    int n = modelcfg_tensors(&TINY, specs, 64);
    for (int i = 0; i < n; i++) {
        int64_t count = specs[i].ndims == 2 ? specs[i].dims[0] * specs[i].dims[1] : specs[i].dims[0];
        float *x = malloc((size_t)count * sizeof *x);
        for (int64_t k = 0; k < count; k++) x[k] = (float)((k * 7 + i) % 13 - 6) / 8;
        import_source src = {.dtype = SL_F32, .read = read_floats, .ctx = x};
        snprintf(src.where, sizeof src.where, "tiny model: %.256s", specs[i].path);
        writer_tensor(w, &specs[i], &src);
        free(x);
    }
    writer_finish(w);
}

void tiny_dataset_write(const char *path, int masked)
{
    fuzz_start_mpi("fuzz-dataset"); /* corpus_write is collective */
    corpus c;
    corpus_init(&c, 0, BOS_ID, EOS_ID, path);
    for (int doc = 0; doc < 5; doc++) {
        int32_t ids[12];
        uint8_t mask[12];
        int n = 1 + doc * 2;
        for (int i = 0; i < n; i++)
            ids[i] = 3 + (doc * 5 + i) % (TINY_VOCAB - 3), mask[i] = (uint8_t)((i + doc) % 3 != 0);
        corpus_add(&c, ids, n, masked ? mask : NULL, masked ? doc % TINY_LABELS : -1);
    }
    const corpus_meta meta = {.vocab_size = TINY_VOCAB, .bos_id = BOS_ID, .eos_id = EOS_ID, .pad_id = 0,
                              .tokenizer = "fuzz", .source = "fuzz"};
    int64_t tokens;
    corpus_write(&c, path, &meta, &tokens);
    corpus_free(&c);
}
