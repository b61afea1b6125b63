/* shardlora-init: write a LLaMA-family model file with freshly initialised weights, as Hugging
 * Face's from_config does (normal(0, 0.02) for matrices, ones for norms, zeros for biases), so
 * demos and tests can make models of any shape without downloading one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "modelcfg.h"
#include "rng.h"
#include "runtime.h"

static const char *USAGE =
    "usage: shardlora-init OUT.h5 [--arch llama|mistral|qwen2] [--hidden N] [--intermediate N]\n"
    "                      [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--max-pos N]\n"
    "                      [--rope-theta X] [--tie] [--std X] [--seed N] [--dtype f32|bf16]\n"
    "Writes a model file with random weights (normal(0, std), default std 0.02).\n";

typedef struct {
    const char *out, *dtype;
    double std;
    uint64_t seed;
} init_options;

static int int_arg(const char *flag, const char *v)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x <= 0 || x > 1 << 30) sl_usage_error("option %s: expected a positive integer, found '%s'", flag, v);
    return (int)x;
}

static void parse(int argc, char **argv, sl_model_config *c, init_options *o)
{
    *c = (sl_model_config){.architecture = "llama", .hidden_size = 64, .intermediate_size = 172,
                           .num_layers = 2, .num_heads = 4, .num_kv_heads = 2, .vocab_size = 512,
                           .max_positions = 512, .rope = {.theta = 10000.0}, .rms_norm_eps = 1e-5,
                           .bos_token_id = 1, .eos_token_id = 2};
    *o = (init_options){.dtype = "f32", .std = 0.02, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) { fputs(USAGE, stdout); exit(0); }
        if (a[0] != '-') { o->out = a; continue; }
        if (!strcmp(a, "--tie")) { c->tie_word_embeddings = 1; continue; }
        if (!v) sl_usage_error("option %s needs a value\n%s", a, USAGE);
        i++;
        if (!strcmp(a, "--arch")) snprintf(c->architecture, sizeof c->architecture, "%s", v);
        else if (!strcmp(a, "--hidden")) c->hidden_size = int_arg(a, v);
        else if (!strcmp(a, "--intermediate")) c->intermediate_size = int_arg(a, v);
        else if (!strcmp(a, "--layers")) c->num_layers = int_arg(a, v);
        else if (!strcmp(a, "--heads")) c->num_heads = int_arg(a, v);
        else if (!strcmp(a, "--kv-heads")) c->num_kv_heads = int_arg(a, v);
        else if (!strcmp(a, "--vocab")) c->vocab_size = int_arg(a, v);
        else if (!strcmp(a, "--max-pos")) c->max_positions = int_arg(a, v);
        else if (!strcmp(a, "--rope-theta")) c->rope.theta = atof(v);
        else if (!strcmp(a, "--std")) o->std = atof(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dtype")) o->dtype = v;
        else sl_usage_error("unknown option '%s'\n%s", a, USAGE);
    }
    if (!o->out) sl_usage_error("no output file given\n%s", USAGE);
    if (!modelcfg_known_architecture(c->architecture))
        sl_usage_error("option --arch: expected llama, mistral or qwen2, found '%s'", c->architecture);
    if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "bf16"))
        sl_usage_error("option --dtype: expected f32 or bf16, found '%s'", o->dtype);
    c->attention_bias = !strcmp(c->architecture, "qwen2");
    c->head_dim = c->hidden_size / c->num_heads;
    const char *problem = modelcfg_problem(c);
    if (problem) sl_usage_error("invalid model shape: %s", problem);
}

static void write_tensor(hid_t f, const sl_tensor_spec *t, const init_options *o, sl_rng *rng)
{
    int64_t n = t->ndims == 2 ? t->dims[0] * t->dims[1] : t->dims[0];
    float *w = sl_malloc((size_t)n * 4, t->path);
    for (int64_t i = 0; i < n; i++)
        w[i] = t->kind == TENSOR_NORM ? 1.0f : t->kind == TENSOR_BIAS ? 0.0f : (float)(o->std * rng_normal(rng));
    if (!strcmp(o->dtype, "bf16")) {
        uint16_t *b = sl_malloc((size_t)n * 2, t->path);
        for (int64_t i = 0; i < n; i++) b[i] = sl_f32_to_bf16(w[i]);
        h5_write(f, t->path, SL_BF16, SL_BF16, t->ndims, t->dims, b);
        free(b);
    } else {
        h5_write(f, t->path, SL_F32, SL_F32, t->ndims, t->dims, w);
    }
    free(w);
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-init");
    sl_model_config c;
    init_options o;
    parse(argc, argv, &c, &o);
    hid_t f = h5_create(o.out, "model", MPI_COMM_NULL);
    h5_set_attr_string(f, "/", "shardlora_kind", "model");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "source", "shardlora-init (random weights)");
    h5_set_attr_string(f, "/", "source_format", "init");
    h5_set_attr_string(f, "/", "model_name", "shardlora-init");
    modelcfg_write(f, &c);
    int n = modelcfg_tensor_count(&c);
    sl_tensor_spec *t = sl_malloc(sizeof *t * (size_t)n, "tensor table");
    modelcfg_tensors(&c, t, n);
    sl_rng rng;
    rng_seed(&rng, o.seed, 0);
    for (int i = 0; i < n; i++) write_tensor(f, &t[i], &o, &rng);
    h5_close(f);
    printf("wrote %s: %s, %lld parameters, %d layers, hidden %d, vocab %d (%s)\n", o.out, c.architecture,
           (long long)modelcfg_param_count(&c), c.num_layers, c.hidden_size, c.vocab_size, o.dtype);
    free(t);
    return 0;
}
