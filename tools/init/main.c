/* shardlora-init: write a LLaMA-family model file with freshly initialised weights, as Hugging
 * Face's from_config does (normal(0, 0.02) for matrices, ones for norms, zeros for biases), so
 * demos and tests can make models of any shape without downloading one. With --quant the seven
 * projections are written quantized, as shardlora-quantize of the plain file would write them.
 *
 * The weights are one seeded stream of normals (two rng_u64 draws each) over the matrices in
 * tensor-table order. Every OpenMP thread generates its own part of a chunk, jumping to its
 * offset in the stream (rng_advance), so the bytes do not depend on the thread count, and at most
 * one chunk (or one projection, to be quantized whole) is in memory at a time. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "modelcfg.h"
#include "quant_store.h"
#include "rng.h"
#include "runtime.h"

static const char *USAGE =
    "usage: shardlora-init OUT.h5 [--arch llama|mistral|qwen2|qwen3] [--hidden N] [--intermediate N]\n"
    "                      [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--max-pos N]\n"
    "                      [--rope-theta X] [--tie] [--std X] [--seed N] [--dtype f32|bf16]\n"
    "                      [--quant nf4|fp4|int8 [--double-quant] [--blocksize N]]\n"
    "Writes a model file with random weights (normal(0, std), default std 0.02). With --quant the\n"
    "projections are stored quantized: the same file as shardlora-init followed by shardlora-quantize\n"
    "with these options, without the full-precision file in between.\n";

typedef struct {
    const char *out, *dtype, *quant;
    double std;
    uint64_t seed;
    int double_quant, blocksize;
    quant_format fmt;
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
        if (!strcmp(a, "--double-quant")) { o->double_quant = 1; continue; }
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
        else if (!strcmp(a, "--quant")) o->quant = v;
        else if (!strcmp(a, "--blocksize")) o->blocksize = int_arg(a, v);
        else sl_usage_error("unknown option '%s'\n%s", a, USAGE);
    }
    if (!o->out) sl_usage_error("no output file given\n%s", USAGE);
    if (!modelcfg_known_architecture(c->architecture))
        sl_usage_error("option --arch: expected llama, mistral, qwen2 or qwen3, found '%s'", c->architecture);
    if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "bf16"))
        sl_usage_error("option --dtype: expected f32 or bf16, found '%s'", o->dtype);
    if (!o->quant && (o->double_quant || o->blocksize))
        sl_usage_error("option %s needs --quant (nf4, fp4 or int8)", o->double_quant ? "--double-quant" : "--blocksize");
    o->fmt = (quant_format){QUANT_NONE, 0, 0};
    if (o->quant) {
        const char *problem = quant_format_make(o->quant, o->double_quant, o->blocksize, &o->fmt);
        if (problem) {
            char given[32] = "";
            if (o->blocksize) snprintf(given, sizeof given, " --blocksize %d", o->blocksize);
            sl_usage_error("options --quant %s%s%s: %s", o->quant, o->double_quant ? " --double-quant" : "", given,
                           problem);
        }
    }
    c->attention_bias = !strcmp(c->architecture, "qwen2");
    c->qk_norm = !strcmp(c->architecture, "qwen3");
    c->head_dim = c->hidden_size / c->num_heads;
    const char *problem = modelcfg_problem(c);
    if (problem) sl_usage_error("invalid model shape: %s", problem);
}

/* Values [e0, e0 + count) of tensor t, whose normals start at value `first` of the stream seeded
 * in base, on every thread; bf16: rounded to bf16 (what a reader of the bf16 file gets). */
static void generate(const sl_tensor_spec *t, const sl_rng *base, uint64_t first, int64_t e0, int64_t count,
                     const init_options *o, float *w)
{
    const int bf16 = !strcmp(o->dtype, "bf16");
    const double std = o->std;
    if (t->kind == TENSOR_NORM || t->kind == TENSOR_BIAS) {
        const float v = t->kind == TENSOR_NORM ? 1.0f : 0.0f;
        for (int64_t i = 0; i < count; i++) w[i] = v;
        return;
    }
#pragma omp parallel
    {
        int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t lo = count * id / nt, hi = count * (id + 1) / nt;
        sl_rng r = *base;
        rng_advance(&r, 2 * (first + (uint64_t)(e0 + lo))); /* two draws per normal */
        for (int64_t i = lo; i < hi; i++) {
            float x = (float)(std * rng_normal(&r));
            w[i] = bf16 ? sl_bf16_to_f32(sl_f32_to_bf16(x)) : x;
        }
    }
}

enum { CHUNK = 1 << 24 }; /* elements per write of a tensor that is not quantized (64 MiB) */

/* Writes tensor t; returns how many normals it took from the stream. */
static int64_t write_tensor(hid_t f, const sl_tensor_spec *t, const init_options *o, const sl_rng *base,
                            uint64_t first, float *buf, uint16_t *words)
{
    const int64_t n = t->ndims == 2 ? t->dims[0] * t->dims[1] : t->dims[0];
    const sl_dtype type = !strcmp(o->dtype, "bf16") ? SL_BF16 : SL_F32;
    if (t->kind == TENSOR_LINEAR && o->fmt.type != QUANT_NONE) {
        float *w = sl_malloc((size_t)n * sizeof *w, t->path);
        generate(t, base, first, 0, n, o, w);
        quant_store_quantize(f, t->path, &o->fmt, t->dims, sl_dtype_name(type), w);
        free(w);
    } else {
        h5_create_dataset(f, t->path, type, t->ndims, t->dims);
        for (int64_t e0 = 0; e0 < n; e0 += CHUNK) {
            int64_t count = n - e0 < CHUNK ? n - e0 : CHUNK;
            generate(t, base, first, e0, count, o, buf);
            if (type == SL_BF16) sl_from_f32(words, buf, SL_BF16, (size_t)count);
            h5_write_range(f, t->path, type, e0, count, type == SL_BF16 ? (void *)words : (void *)buf);
        }
    }
    return t->kind == TENSOR_NORM || t->kind == TENSOR_BIAS ? 0 : n;
}

/* Removes the partial output when the tool stops with an error (sl_fatal exits). */
static char *partial_to_remove;
static void remove_partial(void)
{
    if (partial_to_remove) remove(partial_to_remove);
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-init");
    sl_model_config c;
    init_options o;
    parse(argc, argv, &c, &o);
    double t0 = rt_now();
    char *partial = sl_malloc(strlen(o.out) + 9, "path");
    sprintf(partial, "%s.partial", o.out);
    partial_to_remove = partial;
    atexit(remove_partial);
    hid_t f = h5_create(partial, "model", MPI_COMM_NULL);
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
    float *buf = sl_malloc((size_t)CHUNK * sizeof *buf, "weights to write");
    uint16_t *words = sl_malloc((size_t)CHUNK * sizeof *words, "weights to write");
    uint64_t first = 0;
    for (int i = 0; i < n; i++) first += (uint64_t)write_tensor(f, &t[i], &o, &rng, first, buf, words);
    free(buf), free(words);
    char qname[32] = "";
    if (o.fmt.type != QUANT_NONE) h5_set_attr_string(f, "/", "quantization", quant_format_name(&o.fmt, qname, sizeof qname));
    h5_close(f);
    if (rename(partial, o.out) != 0) sl_fatal("cannot rename %s to %s (is the directory writable?)", partial, o.out);
    partial_to_remove = NULL;
    printf("wrote %s: %s, %lld parameters, %d layers, hidden %d, vocab %d (%s%s%s) in %.1f s on %d threads\n", o.out,
           c.architecture, (long long)modelcfg_param_count(&c), c.num_layers, c.hidden_size, c.vocab_size, o.dtype,
           qname[0] ? ", projections " : "", qname, rt_now() - t0, omp_get_max_threads());
    free(t);
    free(partial);
    return 0;
}
