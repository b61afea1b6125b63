/* model: validation and sharded loading of a model file. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "quant_store.h"
#include "runtime.h"
#include "synth.h"

int model_stored_format(const char *path, quant_format *fmt)
{
    hid_t f = h5_open(path, "model", 0, MPI_COMM_NULL);
    quant_store_info info;
    int stored = quant_store_probe(f, "/model/layers/0/self_attn/q_proj/weight", &info);
    h5_close(f);
    if (stored) *fmt = info.fmt;
    return stored;
}

const char *model_choose_format(const char *path, const quant_format *asked, quant_format *fmt)
{
    static char msg[512];
    *fmt = *asked;
    quant_format stored;
    if (!model_stored_format(path, &stored)) return NULL;
    *fmt = stored;
    if (asked->type == QUANT_NONE || !memcmp(asked, &stored, sizeof stored)) return NULL;
    char a[32], b[32];
    snprintf(msg, sizeof msg, "%s is stored quantized as %s, but the options ask for %s (drop --quant or match it)",
             path, quant_format_name(&stored, a, sizeof a), quant_format_name(asked, b, sizeof b));
    return msg;
}

void model_load_of_run(sl_model *m, const sl_config *cfg)
{
    quant_format fmt;
    model_format_of_run(cfg, &fmt);
    model_load(m, cfg->model, &fmt, model_keep_of(cfg->shard));
}

const char *model_format_of_run(const sl_config *cfg, quant_format *fmt)
{
    quant_format asked;
    const char *problem = config_quant(cfg, &asked);
    return problem ? problem : model_choose_format(cfg->model, &asked, fmt);
}

void model_validate(const char *path, sl_model_config *cfg)
{
    hid_t f = h5_open(path, "model", 0, MPI_COMM_NULL);
    modelcfg_read(f, cfg);
    synth_recipe recipe;
    if (synth_recipe_of(f, &recipe)) { /* no weights to check: they are made at load */
        h5_close(f);
        return;
    }
    int n = modelcfg_tensor_count(cfg);
    sl_tensor_spec *t = sl_malloc(sizeof *t * (size_t)n, "tensor table");
    modelcfg_tensors(cfg, t, n);
    quant_format first = {QUANT_NONE, 0, 0};
    int quantized = 0;
    for (int i = 0; i < n; i++) {
        quant_store_info info;
        if (t[i].kind == TENSOR_LINEAR && quant_store_probe(f, t[i].path, &info)) {
            char a[32], b[32];
            if (info.shape[0] != t[i].dims[0] || info.shape[1] != t[i].dims[1])
                sl_fatal("%s: quantized weight %s has the wrong shape (expected [%lld, %lld], found [%lld, %lld])", path,
                         t[i].path, (long long)t[i].dims[0], (long long)t[i].dims[1], (long long)info.shape[0],
                         (long long)info.shape[1]);
            if (quantized++ && memcmp(&info.fmt, &first, sizeof first) != 0)
                sl_fatal("%s: %s is quantized as %s but earlier weights as %s (expected one format)", path, t[i].path,
                         quant_format_name(&info.fmt, a, sizeof a), quant_format_name(&first, b, sizeof b));
            first = info.fmt;
            continue;
        }
        h5_shape sh = h5_expect_shape(f, t[i].path, t[i].ndims, t[i].dims);
        if (!sl_dtype_is_float(sh.dtype))
            sl_fatal("%s: dataset %s has type %s (expected float32, float16 or bfloat16)", path, t[i].path,
                     sl_dtype_name(sh.dtype));
    }
    free(t);
    h5_close(f);
}

static void add_tensor(fsdp_pool *p, const sl_tensor_spec *t) { fsdp_pool_add(p, t->path, t->ndims, t->dims); }

/* Tensors are in file order: embedding, each layer's, final norm, lm_head. */
static void plan_units(sl_model *m, const quant_format *fmt, fsdp_keep keep)
{
    const int L = m->cfg.num_layers;
    m->n_units = L + 2;
    m->units = sl_calloc((size_t)m->n_units, sizeof *m->units, "units");
    snprintf(m->units[0].name, sizeof m->units[0].name, "embedding");
    snprintf(m->units[L + 1].name, sizeof m->units[L + 1].name, "head");
    for (int l = 0; l < L; l++) snprintf(m->units[1 + l].name, sizeof m->units[1 + l].name, "layer %d", l);
    for (int i = 0; i < m->n_tensors; i++) {
        const sl_tensor_spec *t = &m->tensors[i];
        int u = t->kind == TENSOR_EMBEDDING ? 0 : t->layer >= 0 ? 1 + t->layer : L + 1;
        if (t->kind == TENSOR_LINEAR && fmt->type != QUANT_NONE) qpool_add(&m->units[u].quant, t->path, t->ndims, t->dims);
        else add_tensor(&m->units[u].frozen, t);
    }
    for (int u = 0; u < m->n_units; u++) {
        fsdp_pool_plan(&m->units[u].frozen);
        qpool_plan(&m->units[u].quant, fmt);
        m->units[u].frozen.keep = keep;
        m->units[u].frozen.frozen = 1;
        m->units[u].quant.keep = (int)keep;
    }
}

void model_add_trainable(sl_model *m, const sl_lora *lora, int num_labels)
{
    m->lora = lora;
    m->num_labels = num_labels;
    for (int l = 0; lora && l < m->cfg.num_layers; l++) lora_add_to_pool(lora, &m->cfg, l, &m->units[1 + l].train);
    if (num_labels > 0) {
        const int64_t dims[2] = {num_labels, m->cfg.hidden_size};
        fsdp_pool_add(&m->units[m->n_units - 1].train, SCORE_PATH, 2, dims);
    }
    for (int u = 0; u < m->n_units; u++) fsdp_pool_plan(&m->units[u].train);
}

int64_t model_trainable_shard_numel(const sl_model *m)
{
    int64_t n = 0;
    for (int u = 0; u < m->n_units; u++) n += m->units[u].train.shard_numel;
    return n;
}

void model_bind_trainable(sl_model *m, float *host, float *dev, float *grad)
{
    for (int u = 0; u < m->n_units; u++) {
        fsdp_pool *p = &m->units[u].train;
        const int64_t n = p->shard_numel;
        p->shard = host, host += n;
        p->shard_dev = dev, dev += n;
        p->grad_shard = grad;
        if (grad) grad += n;
    }
}

fsdp_keep model_keep_of(const char *shard)
{
    return !strcmp(shard, "none") ? KEEP_FOR_RUN : !strcmp(shard, "grad_op") ? KEEP_PER_STEP : KEEP_PER_USE;
}

void model_load(sl_model *m, const char *path, const quant_format *fmt, fsdp_keep keep)
{
    memset(m, 0, sizeof *m);
    hid_t f = h5_open(path, "model", 0, MPI_COMM_WORLD);
    modelcfg_read(f, &m->cfg);
    m->n_tensors = modelcfg_tensor_count(&m->cfg);
    m->tensors = sl_malloc(sizeof *m->tensors * (size_t)m->n_tensors, "tensor table");
    modelcfg_tensors(&m->cfg, m->tensors, m->n_tensors);
    plan_units(m, fmt, keep);
    int64_t before = h5_bytes_read();
    double t0 = rt_now();
    staging st = staging_open(STAGING_BYTES);
    weights_first_bad bad = weights_no_bad();
    for (int u = 0; u < m->n_units; u++) {
        fsdp_pool_load_frozen(&m->units[u].frozen, f, &st, &bad);
        if (m->units[u].quant.n_members) qpool_load(&m->units[u].quant, f, &st);
    }
    weights_agree_finite(f, &bad);
    staging_close(&st);
    m->bytes_read = h5_bytes_read() - before;
    h5_close(f);
    double s = rt_now() - t0;
    log_info("model: read %.3f GB of weights on rank 0 in %.2f s (%.0f MB/s)", (double)m->bytes_read / 1e9, s,
             (double)m->bytes_read / 1e6 / (s > 0 ? s : 1e-9));
}

void model_free(sl_model *m)
{
    for (int u = 0; u < m->n_units; u++) fsdp_unit_free(&m->units[u]);
    free(m->units);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}
