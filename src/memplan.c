/* memplan: estimates of what each rank holds at its peak, from the model shape and the options. */
#include "memplan.h"

#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "forward.h"
#include "h5io.h"
#include "runtime.h"
#include "step.h"

double memplan_bytes_per_weight(const char *quant, int blocksize, int double_quant)
{
    if (!strcmp(quant, "none")) return 4.0; /* fp32 on the CPU backend */
    double code = !strcmp(quant, "int8") ? 1.0 : 0.5;
    double stats = double_quant ? 1.0 / blocksize + 4.0 / (256.0 * blocksize) : 4.0 / blocksize;
    return code + stats;
}

static int targets_proj(const char *targets, int proj)
{
    return !strcmp(targets, "all-linear") || strstr(targets, PROJ_NAMES[proj]) != NULL;
}

/* A backend that allocates nothing and adds up what it is asked for; nothing computes through it. */
static int64_t counted;
static const sl_backend *real_backend;
static void *count_alloc(size_t bytes, const char *what)
{
    counted += (int64_t)bytes;
    return (void *)&counted; /* never dereferenced: the pass is only set up and torn down */
}
static void *count_mirror_alloc(size_t bytes, const char *what)
{
    return real_backend->host_memory ? NULL : count_alloc(bytes, what);
}
static void count_release(void *p) {}
static const void *count_mirror(void *buf, const void *host, size_t bytes) { return buf ? buf : host; }

/* Bytes the run's pass allocates on the backend: set up a train step (or an eval forward) of the
 * model's shape with the counting backend in place of BE. */
static int64_t counted_pass_bytes(const sl_config *cfg, const sl_model_config *mc)
{
    sl_model m = {.cfg = *mc};
    sl_lora lora;
    unsigned targets = 0;
    const int train = cfg->command == CMD_TRAIN, T = cfg->micro_batch * cfg->seq_len;
    if (train) {
        lora_parse_targets(cfg->lora_targets, &targets);
        lora_setup(&lora, cfg->lora_r, cfg->lora_alpha, cfg->lora_dropout, cfg->rslora, targets);
        m.lora = &lora;
        m.num_labels = !strcmp(cfg->task, "seq_cls") ? cfg->num_labels : 0;
    }
    sl_backend counting = *BE;
    counting.alloc = count_alloc, counting.release = count_release;
    counting.mirror_alloc = count_mirror_alloc, counting.mirror = count_mirror;
    real_backend = BE, BE = &counting, counted = 0;
    if (train) {
        step_state st;
        step_init(&st, &m, T, cfg->seq_len, cfg->act_ckpt);
        step_free(&st, &m);
    } else {
        forward_state fw;
        forward_init(&fw, &m, T, cfg->seq_len);
        forward_free(&fw);
    }
    BE = real_backend;
    return counted;
}

sl_memplan memplan_compute(const sl_config *cfg, const sl_model_config *mc, int world)
{
    sl_memplan p = {0};
    const int64_t D = mc->hidden_size, F = mc->intermediate_size, V = mc->vocab_size, L = mc->num_layers;
    const int64_t Q = (int64_t)mc->num_heads * mc->head_dim, KV = (int64_t)mc->num_kv_heads * mc->head_dim;
    const int64_t in[N_PROJ] = {D, D, D, Q, D, D, F}, out[N_PROJ] = {Q, KV, KV, D, F, F, D};
    double bpw = memplan_bytes_per_weight(cfg->quant, cfg->blocksize, cfg->double_quant);
    int64_t layer_linear = 0, lora_params = 0;
    for (int k = 0; k < N_PROJ; k++) {
        layer_linear += in[k] * out[k];
        if (cfg->command == CMD_TRAIN && targets_proj(cfg->lora_targets, k))
            lora_params += (int64_t)cfg->lora_r * (in[k] + out[k]);
    }
    int64_t embed = V * D * (mc->tie_word_embeddings ? 1 : 2), norms = (2 * L + 1) * D;
    double base = (double)L * layer_linear * bpw + 4.0 * (double)(embed + norms);
    p.base_shard = (int64_t)(base / world);
    /* full: the largest unit, twice with prefetch; grad_op and none hold every unit gathered */
    int64_t largest_unit = layer_linear > V * D ? layer_linear : V * D;
    const int64_t act = BE->act_bytes; /* gathered weights and activations in the backend's type */
    p.gathered = !strcmp(cfg->shard, "full") ? act * largest_unit * 2 : act * (L * layer_linear + embed + norms);
    /* fp32 master weights, gradients and two AdamW moments, sharded; the full gradient of one unit */
    p.lora_state = 16 * L * lora_params / world;
    p.lora_grad_full = 4 * lora_params;
    p.activations = counted_pass_bytes(cfg, mc);
    p.total = p.base_shard + p.gathered + p.lora_state + p.lora_grad_full + p.activations;
    return p;
}

static void row(const char *what, int64_t bytes)
{
    log_info("  %-44s %10.1f MiB", what, (double)bytes / (1 << 20));
}

void memplan_print(const sl_config *cfg)
{
    if (RT.rank != 0) return;
    hid_t f = h5_open(cfg->model, "model", 0, MPI_COMM_NULL);
    sl_model_config mc;
    modelcfg_read(f, &mc);
    h5_close(f);
    sl_memplan p = memplan_compute(cfg, &mc, RT.world);
    log_info("dry run: %s model, %lld parameters, %d layers; %d ranks; --quant=%s%s --blocksize=%d --shard=%s",
             mc.architecture, (long long)modelcfg_param_count(&mc), mc.num_layers, RT.world, cfg->quant,
             cfg->double_quant ? " --double-quant" : "", cfg->blocksize, cfg->shard);
    log_info("memory plan per rank (estimate, at the peak of a step):");
    row("frozen base weights (this rank's shard)", p.base_shard);
    row("gathered units (compute copy, prefetch)", p.gathered);
    row("LoRA params, grads, AdamW moments (shard)", p.lora_state);
    row("LoRA gradient of one unit before reduce", p.lora_grad_full);
    row("activations, scratch and head buffers", p.activations);
    row("total", p.total);
    log_info("inputs validated; nothing was run (--dry-run)");
}
