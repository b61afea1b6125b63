/* hf: import a Hugging Face checkpoint directory (config.json and model.safetensors, or shards
 * listed by model.safetensors.index.json), float or with bitsandbytes 4-bit or 8-bit projections (bnb.c).
 * Every tensor is located and checked before the output is created; then tensors are copied one
 * at a time. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hf.h"
#include "runtime.h"

struct hf_checkpoint {
    const char *dir;
    cJSON *index;     /* model.safetensors.index.json, or NULL for a single model.safetensors */
    char index_path[PATH_MAX];
    st_file *shards;
    char **shard_names; /* as the index names them */
    int n_shards;
};

static void add_shard(hf_checkpoint *ck, const char *name)
{
    for (int i = 0; i < ck->n_shards; i++)
        if (strcmp(ck->shard_names[i], name) == 0) return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", ck->dir, name);
    ck->shards = realloc(ck->shards, sizeof *ck->shards * (size_t)(ck->n_shards + 1));
    ck->shard_names = realloc(ck->shard_names, sizeof *ck->shard_names * (size_t)(ck->n_shards + 1));
    if (!ck->shards || !ck->shard_names) sl_fatal("out of memory for the shard list");
    st_open(&ck->shards[ck->n_shards], path);
    ck->shard_names[ck->n_shards++] = strdup(name);
}

static void open_checkpoint(hf_checkpoint *ck, const char *dir)
{
    memset(ck, 0, sizeof *ck);
    ck->dir = dir;
    snprintf(ck->index_path, sizeof ck->index_path, "%s/model.safetensors.index.json", dir);
    struct stat sb;
    if (stat(ck->index_path, &sb) != 0) {
        char single[PATH_MAX];
        snprintf(single, sizeof single, "%s/model.safetensors", dir);
        if (stat(single, &sb) != 0)
            sl_fatal("%s: neither model.safetensors nor model.safetensors.index.json found (only safetensors "
                     "checkpoints are supported: convert pytorch_model.bin first)", dir);
        add_shard(ck, "model.safetensors");
        return;
    }
    ck->index = json_read_file(ck->index_path, "safetensors index");
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(ck->index, "weight_map");
    if (!cJSON_IsObject(map) || !map->child)
        sl_fatal("%s: 'weight_map' is missing or empty (expected {tensor name: shard file})", ck->index_path);
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/'))
            sl_fatal("%s: weight_map entry %s must name a file in the same directory", ck->index_path, e->string);
        add_shard(ck, e->valuestring);
    }
}

static void close_checkpoint(hf_checkpoint *ck)
{
    for (int i = 0; i < ck->n_shards; i++) {
        st_close(&ck->shards[i]);
        free(ck->shard_names[i]);
    }
    free(ck->shards);
    free(ck->shard_names);
    cJSON_Delete(ck->index);
}

/* The shard that should hold a tensor, or NULL when the index does not list it. */
static const st_file *shard_for(const hf_checkpoint *ck, const char *name)
{
    if (!ck->index) return &ck->shards[0];
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(ck->index, "weight_map");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(map, name);
    if (!file) return NULL;
    for (int i = 0; i < ck->n_shards; i++)
        if (strcmp(ck->shard_names[i], file->valuestring) == 0) return &ck->shards[i];
    return NULL;
}

int hf_find(const hf_checkpoint *ck, const char *name, hf_source *src)
{
    src->shard = shard_for(ck, name);
    return src->shard && st_find(src->shard, name, &src->t);
}

const char *hf_listing(const hf_checkpoint *ck) { return ck->index ? ck->index_path : ck->shards[0].path; }

void hf_name(char *buf, size_t len, const char *path)
{
    snprintf(buf, len, "%s", path + 1);
    for (char *p = buf; *p; p++)
        if (*p == '/') *p = '.';
}

static void format_dims(char *buf, size_t len, int ndims, const int64_t *dims)
{
    int n = snprintf(buf, len, "[");
    for (int i = 0; i < ndims; i++) n += snprintf(buf + n, len - (size_t)n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    snprintf(buf + n, len - (size_t)n, "]");
}

static void check_shape(const st_file *st, const st_tensor *t, const sl_tensor_spec *spec)
{
    int same = t->ndims == spec->ndims;
    for (int i = 0; same && i < spec->ndims; i++) same = t->dims[i] == spec->dims[i];
    if (same) return;
    char want[64], found[160];
    format_dims(want, sizeof want, spec->ndims, spec->dims);
    format_dims(found, sizeof found, t->ndims, t->dims);
    sl_fatal("%s: tensor %s has shape %s, expected %s from config.json", st->path, t->name, found, want);
}

/* Find and check the source of one tensor of the table. */
static hf_source locate(const hf_checkpoint *ck, const sl_tensor_spec *spec)
{
    char name[128];
    hf_name(name, sizeof name, spec->path);
    hf_source src;
    const char *hint = spec->kind == TENSOR_LM_HEAD ? " (config.json has tie_word_embeddings false, so the "
                                                      "LM head must be stored)" : "";
    if (!hf_find(ck, name, &src))
        sl_fatal("%s: tensor %s is missing%s", src.shard ? src.shard->path : hf_listing(ck), name, hint);
    if (src.t.dtype == SL_DTYPE_OTHER)
        sl_fatal("%s: tensor %s has dtype %s (supported: F32, F16, BF16)", src.shard->path, name, src.t.dtype_name);
    check_shape(src.shard, &src.t, spec);
    return src;
}

static void check_directory(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) sl_fatal("model directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) sl_fatal("%s is not a directory (expected a Hugging Face model directory)", dir);
}

/* Where each tensor of the table comes from: a float tensor, or (bnb[i] set) a bitsandbytes weight. */
typedef struct {
    hf_source *src;
    bnb_weight *bnb; /* NULL for a float checkpoint */
    int bits;           /* 4 or 8 with bnb */
    quant_format quant; /* the 4-bit weights' common format */
    int used;           /* stored tensors the model reads */
} hf_plan;

static void plan_bnb_weight(const hf_checkpoint *ck, const sl_tensor_spec *spec, hf_plan *p, int i,
                            const import_options *opt)
{
    bnb_locate(ck, spec, p->bits, &p->bnb[i]);
    p->used += bnb_tensor_count(&p->bnb[i]);
    if (p->bits == 8) return; /* dequantized: a float weight from here on */
    const quant_format *f = &p->bnb[i].info.fmt;
    char first[32], here[32];
    if (opt->quant.type != QUANT_NONE)
        sl_fatal("%s: the checkpoint is already quantized (%s, bitsandbytes); --quantize applies to float "
                 "checkpoints only", hf_listing(ck), quant_format_name(f, here, sizeof here));
    if (p->quant.type == QUANT_NONE) p->quant = *f;
    else if (memcmp(&p->quant, f, sizeof *f) != 0)
        sl_fatal("%s: tensor %s is quantized as %s but the ones before it as %s (a model file holds one format)",
                 p->bnb[i].packed.shard->path, p->bnb[i].packed.t.name, quant_format_name(f, here, sizeof here),
                 quant_format_name(&p->quant, first, sizeof first));
}

static void plan_sources(const hf_checkpoint *ck, const sl_tensor_spec *specs, int n, int bnb_bits,
                         const import_options *opt, hf_plan *p)
{
    p->src = sl_calloc((size_t)n, sizeof *p->src, "tensor sources");
    p->bnb = bnb_bits ? sl_calloc((size_t)n, sizeof *p->bnb, "bitsandbytes weights") : NULL;
    p->bits = bnb_bits;
    p->quant = (quant_format){.type = QUANT_NONE};
    p->used = 0;
    for (int i = 0; i < n; i++) {
        if (bnb_bits && specs[i].kind == TENSOR_LINEAR) {
            plan_bnb_weight(ck, &specs[i], p, i, opt);
            continue;
        }
        p->src[i] = locate(ck, &specs[i]);
        p->used++;
    }
}

static void copy_tensors(const hf_plan *p, const sl_tensor_spec *specs, int n, import_writer *w)
{
    for (int i = 0; i < n; i++) {
        if (p->bnb && specs[i].kind == TENSOR_LINEAR) {
            bnb_copy(&p->bnb[i], &specs[i], w);
            continue;
        }
        const hf_source *src = &p->src[i];
        void *buf = sl_malloc((size_t)src->t.nbytes, specs[i].path);
        st_read(src->shard, &src->t, buf);
        char where[PATH_MAX + 160];
        snprintf(where, sizeof where, "%s: tensor %s", src->shard->path, src->t.name);
        writer_tensor(w, &specs[i], src->t.dtype, buf, where);
        free(buf);
    }
}

/* The directory's own name, used as the model's name. */
static char *dir_basename(const char *dir)
{
    char *s = strdup(dir);
    size_t len = strlen(s);
    while (len > 1 && s[len - 1] == '/') s[--len] = 0;
    const char *slash = strrchr(s, '/');
    char *name = strdup(slash && slash[1] ? slash + 1 : s);
    free(s);
    return name;
}

void import_hf(const char *dir, const char *out_path, const import_options *opt)
{
    check_directory(dir);
    sl_model_config cfg;
    hfconfig_read(dir, &cfg);
    hf_checkpoint ck;
    open_checkpoint(&ck, dir);
    int n = modelcfg_tensor_count(&cfg);
    sl_tensor_spec *specs = sl_malloc(sizeof *specs * (size_t)n, "tensor table");
    modelcfg_tensors(&cfg, specs, n);
    hf_plan plan;
    plan_sources(&ck, specs, n, bnb_checkpoint(dir), opt, &plan);

    char source[PATH_MAX], *name = dir_basename(dir);
    import_origin origin = {realpath(dir, source) ? source : dir, "hf-safetensors", name};
    import_options out_opt = *opt;
    if (plan.bits == 4) out_opt.quant = plan.quant; /* the file is pre-quantized in the checkpoint's format */
    import_writer *w = writer_open(out_path, &out_opt, &origin, &cfg);
    copy_tensors(&plan, specs, n, w);
    int stored = 0;
    for (int i = 0; i < ck.n_shards; i++) stored += ck.shards[i].n_tensors;
    if (stored > plan.used)
        log_info("ignored %d tensors that the model does not use (e.g. rotary tables)", stored - plan.used);
    writer_finish(w);
    free(name);
    free(plan.src);
    free(plan.bnb);
    free(specs);
    close_checkpoint(&ck);
}
