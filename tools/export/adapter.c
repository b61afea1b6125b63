/* Reading an adapter (or a checkpoint, which holds the same /lora and /score datasets) for export:
 * its attributes, and its tensors named as PEFT names the modules of LlamaForCausalLM and
 * LlamaForSequenceClassification. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "h5io.h"
#include "model.h"
#include "runtime.h"

#define LORA_GROUP "/lora"
#define PEFT_PREFIX "base_model.model."

static void add_tensor(export_adapter *a, const char *h5_path, char *name)
{
    h5_shape sh = h5_shape_of(a->file, h5_path);
    if (sh.ndims != 2)
        sl_fatal("%s: dataset %s has %d dimensions (expected a 2-D matrix)", a->path, h5_path, sh.ndims);
    if (sh.dtype != SL_F32 && sh.dtype != SL_F16 && sh.dtype != SL_BF16)
        sl_fatal("%s: dataset %s is not a float dataset (expected float32)", a->path, h5_path);
    a->tensors = realloc(a->tensors, (size_t)(a->n_tensors + 1) * sizeof *a->tensors);
    if (!a->tensors) sl_fatal("out of memory listing the tensors of %s", a->path);
    export_tensor *t = &a->tensors[a->n_tensors++];
    *t = (export_tensor){.h5_path = strdup(h5_path), .name = name, .ndims = 2, .n = sh.n};
    memcpy(t->dims, sh.dims, sizeof t->dims);
}

typedef struct {
    export_adapter *a;
    const char *rel;
} lora_arg;

/* "/lora/model/layers/3/mlp/up_proj/lora_B" -> "base_model.model.model.layers.3.mlp.up_proj.lora_B.weight";
 * the rank must sit where PEFT puts it: lora_A [r, in], lora_B [out, r]. */
static void add_lora(void *arg)
{
    export_adapter *a = ((const lora_arg *)arg)->a;
    const char *rel = ((const lora_arg *)arg)->rel;
    char h5_path[1024];
    snprintf(h5_path, sizeof h5_path, "%s/%s", LORA_GROUP, rel);
    if (h5_is_group(a->file, h5_path)) return;
    const char *leaf = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    int is_a = strcmp(leaf, "lora_A") == 0;
    if (!is_a && strcmp(leaf, "lora_B") != 0)
        sl_fatal("%s: dataset %s is not a LoRA matrix (expected names lora_A and lora_B)", a->path, h5_path);
    size_t len = strlen(PEFT_PREFIX) + strlen(rel) + sizeof ".weight";
    char *name = malloc(len);
    if (!name) sl_fatal("out of memory");
    snprintf(name, len, PEFT_PREFIX "%s.weight", rel);
    for (char *c = name + strlen(PEFT_PREFIX); *c; c++)
        if (*c == '/') *c = '.';
    add_tensor(a, h5_path, name);
    const export_tensor *t = &a->tensors[a->n_tensors - 1];
    if (t->dims[is_a ? 0 : 1] != a->r)
        sl_fatal("%s: %s has shape [%lld, %lld] but lora_r is %d (expected lora_A [r, in], lora_B [out, r])",
                 a->path, h5_path, (long long)t->dims[0], (long long)t->dims[1], a->r);
}

/* sl_fatal must not exit from inside an HDF5 iteration (HDF5 then crashes as it shuts down): the
 * work runs under rt_try, and the walk stops with the message kept here. */
static char walk_error[4096];

static herr_t visit_lora(hid_t group, const char *rel, const H5L_info_t *info, void *data)
{
    (void)group;
    if (info->type != H5L_TYPE_HARD) return 0;
    lora_arg arg = {.a = data, .rel = rel};
    return rt_try(add_lora, &arg, walk_error, sizeof walk_error) ? 0 : -1;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(((const export_tensor *)x)->name, ((const export_tensor *)y)->name);
}

static void list_tensors(export_adapter *a)
{
    if (!h5_is_group(a->file, LORA_GROUP))
        sl_fatal("%s: no %s group (the file holds no LoRA adapters)", a->path, LORA_GROUP);
    walk_error[0] = 0;
    if (H5Lvisit_by_name(a->file, LORA_GROUP, H5_INDEX_NAME, H5_ITER_INC, visit_lora, a, H5P_DEFAULT) < 0) {
        if (walk_error[0]) sl_fatal("%s", walk_error);
        sl_fatal("%s: cannot walk the group %s (damaged file?)", a->path, LORA_GROUP);
    }
    if (a->n_tensors == 0) sl_fatal("%s: the group %s holds no LoRA matrices", a->path, LORA_GROUP);
    if (strcmp(a->task, "seq_cls") == 0) {
        if (!h5_has(a->file, SCORE_PATH))
            sl_fatal("%s: task is seq_cls but the classification head %s is missing", a->path, SCORE_PATH);
        add_tensor(a, SCORE_PATH, strdup(PEFT_PREFIX "score.weight"));
        const export_tensor *t = &a->tensors[a->n_tensors - 1];
        if (t->dims[0] != a->num_labels)
            sl_fatal("%s: %s has %lld rows but num_labels is %d", a->path, SCORE_PATH, (long long)t->dims[0],
                     a->num_labels);
    }
    qsort(a->tensors, (size_t)a->n_tensors, sizeof *a->tensors, by_name);
}

static void read_attributes(export_adapter *a)
{
    hid_t f = a->file;
    a->kind = h5_has_attr(f, "/", "shardlora_kind") ? h5_attr_string(f, "/", "shardlora_kind") : strdup("none");
    if (strcmp(a->kind, "adapter") != 0 && strcmp(a->kind, "checkpoint") != 0)
        sl_fatal("%s: not an adapter or a checkpoint (root attribute shardlora_kind is '%s'; expected "
                 "'adapter' as written to OUT/adapter.h5 by shardlora train)", a->path, a->kind);
    if (!h5_has_attr(f, "/", "lora_r"))
        sl_fatal("%s: no LoRA attributes (lora_r missing): nothing PEFT can load as a LoRA adapter", a->path);
    a->task = h5_attr_string(f, "/", "task");
    if (strcmp(a->task, "causal_lm") != 0 && strcmp(a->task, "seq_cls") != 0)
        sl_fatal("%s: unknown task '%s' (expected causal_lm or seq_cls)", a->path, a->task);
    a->num_labels = (int)h5_attr_int(f, "/", "num_labels");
    a->r = (int)h5_attr_int(f, "/", "lora_r");
    a->alpha = h5_attr_double(f, "/", "lora_alpha");
    a->dropout = h5_attr_double(f, "/", "lora_dropout");
    a->rslora = (int)h5_attr_int(f, "/", "rslora");
    a->target_modules = h5_attr_string(f, "/", "target_modules");
    a->base_model = h5_attr_string(f, "/", "base_model");
}

void export_adapter_open(const char *path, export_adapter *a)
{
    *a = (export_adapter){.path = path, .file = h5_open(path, "adapter", 0, MPI_COMM_NULL)};
    read_attributes(a);
    list_tensors(a);
}

void export_tensor_read(const export_adapter *a, const export_tensor *t, float *buf)
{
    h5_read(a->file, t->h5_path, SL_F32, buf);
}

void export_adapter_close(export_adapter *a)
{
    h5_close(a->file);
    for (int i = 0; i < a->n_tensors; i++) free(a->tensors[i].h5_path), free(a->tensors[i].name);
    free(a->tensors);
    free(a->kind), free(a->task), free(a->target_modules), free(a->base_model);
    *a = (export_adapter){.file = -1};
}

/* What PEFT should load the base from: the Hugging Face directory the base model file was imported
 * from (its root attribute source, when source_format is hf-safetensors), else the model file path. */
char *export_base_model_name(const export_adapter *a)
{
    char *name = NULL;
    if (access(a->base_model, R_OK) == 0 && H5Fis_hdf5(a->base_model) > 0) {
        hid_t f = H5Fopen(a->base_model, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0 && h5_has_attr(f, "/", "source") && h5_has_attr(f, "/", "source_format")) {
            char *format = h5_attr_string(f, "/", "source_format");
            if (strcmp(format, "hf-safetensors") == 0) name = h5_attr_string(f, "/", "source");
            free(format);
        }
        if (f >= 0) H5Fclose(f);
    }
    if (!name)
        log_warn("base model file '%s' is not readable or was not imported from a Hugging Face directory: "
                 "base_model_name_or_path is the file's path; pass --base-model NAME to name the Hugging Face "
                 "model (a hub id or directory)", a->base_model);
    return name ? name : strdup(a->base_model);
}
