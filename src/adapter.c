/* adapter: collective writing and reading of adapter files. */
#include "adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "h5io.h"
#include "runtime.h"

static void targets_string(unsigned mask, char *buf, size_t len)
{
    buf[0] = 0;
    for (int p = 0; p < N_PROJ; p++)
        if (mask & (1u << p)) snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? "," : "", PROJ_NAMES[p]);
}

void adapter_write_attributes(hid_t f, const sl_model *m, const sl_config *cfg, const char *kind)
{
    char targets[128] = "";
    h5_set_attr_string(f, "/", "shardlora_kind", kind);
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "shardlora_version", sl_version());
    h5_set_attr_string(f, "/", "base_model", cfg->model);
    h5_set_attr_string(f, "/", "task", m->num_labels > 0 ? "seq_cls" : "causal_lm");
    h5_set_attr_int(f, "/", "num_labels", m->num_labels);
    if (!m->lora) return;
    targets_string(m->lora->targets, targets, sizeof targets);
    h5_set_attr_int(f, "/", "lora_r", m->lora->r);
    h5_set_attr_double(f, "/", "lora_alpha", m->lora->alpha);
    h5_set_attr_double(f, "/", "lora_dropout", m->lora->dropout);
    h5_set_attr_int(f, "/", "rslora", m->lora->rslora);
    h5_set_attr_string(f, "/", "target_modules", targets);
    h5_set_attr_double(f, "/", "scale", m->lora->scale);
}

void adapter_write(const sl_model *m, const sl_config *cfg, const char *path, const char *kind)
{
    hid_t f = h5_create(path, kind, MPI_COMM_WORLD);
    adapter_write_attributes(f, m, cfg, kind);
    for (int u = 0; u < m->n_units; u++) {
        const fsdp_pool *p = &m->units[u].train;
        for (int i = 0; i < p->n_members; i++)
            h5_create_dataset(f, p->members[i].path, SL_F32, p->members[i].ndims, p->members[i].dims);
        fsdp_pool_write(p, f);
    }
    config_write(cfg, f, "/shardlora/options");
    h5_close(f);
}

void adapter_read_info(const char *path, adapter_info *info)
{
    memset(info, 0, sizeof *info);
    hid_t f = h5_open(path, "adapter", 0, MPI_COMM_NULL);
    char *kind = h5_has_attr(f, "/", "shardlora_kind") ? h5_attr_string(f, "/", "shardlora_kind") : strdup("none");
    if (strcmp(kind, "adapter") != 0)
        sl_fatal("%s: not an adapter file (expected shardlora_kind 'adapter', found '%s')", path, kind);
    free(kind);
    char *task = h5_attr_string(f, "/", "task");
    snprintf(info->task, sizeof info->task, "%s", task);
    free(task);
    info->num_labels = (int)h5_attr_int(f, "/", "num_labels");
    if (h5_has_attr(f, "/", "lora_r")) {
        char *targets = h5_attr_string(f, "/", "target_modules");
        unsigned mask;
        const char *problem = lora_parse_targets(targets, &mask);
        if (problem) sl_fatal("%s: attribute target_modules: %s", path, problem);
        free(targets);
        lora_setup(&info->lora, (int)h5_attr_int(f, "/", "lora_r"), h5_attr_double(f, "/", "lora_alpha"),
                   h5_attr_double(f, "/", "lora_dropout"), (int)h5_attr_int(f, "/", "rslora"), mask);
    }
    h5_close(f);
}

void adapter_load(sl_model *m, const char *path)
{
    hid_t f = h5_open(path, "adapter", 0, MPI_COMM_WORLD);
    for (int u = 0; u < m->n_units; u++) {
        const fsdp_pool *p = &m->units[u].train;
        for (int i = 0; i < p->n_members; i++) h5_expect_shape(f, p->members[i].path, p->members[i].ndims, p->members[i].dims);
        fsdp_pool_load(&m->units[u].train, f);
    }
    h5_close(f);
}

void adapter_apply(sl_model *m, const char *path, adapter_applied *a)
{
    adapter_read_info(path, &a->info);
    adapter_apply_state(m, path, &a->info.lora, a->info.num_labels, a);
}

void adapter_apply_state(sl_model *m, const char *path, const sl_lora *lora, int num_labels, adapter_applied *a)
{
    model_add_trainable(m, lora, num_labels);
    const size_t bytes = (size_t)model_trainable_shard_numel(m) * sizeof(float);
    a->host = sl_calloc(bytes, 1, "adapter");
    model_bind_trainable(m, a->host, a->host, NULL);
    adapter_load(m, path);
    a->dev = BE->mirror_alloc(bytes, "adapter");
    model_bind_trainable(m, a->host, (float *)BE->mirror(a->dev, a->host, bytes), NULL);
}

void adapter_applied_free(adapter_applied *a)
{
    BE->release(a->dev);
    free(a->host);
    a->host = NULL, a->dev = NULL;
}
