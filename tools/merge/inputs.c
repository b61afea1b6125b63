/* The merge's inputs: the base model file and the adapter, checked against each other, and the
 * values of each merged tensor, W + scale * B A. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5io.h"
#include "merge.h"
#include "model.h"
#include "quant_store.h"
#include "runtime.h"
#include "synth.h"

static void list_tensors(merge_inputs *in)
{
    const sl_model_config *c = &in->cfg;
    const int classify = in->info.num_labels > 0, n = modelcfg_tensor_count(c);
    sl_tensor_spec *specs = sl_malloc(sizeof *specs * (size_t)n, "tensor table");
    modelcfg_tensors(c, specs, n);
    in->tensors = sl_calloc((size_t)n + 1, sizeof *in->tensors, "tensor table");
    for (int i = 0; i < n; i++) {
        merge_tensor *t = &in->tensors[i];
        t->spec = specs[i];
        t->adapted = specs[i].kind == TENSOR_LINEAR && (in->info.lora.targets & (1u << specs[i].proj));
        /* a classifier has no LM head in transformers' *ForSequenceClassification */
        if (classify && specs[i].kind == TENSOR_LM_HEAD) continue;
        snprintf(t->hf_name, sizeof t->hf_name, "%s", specs[i].path + 1);
        for (char *p = t->hf_name; *p; p++)
            if (*p == '/') *p = '.';
    }
    in->n_tensors = n;
    if (classify) {
        merge_tensor *h = &in->tensors[in->n_tensors++];
        *h = (merge_tensor){.head = 1, .hf_name = "score.weight",
                            .spec = {.path = SCORE_PATH, .kind = TENSOR_LINEAR, .layer = -1, .proj = -1, .ndims = 2,
                                     .dims = {in->info.num_labels, c->hidden_size}}};
    }
    free(specs);
}

void merge_open(merge_inputs *in, const merge_options *o)
{
    *in = (merge_inputs){.o = o};
    adapter_read_info(o->adapter, &in->info);
    in->model = h5_open(o->model, "model", 0, MPI_COMM_NULL);
    synth_refuse(in->model, "shardlora-merge");
    in->adapter = h5_open(o->adapter, "adapter", 0, MPI_COMM_NULL);
    modelcfg_read(in->model, &in->cfg);
    in->quantized = model_stored_format(o->model, &in->quant);
    list_tensors(in);
}

void merge_close(merge_inputs *in)
{
    h5_close(in->model);
    h5_close(in->adapter);
    free(in->tensors);
    *in = (merge_inputs){.model = -1, .adapter = -1};
}

/* A float matrix of the adapter with the given shape. */
static void expect_matrix(hid_t f, const char *path, int64_t rows, int64_t cols)
{
    const int64_t dims[2] = {rows, cols};
    h5_shape sh = h5_expect_shape(f, path, 2, dims);
    if (!sl_dtype_is_float(sh.dtype))
        sl_fatal("%s: dataset %s has type %s (expected float32)", h5_name(f), path, sl_dtype_name(sh.dtype));
}

/* Every adapter the base's projections take, and the head, with the shapes the base gives them. */
static void check_adapter(const merge_inputs *in)
{
    const sl_lora *l = &in->info.lora;
    if (l->r <= 0)
        sl_fatal("%s: no LoRA adapters (attribute lora_r missing or 0): nothing to merge", in->o->adapter);
    char path[160];
    for (int i = 0; i < in->n_tensors; i++) {
        const merge_tensor *t = &in->tensors[i];
        if (t->head) expect_matrix(in->adapter, SCORE_PATH, t->spec.dims[0], t->spec.dims[1]);
        if (!t->adapted) continue;
        lora_path(path, sizeof path, t->spec.layer, t->spec.proj, 'A');
        expect_matrix(in->adapter, path, l->r, t->spec.dims[1]);
        lora_path(path, sizeof path, t->spec.layer, t->spec.proj, 'B');
        expect_matrix(in->adapter, path, t->spec.dims[0], l->r);
    }
}

/* --hf DIR must be new, empty of checkpoints, or a directory without one: an old model.safetensors
 * beside new shards would be what transformers loads. */
static void check_hf_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) sl_fatal("option --hf: '%s' exists and is not a directory (expected a directory to write the checkpoint into)", dir);
    static const char *const held[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 3; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, held[i]);
        if (access(path, F_OK) == 0)
            sl_fatal("option --hf: '%s' already holds a checkpoint (%s); give a new or empty directory, or remove it first",
                     dir, held[i]);
    }
}

void merge_check(void *options)
{
    const merge_options *o = options;
    rt_expect_regular_file("MODEL", o->model);
    rt_expect_regular_file("ADAPTER", o->adapter);
    sl_model_config mc;
    model_validate(o->model, &mc);
    merge_inputs in;
    merge_open(&in, o);
    if (strcmp(in.info.task, "causal_lm") != 0 && strcmp(in.info.task, "seq_cls") != 0)
        sl_fatal("%s: unknown task '%s' (expected causal_lm or seq_cls)", o->adapter, in.info.task);
    check_adapter(&in);
    if (o->hf_dir) {
        check_hf_dir(o->hf_dir);
        free(config_json_text(&in)); /* an architecture transformers cannot express is refused here */
    }
    merge_close(&in);
}

/* A quantized projection decoded whole into x: the merged model is a float model. */
static void dequantize(const merge_inputs *in, const char *path, const quant_store_info *info, float *x)
{
    const quant_format *f = &info->fmt;
    const int64_t nb = info->nblocks;
    quant_view q = {.codes = sl_malloc((size_t)quant_code_bytes(f, info->n, 0, nb), path)};
    if (f->double_quant) {
        q.absmax_u8 = sl_malloc((size_t)nb, path);
        q.nested_absmax = sl_malloc((size_t)quant_nested_count(f, 0, nb) * sizeof(float), path);
    } else {
        q.absmax = sl_malloc((size_t)nb * sizeof(float), path);
    }
    quant_store_read(in->model, path, info, 0, nb, &q);
    quant_dequant(f, &q, info->n, 0, nb, x);
    free(q.codes), free(q.absmax), free(q.absmax_u8), free(q.nested_absmax);
}

/* W[out, in] += scale * B[out, r] A[r, in], each element's sum in double, so the result does not
 * depend on the thread count. */
static void fold(float *w, const float *a, const float *b, int64_t rows, int64_t cols, int r, double scale)
{
#pragma omp parallel
    {
        double *acc = sl_malloc((size_t)cols * sizeof(double), "merge row");
#pragma omp for schedule(static)
        for (int64_t o = 0; o < rows; o++) {
            memset(acc, 0, (size_t)cols * sizeof(double));
            for (int k = 0; k < r; k++) {
                const double bk = b[o * r + k];
                const float *ak = a + (int64_t)k * cols;
                for (int64_t i = 0; i < cols; i++) acc[i] += bk * ak[i];
            }
            float *wo = w + o * cols;
            for (int64_t i = 0; i < cols; i++) wo[i] = (float)(wo[i] + scale * acc[i]);
        }
        free(acc);
    }
}

static void fold_adapter(const merge_inputs *in, const merge_tensor *t, float *x)
{
    const sl_lora *l = &in->info.lora;
    const int64_t rows = t->spec.dims[0], cols = t->spec.dims[1];
    float *a = sl_malloc((size_t)(l->r * cols) * sizeof(float), "lora_A");
    float *b = sl_malloc((size_t)(rows * l->r) * sizeof(float), "lora_B");
    char path[160];
    lora_path(path, sizeof path, t->spec.layer, t->spec.proj, 'A');
    h5_read(in->adapter, path, SL_F32, a);
    lora_path(path, sizeof path, t->spec.layer, t->spec.proj, 'B');
    h5_read(in->adapter, path, SL_F32, b);
    fold(x, a, b, rows, cols, l->r, l->scale);
    free(a), free(b);
}

void merge_tensor_values(const merge_inputs *in, const merge_tensor *t, float *x)
{
    quant_store_info info;
    if (t->head) h5_read(in->adapter, SCORE_PATH, SL_F32, x);
    else if (t->spec.kind == TENSOR_LINEAR && quant_store_probe(in->model, t->spec.path, &info))
        dequantize(in, t->spec.path, &info, x);
    else h5_read(in->model, t->spec.path, SL_F32, x);
    if (t->adapted) fold_adapter(in, t, x);
}
