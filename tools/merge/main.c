/* shardlora-merge: fold a trained adapter into its base model, W + scale * B A, and write the
 * merged model as a shardlora model file and (--hf) a Hugging Face checkpoint. Runs on any number
 * of MPI ranks: tensor i is merged by rank i mod ranks, one tensor at a time per rank, and both
 * outputs are laid out by the tensor table alone, so they are the same for any rank count. This
 * file holds the command line and the loop; inputs.c reads and folds, h5out.c and hfout.c write. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"
#include "runtime.h"

static const char USAGE[] =
    "usage: shardlora-merge MODEL.h5 ADAPTER.h5 OUT.h5 [--hf DIR] [--dtype bf16|f16|f32] [--max-shard-size N]\n"
    "  Writes OUT.h5, the base MODEL.h5 with the adapter of ADAPTER.h5 (OUT/adapter.h5 of shardlora\n"
    "  train) folded into every adapted projection, W + scale * B A, and for sequence classification\n"
    "  its trained head; a quantized base is dequantized first (the merged model is a float model).\n"
    "  Run it under mpirun/srun to merge on several ranks, each merging its own tensors.\n"
    "  --hf DIR            also write DIR/config.json and DIR/model.safetensors (or shards with\n"
    "                      model.safetensors.index.json) for transformers' from_pretrained\n"
    "  --dtype T           the merged weights' type in both outputs: bf16 (default), f16 or f32\n"
    "  --max-shard-size N  bytes per safetensors shard (suffix KB, MB, GB or KiB, MiB, GiB; default 50GB,\n"
    "                      as transformers' save_pretrained)\n";

static int64_t shard_size_arg(const char *v)
{
    static const struct { const char *suffix; int64_t unit; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000}, {"KiB", 1 << 10},
        {"MiB", 1 << 20}, {"GiB", 1 << 30}};
    char *end;
    long long x = strtoll(v, &end, 10);
    for (size_t i = 0; end != v && x > 0 && i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].suffix) && x <= INT64_MAX / units[i].unit) return x * units[i].unit;
    sl_usage_error("option --max-shard-size: expected a positive size in bytes (e.g. 5GB, 500MiB, 1000000), found '%s'", v);
}

static sl_dtype dtype_arg(const char *v)
{
    if (!strcmp(v, "bf16")) return SL_BF16;
    if (!strcmp(v, "f16")) return SL_F16;
    if (!strcmp(v, "f32")) return SL_F32;
    sl_usage_error("option --dtype: expected bf16, f16 or f32, found '%s'", v);
}

static void parse(int argc, char **argv, merge_options *o)
{
    *o = (merge_options){.dtype = SL_BF16, .max_shard_bytes = 50000000000LL};
    const char **pos[] = {&o->model, &o->adapter, &o->out};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) fputs(USAGE, stdout), rt_finalize(), exit(0);
        if (a[0] != '-') {
            if (npos == 3) sl_usage_error("unexpected argument '%s' (expected MODEL.h5 ADAPTER.h5 OUT.h5; see --help)", a);
            *pos[npos++] = a;
            continue;
        }
        const char *eq = strchr(a, '='), *v = eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const char *name = !strncmp(a, "--hf", len) && len == 4 ? "--hf"
                         : !strncmp(a, "--dtype", len) && len == 7 ? "--dtype"
                         : !strncmp(a, "--max-shard-size", len) && len == 16 ? "--max-shard-size" : NULL;
        if (!name) sl_usage_error("unknown argument '%s' (see --help)", a);
        if (!v || (!eq && !strncmp(v, "--", 2)) || !*v) sl_usage_error("option %s: expected a value", name);
        if (!eq) i++;
        if (!strcmp(name, "--hf")) o->hf_dir = v;
        else if (!strcmp(name, "--dtype")) o->dtype = dtype_arg(v);
        else o->max_shard_bytes = shard_size_arg(v);
    }
    if (npos != 3) sl_usage_error("expected a model file, an adapter file and an output file, found %d arguments (see --help)", npos);
}

/* The merged values must be finite and fit the output type (float16 tops out at 65504); model
 * names the base in messages. */
static void check_values(const char *model, const merge_tensor *t, const float *x, int64_t n, sl_dtype dtype)
{
    int64_t peak = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) sl_fatal("%s: %s: merged value %g at flat index %lld is not finite", model, t->spec.path, x[i], (long long)i);
        if (fabsf(x[i]) > fabsf(x[peak])) peak = i;
    }
    if (dtype == SL_F32 || n == 0) return;
    uint16_t word;
    float back;
    sl_from_f32(&word, &x[peak], dtype, 1);
    sl_to_f32(&back, &word, dtype, 1);
    if (!isfinite(back))
        sl_fatal("%s: %s: merged value %g at flat index %lld is beyond the range of %s (use --dtype f32)", model,
                 t->spec.path, x[peak], (long long)peak, sl_dtype_name(dtype));
}

static int64_t numel(const merge_tensor *t)
{
    return t->spec.ndims == 2 ? t->spec.dims[0] * t->spec.dims[1] : t->spec.dims[0];
}

static char **partials;
static int n_partials;

static void remove_partials(void)
{
    for (int i = 0; i < n_partials; i++) remove(partials[i]);
}

void merge_remove_on_error(const char *path)
{
    if (!partials) atexit(remove_partials);
    partials = realloc(partials, (size_t)(n_partials + 1) * sizeof *partials);
    if (!partials) sl_fatal("out of memory listing the outputs");
    partials[n_partials++] = strdup(path);
}

void merge_outputs_done(void)
{
    for (int i = 0; i < n_partials; i++) free(partials[i]);
    free(partials);
    partials = NULL, n_partials = 0;
}

/* Round k: rank r merges tensor k * ranks + r, then all write the round's tensors to OUT.h5. */
static void merge_all(const merge_inputs *in, merge_h5 *h5, merge_hf *hf)
{
    const int n = in->n_tensors;
    for (int first = 0; first < n; first += RT.world) {
        const int mine = first + RT.rank;
        float *x = NULL;
        if (mine < n) {
            const merge_tensor *t = &in->tensors[mine];
            x = sl_malloc((size_t)numel(t) * sizeof(float), t->spec.path);
            merge_tensor_values(in, t, x);
            check_values(in->o->model, t, x, numel(t), in->o->dtype);
            if (hf) hfout_write(hf, t, x);
        }
        for (int i = first; i < n && i < first + RT.world; i++) h5out_write(h5, &in->tensors[i], i == mine, x);
        free(x);
    }
}

static void summary(const merge_inputs *in, int shards)
{
    const merge_options *o = in->o;
    const sl_lora *l = &in->info.lora;
    int adapted = 0;
    for (int i = 0; i < in->n_tensors; i++) adapted += in->tensors[i].adapted;
    char q[32];
    if (in->quantized)
        log_info("%s is stored quantized (%s): its projections were dequantized before the adapter was folded in; "
                 "the merged model is a float model (%s)", o->model, quant_format_name(&in->quant, q, sizeof q),
                 sl_dtype_name(o->dtype));
    log_info("merged %d adapters of %s (r %d, scale %g, task %s%s) into the %d tensors of %s on %d rank%s", adapted,
             o->adapter, l->r, (double)l->scale, in->info.task, in->info.num_labels > 0 ? ", with its classification head" : "",
             in->n_tensors - (in->info.num_labels > 0), o->model, RT.world, RT.world > 1 ? "s" : "");
    log_info("wrote %s (%s)", o->out, sl_dtype_name(o->dtype));
    if (o->hf_dir)
        log_info("wrote %s: config.json and %d safetensors shard%s (%s)%s", o->hf_dir, shards, shards > 1 ? "s" : "",
                 sl_dtype_name(o->dtype), shards > 1 ? " with model.safetensors.index.json" : "");
}

int main(int argc, char **argv)
{
    rt_init(&argc, &argv, "shardlora-merge");
    merge_options o;
    parse(argc, argv, &o);
    rt_rank0_checks(merge_check, &o);
    merge_inputs in;
    merge_open(&in, &o);
    merge_h5 *h5 = h5out_open(&in);
    merge_hf *hf = o.hf_dir ? hfout_open(&in) : NULL;
    merge_all(&in, h5, hf);
    h5out_finish(h5);
    int shards = hf ? hfout_finish(hf) : 0;
    merge_outputs_done();
    summary(&in, shards);
    merge_close(&in);
    rt_finalize();
    return 0;
}
