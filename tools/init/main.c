/* shardlora-init: write a LLaMA-family model file with freshly initialised weights, as Hugging
 * Face's from_config does (normal(0, 0.02) for matrices, ones for norms, zeros for biases), so
 * demos and tests can make models of any shape without downloading one. With --quant the seven
 * projections are written quantized, as shardlora-quantize of the plain file would write them.
 *
 * Element i of a matrix is std * rng_normals' number i of (seed, FNV-1a of the matrix's path),
 * rounded to float32 (then to bf16 with --dtype bf16): a function of the seed, the name and the
 * index alone, so the file does not depend on the thread count and a layer is the same in files of
 * any depth. Each thread makes a piece of 16K elements at a time and, with --quant, takes its
 * blocks' absmax and codes while they are in its cache, so a quantized projection never exists in
 * float32; the writer thread writes tensor i while the others make tensor i + 1. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "modelcfg.h"
#include "quant_store.h"
#include "rng.h"
#include "synth.h"
#include "runtime.h"
#include "writer.h"

static const char *USAGE =
    "usage: shardlora-init OUT.h5 [--arch llama|mistral|qwen2|qwen3] [--hidden N] [--intermediate N]\n"
    "                      [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--max-pos N]\n"
    "                      [--rope-theta X] [--tie] [--std X] [--seed N] [--dtype f32|bf16]\n"
    "                      [--quant nf4|fp4|int8 [--double-quant] [--blocksize N]] [--generate-at-load]\n"
    "Writes a model file with random weights (normal(0, std), default std 0.02; each value a function\n"
    "of --seed, the tensor's name and its index). With --quant the projections are stored quantized:\n"
    "the same file as shardlora-init followed by shardlora-quantize with these options, without the\n"
    "full-precision file in between. With --generate-at-load the file keeps the configuration and the\n"
    "seed only: every run makes the weights as it loads them (the same values), for benchmarks of\n"
    "models larger than the disk.\n";

typedef struct {
    const char *out, *dtype, *quant;
    double std;
    uint64_t seed;
    int double_quant, blocksize;
    int generate_at_load; /* write the recipe, not the weights */
    quant_format fmt;
    synth_recipe recipe;
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
        if (!strcmp(a, "--generate-at-load")) { o->generate_at_load = 1; continue; }
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
    if (o->generate_at_load && o->quant)
        sl_usage_error("option --generate-at-load keeps no weights, so none are stored quantized: drop --quant and "
                       "give the run its --quant (it quantizes them as it loads them)");
    o->recipe = (synth_recipe){.seed = o->seed, .std = o->std, .bf16 = !strcmp(o->dtype, "bf16")};
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

enum {
    PIECE = 1 << 14, /* elements a thread makes at a time, in its own cache, before they move on */
    CHUNK = 1 << 24  /* elements per write of a tensor that is not quantized */
};

/* What the writer holds of one tensor: a range of values, or the whole tensor quantized. Two
 * slots, filled in turn, each sized for the largest tensor or chunk. */
typedef struct {
    const sl_tensor_spec *t;
    sl_dtype type;
    int64_t e0, count; /* not quantized: this chunk */
    void *values;
    quant_store_info info; /* quantized */
    quant_view q;
    float *block_absmax;
} slot;

static int quantized(const sl_tensor_spec *t, const init_options *o)
{
    return t->kind == TENSOR_LINEAR && o->fmt.type != QUANT_NONE;
}

static int64_t elements(const sl_tensor_spec *t) { return t->ndims == 2 ? t->dims[0] * t->dims[1] : t->dims[0]; }

static void slot_alloc(slot *s, const sl_tensor_spec *t, int n, const init_options *o, sl_dtype type)
{
    int64_t chunk = 1, qn = 0; /* the largest chunk, the largest quantized tensor */
    for (int i = 0; i < n; i++) {
        int64_t e = elements(&t[i]), *most = quantized(&t[i], o) ? &qn : &chunk;
        if (!quantized(&t[i], o) && e > CHUNK) e = CHUNK;
        if (e > *most) *most = e;
    }
    int64_t nb = qn ? quant_nblocks(&o->fmt, qn) : 0;
    *s = (slot){.type = type, .values = sl_malloc((size_t)chunk * sl_dtype_size(type), "weights to write")};
    if (!qn) return;
    s->q = (quant_view){.codes = sl_malloc((size_t)quant_code_bytes(&o->fmt, qn, 0, nb), "codes to write"),
                        .absmax = sl_malloc((size_t)nb * sizeof(float), "absmax to write"),
                        .absmax_u8 = sl_malloc((size_t)nb, "absmax to write"),
                        .nested_absmax = sl_malloc((size_t)quant_nested_count(&o->fmt, 0, nb) * sizeof(float) + 1,
                                                   "absmax to write")};
    s->block_absmax = sl_malloc((size_t)nb * sizeof(float), "block absmax");
}

static void slot_free(slot *s)
{
    free(s->values), free(s->q.codes), free(s->q.absmax), free(s->q.absmax_u8), free(s->q.nested_absmax);
    free(s->block_absmax);
}

/* Values [s->e0, s->e0 + s->count) of s->t into s->values, a piece per thread at a time. */
static void make_chunk(slot *s, const init_options *o)
{
    const int bf16 = s->type == SL_BF16;
    const int64_t pieces = (s->count + PIECE - 1) / PIECE;
#pragma omp parallel
    {
        float *w = bf16 ? sl_malloc(PIECE * sizeof *w, "weights") : NULL;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < pieces; p++) {
            int64_t i0 = p * PIECE, len = s->count - i0 < PIECE ? s->count - i0 : PIECE;
            if (bf16) synth_values(&o->recipe, s->t->kind, s->t->path, s->e0 + i0, len, w, (uint16_t *)s->values + i0);
            else synth_values(&o->recipe, s->t->kind, s->t->path, s->e0 + i0, len, (float *)s->values + i0, NULL);
        }
        free(w);
    }
}

/* s->t quantized: each thread makes a piece of whole blocks, takes their absmax and encodes their
 * codes while the piece is in its cache; the statistics follow from every block's absmax (the
 * offset an exact sum, so the thread count changes no bit). */
static void make_quantized(slot *s, const init_options *o)
{
    const quant_format *f = &o->fmt;
    const int64_t n = elements(s->t), nb = quant_nblocks(f, n), bs = f->blocksize;
    const int64_t per = PIECE / bs > 1 ? PIECE / bs : 1, pieces = (nb + per - 1) / per;
    s->info = quant_store_describe(f, s->t->dims, sl_dtype_name(s->type));
    quant_sum sum = {{0}};
#pragma omp parallel
    {
        float *w = sl_malloc((size_t)(per * bs) * sizeof *w, "weights");
        uint16_t *words = s->type == SL_BF16 ? sl_malloc((size_t)(per * bs) * sizeof *words, "weights") : NULL;
        quant_sum mine = {{0}};
#pragma omp for schedule(static)
        for (int64_t p = 0; p < pieces; p++) {
            int64_t b0 = p * per, b1 = b0 + per < nb ? b0 + per : nb;
            synth_values(&o->recipe, s->t->kind, s->t->path, b0 * bs, quant_block_elems(f, n, b0, b1), w, words);
            quant_block_absmax(f, w, n, b0, b1, s->block_absmax + b0);
            if (f->double_quant) quant_sum_add(&mine, s->block_absmax + b0, b1 - b0);
            quant_encode_codes(f, w, n, b0, b1, s->block_absmax + b0, s->q.codes + quant_code_bytes(f, n, 0, b0));
        }
#pragma omp critical
        for (int k = 0; k < QUANT_SUM_LEN; k++) sum.v[k] += mine.v[k];
        free(w), free(words);
    }
    quant_encode_stats(f, 0, nb, s->block_absmax, f->double_quant ? quant_sum_offset(&sum) : 0.0f, &s->q);
}

static void write_chunk(hid_t f, void *arg)
{
    const slot *s = arg;
    if (s->e0 == 0) h5_create_dataset(f, s->t->path, s->type, s->t->ndims, s->t->dims);
    h5_write_range(f, s->t->path, s->type, s->e0, s->count, s->values);
}

static void write_quantized(hid_t f, void *arg)
{
    const slot *s = arg;
    quant_store_write(f, s->t->path, &s->info, &s->q);
}

/* Every tensor into file f, made in one slot while wr writes the other. */
static void write_tensors(hid_t f, const sl_tensor_spec *t, int n, const init_options *o, writer *wr)
{
    const sl_dtype type = !strcmp(o->dtype, "bf16") ? SL_BF16 : SL_F32;
    slot slots[2];
    for (int k = 0; k < 2; k++) slot_alloc(&slots[k], t, n, o, type);
    writer_start(wr, f);
    int turn = 0;
    for (int i = 0; i < n; i++) {
        if (quantized(&t[i], o)) {
            slot *s = &slots[turn++ % 2];
            s->t = &t[i];
            make_quantized(s, o);
            writer_submit(wr, write_quantized, s);
            continue;
        }
        const int64_t size = elements(&t[i]);
        for (int64_t e0 = 0; e0 < size; e0 += CHUNK) {
            slot *s = &slots[turn++ % 2];
            s->t = &t[i], s->e0 = e0, s->count = size - e0 < CHUNK ? size - e0 : CHUNK;
            make_chunk(s, o);
            writer_submit(wr, write_chunk, s);
        }
    }
    writer_finish(wr);
    for (int k = 0; k < 2; k++) slot_free(&slots[k]);
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
    writer wr = {0};
    if (o.generate_at_load) synth_write_recipe(f, &o.recipe);
    else write_tensors(f, t, n, &o, &wr);
    char qname[32] = "";
    if (o.fmt.type != QUANT_NONE) h5_set_attr_string(f, "/", "quantization", quant_format_name(&o.fmt, qname, sizeof qname));
    h5_close(f);
    if (rename(partial, o.out) != 0) sl_fatal("cannot rename %s to %s (is the directory writable?)", partial, o.out);
    partial_to_remove = NULL;
    printf("wrote %s: %s, %lld parameters, %d layers, hidden %d, vocab %d (%s%s%s) in %.1f s on %d threads "
           "(writes %.1f s, %.1f s of them not overlapped)\n", o.out, c.architecture, (long long)modelcfg_param_count(&c),
           c.num_layers, c.hidden_size, c.vocab_size, o.dtype, qname[0] ? ", projections " : "", qname, rt_now() - t0,
           omp_get_max_threads(), wr.write_s, wr.wait_s);
    free(t);
    free(partial);
    return 0;
}
