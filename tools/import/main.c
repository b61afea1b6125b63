/* shardlora-import: turn a Hugging Face checkpoint or a llama2.c model into a shardlora model file.
 * This file holds the command line only; the formats live in hf.c and llama2c.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "runtime.h"

static void set_dtype(import_options *o, const char *v)
{
    static const struct { const char *name; sl_dtype t; } NAMES[] = {
        {"f32", SL_F32}, {"f16", SL_F16}, {"bf16", SL_BF16}};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(v, NAMES[i].name) == 0) {
            o->out_dtype = NAMES[i].t;
            return;
        }
    sl_fatal("--dtype: unknown type '%s' (expected f32, f16 or bf16)", v);
}

static void set_quantize(import_options *o, const char *v) { o->quantize = v; }
static void set_double_quant(import_options *o, const char *v) { o->double_quant = 1; }

static void set_blocksize(import_options *o, const char *v)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x <= 0 || x > 1 << 20) sl_fatal("--blocksize: expected a positive integer, found '%s'", v);
    o->blocksize = (int)x;
}

/* Options; value NULL marks a flag. A new one is one more row and one setter. */
static const struct {
    const char *name, *value, *help;
    void (*set)(import_options *, const char *);
} OPTIONS[] = {
    {"--dtype", "f32|f16|bf16", "store every tensor in this type (default: as stored in the source)", set_dtype},
    {"--quantize", "nf4|fp4|int8", "store the decoder layers' projection weights quantized", set_quantize},
    {"--double-quant", NULL, "with --quantize nf4|fp4: quantize the block absmax values too", set_double_quant},
    {"--blocksize", "N", "with --quantize: elements per block (nf4/fp4 64, 128, 256; int8 64, 256, 4096)",
     set_blocksize},
};
#define N_OPTIONS (int)(sizeof OPTIONS / sizeof OPTIONS[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: shardlora-import hf DIR OUT.h5 [options]\n"
                 "       shardlora-import llama2c FILE.bin OUT.h5 [options]\n"
                 "  hf       a Hugging Face directory: config.json and model.safetensors (or shards listed\n"
                 "           by model.safetensors.index.json); architectures llama, mistral, qwen2, qwen3;\n"
                 "           float; bitsandbytes 4-bit (NF4/FP4) kept as they are, pre-quantized; 8-bit dequantized\n"
                 "  llama2c  a legacy llama2.c checkpoint (rotary rows are permuted to the HF convention)\n"
                 "options:\n");
    char form[64];
    for (int i = 0; i < N_OPTIONS; i++) {
        snprintf(form, sizeof form, "%s %s", OPTIONS[i].name, OPTIONS[i].value ? OPTIONS[i].value : "");
        fprintf(out, "  %-24s %s\n", form, OPTIONS[i].help);
    }
    fprintf(out, "  %-24s %s\n", "--help", "this text");
}

/* Applies "--name value" or "--name=value" at argv[i]; returns how many arguments it used. */
static int parse_option(int argc, char **argv, int i, import_options *o)
{
    for (int k = 0; k < N_OPTIONS; k++) {
        size_t len = strlen(OPTIONS[k].name);
        if (strncmp(argv[i], OPTIONS[k].name, len) != 0) continue;
        if (!OPTIONS[k].value && argv[i][len] == 0) {
            OPTIONS[k].set(o, NULL);
            return 1;
        }
        if (!OPTIONS[k].value) continue;
        if (argv[i][len] == '=') {
            OPTIONS[k].set(o, argv[i] + len + 1);
            return 1;
        }
        if (argv[i][len] != 0) continue;
        if (i + 1 >= argc) sl_fatal("%s needs a value (%s)", OPTIONS[k].name, OPTIONS[k].value);
        OPTIONS[k].set(o, argv[i + 1]);
        return 2;
    }
    sl_fatal("unknown option '%s' (see shardlora-import --help)", argv[i]);
}

static void resolve_quantization(import_options *o)
{
    if (!o->quantize) {
        if (o->double_quant || o->blocksize) sl_fatal("--double-quant and --blocksize need --quantize nf4|fp4|int8");
        return;
    }
    const char *problem = quant_format_make(o->quantize, o->double_quant, o->blocksize, &o->quant);
    if (problem) sl_fatal("--quantize %s%s: %s", o->quantize, o->double_quant ? " --double-quant" : "", problem);
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-import");
    import_options opt = {.out_dtype = SL_DTYPE_OTHER};
    const char *args[3];
    int n_args = 0;
    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strncmp(argv[i], "--", 2) == 0) {
            i += parse_option(argc, argv, i, &opt);
            continue;
        }
        if (n_args == 3) sl_fatal("unexpected argument '%s' (see shardlora-import --help)", argv[i]);
        args[n_args++] = argv[i++];
    }
    if (n_args < 3) {
        usage(stderr);
        sl_fatal("expected a format (hf or llama2c), a source and an output file");
    }
    resolve_quantization(&opt);
    if (strcmp(args[0], "hf") == 0)
        import_hf(args[1], args[2], &opt);
    else if (strcmp(args[0], "llama2c") == 0)
        import_llama2c(args[1], args[2], &opt);
    else
        sl_fatal("unknown source format '%s' (expected hf or llama2c)", args[0]);
    rt_finalize();
    return 0;
}
