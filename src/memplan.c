/* memplan: estimates of what each rank holds at its peak, from the model shape and the options. */
#include "memplan.h"

#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "forward.h"
#include "h5io.h"
#include "model.h"
#include "runtime.h"
#include "step.h"

double memplan_bytes_per_weight(const char *quant, int blocksize, int double_quant)
{
    if (!strcmp(quant, "none")) return BE->act_bytes; /* where the backend computes, in its type */
    double code = !strcmp(quant, "int8") ? 1.0 : 0.5;
    double stats = double_quant ? 1.0 / blocksize + 4.0 / (256.0 * blocksize) : 4.0 / blocksize;
    return code + stats;
}

static int targets_proj(const char *targets, int proj)
{
    return !strcmp(targets, "all-linear") || strstr(targets, PROJ_NAMES[proj]) != NULL;
}

/* A backend that allocates nothing and adds up what it is asked for, in its own memory and in host
 * memory for offload; nothing computes through it. */
static int64_t counted, counted_host;
static const sl_backend *real_backend;
static void *count_alloc(size_t bytes, const char *what)
{
    counted += (int64_t)bytes;
    return (void *)&counted; /* never dereferenced: the pass is only set up and torn down */
}
static void *count_host_alloc(size_t bytes, const char *what)
{
    counted_host += (int64_t)bytes;
    return (void *)&counted_host;
}
static void *count_mirror_alloc(size_t bytes, const char *what)
{
    return real_backend->host_memory ? NULL : count_alloc(bytes, what);
}
static void count_release(void *p) {}
static const void *count_mirror(void *buf, const void *host, size_t bytes) { return buf ? buf : host; }

/* Bytes the run's pass allocates on the backend (and into *host, offloaded): set up a train step
 * (or an eval forward) of the model's shape with the counting backend in place of BE. */
static int64_t counted_pass_bytes(const sl_config *cfg, const sl_model_config *mc, int act_ckpt, int64_t *host)
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
    counting.host_alloc = count_host_alloc, counting.host_release = count_release;
    counting.mirror_alloc = count_mirror_alloc, counting.mirror = count_mirror;
    real_backend = BE, BE = &counting, counted = 0, counted_host = 0;
    if (train) {
        step_state st;
        step_init(&st, &m, T, cfg->seq_len, act_ckpt, cfg->act_offload);
        step_free(&st, &m);
    } else {
        forward_state fw;
        forward_init(&fw, &m, T, cfg->seq_len);
        forward_free(&fw);
    }
    BE = real_backend;
    *host = counted_host;
    return counted;
}

sl_memplan memplan_compute(const sl_config *cfg, const sl_model_config *mc, int world, int act_ckpt)
{
    sl_memplan p = {0};
    const int64_t D = mc->hidden_size, F = mc->intermediate_size, V = mc->vocab_size, L = mc->num_layers;
    const int64_t Q = (int64_t)mc->num_heads * mc->head_dim, KV = (int64_t)mc->num_kv_heads * mc->head_dim;
    const int64_t in[N_PROJ] = {D, D, D, Q, D, D, F}, out[N_PROJ] = {Q, KV, KV, D, F, F, D};
    const int quantized = strcmp(cfg->quant, "none") != 0;
    const int comm = world > 1 || strcmp(cfg->comm, "auto") != 0; /* collectives run (comm.h) */
    const double bpw = memplan_bytes_per_weight(cfg->quant, cfg->blocksize, cfg->double_quant);
    int64_t layer_linear = 0, lora_params = 0;
    for (int k = 0; k < N_PROJ; k++) {
        layer_linear += in[k] * out[k];
        if (cfg->command == CMD_TRAIN && targets_proj(cfg->lora_targets, k))
            lora_params += (int64_t)cfg->lora_r * (in[k] + out[k]);
    }
    const int64_t embed = V * D * (mc->tie_word_embeddings ? 1 : 2), norms = (2 * L + 1) * D;
    const int64_t act = BE->act_bytes; /* gathered weights and activations in the backend's type */
    /* where the backend computes: the quantized blocks (or the float weights) and the float
     * embeddings and norms in its type; the host keeps the float ones in fp32 for the files */
    p.base_shard = (int64_t)(((double)L * layer_linear * bpw + (double)act * (embed + norms)) / world);
    if (!BE->host_memory)
        p.host = (int64_t)(((double)L * layer_linear * (quantized ? bpw : 4.0) + 4.0 * (embed + norms)) / world) +
                 12 * L * lora_params / world; /* and the optimizer state's copies for checkpoints */
    /* Compute copies: full holds one unit decoded (and, with collectives, the next one arriving);
     * grad_op and none decode every layer once. Without collectives float weights are used in place. */
    const int64_t largest_unit = layer_linear > V * D ? layer_linear : V * D;
    if (!strcmp(cfg->shard, "full"))
        p.gathered = comm ? act * largest_unit * 2 : quantized ? act * layer_linear : 0;
    else
        p.gathered = (quantized || comm ? act * L * layer_linear : 0) + (comm ? act * (embed + norms) : 0);
    /* fp32 master weights, gradients and two AdamW moments, sharded; every unit's full gradient */
    p.lora_state = 16 * L * lora_params / world;
    p.lora_grad_full = 4 * L * lora_params;
    p.activations = counted_pass_bytes(cfg, mc, act_ckpt, &p.offload);
    p.workspace = (int64_t)BE->workspace_bytes(cfg->micro_batch * cfg->seq_len, cfg->seq_len, mc->num_heads,
                                                mc->head_dim);
    p.total = p.base_shard + p.gathered + p.lora_state + p.lora_grad_full + p.activations + p.workspace +
              (BE->host_memory ? p.offload : 0);
    return p;
}

int memplan_choose_act_ckpt(const sl_config *cfg, const sl_model_config *mc)
{
    const size_t free_bytes = BE->free_memory();
    if (cfg->act_ckpt != CONFIG_AUTO || free_bytes == 0) { /* as asked; host memory: the plan does not limit it */
        const char *offload = !cfg->act_offload ? ""
                              : BE->host_memory ? ", layer inputs copied host to host (--act-offload on the CPU backend: "
                                                  "the GPU's code path, no memory saved)"
                                                : ", layer inputs offloaded to pinned host memory (--act-offload)";
        log_info("activations: %s (--act-ckpt=%s)%s", cfg->act_ckpt == 1 ? "recomputed" : "kept",
                 cfg->act_ckpt == 1 ? "true" : cfg->act_ckpt == 0 ? "false" : "auto", offload);
        return cfg->act_ckpt == 1;
    }
    sl_memplan p = memplan_compute(cfg, mc, RT.world, 0);
    /* the base and the optimizer state are allocated already; what the step adds must fit */
    const int64_t step = p.gathered + p.lora_grad_full + p.activations + p.workspace;
    int64_t ckpt = step > 0.95 * (double)free_bytes;
    comm_allreduce_max_i64(&ckpt, 1);
    log_info("activations: %s (a step adds %.1f GiB with every layer's activations kept; %.1f GiB free on rank 0's "
             "device)", ckpt ? "recomputed (--act-ckpt chosen: keeping them does not fit)" : "kept", step / 1073741824.0,
             free_bytes / 1073741824.0);
    return (int)ckpt;
}

static void row(const char *what, int64_t bytes)
{
    log_info("  %-44s %10.1f MiB", what, (double)bytes / (1 << 20));
}

void memplan_print(const sl_config *cfg_in)
{
    if (RT.rank != 0) return;
    hid_t f = h5_open(cfg_in->model, "model", 0, MPI_COMM_NULL);
    sl_model_config mc;
    modelcfg_read(f, &mc);
    h5_close(f);
    /* the base format the run will hold: a pre-quantized file's own, else the options' */
    sl_config local = *cfg_in, *cfg = &local;
    quant_format fmt;
    if (!model_format_of_run(cfg_in, &fmt)) {
        local.quant = (char *)quant_type_name(fmt.type);
        local.double_quant = fmt.double_quant, local.blocksize = fmt.blocksize;
    }
    sl_memplan p = memplan_compute(cfg, &mc, RT.world, cfg->act_ckpt == 1);
    log_info("dry run: %s model, %lld parameters, %d layers; %d ranks; --quant=%s%s --blocksize=%d --shard=%s",
             mc.architecture, (long long)modelcfg_param_count(&mc), mc.num_layers, RT.world, cfg->quant,
             cfg->double_quant ? " --double-quant" : "", cfg->blocksize, cfg->shard);
    log_info("memory plan per rank on the %s backend (estimate, at the peak of a step):", BE->name);
    row("frozen base weights (this rank's shard)", p.base_shard);
    row("gathered units (compute copy, prefetch)", p.gathered);
    row("LoRA params, grads, AdamW moments (shard)", p.lora_state);
    row("LoRA gradients of every unit before reduce", p.lora_grad_full);
    row(cfg->act_ckpt != 1   ? "activations (all kept), scratch, heads"
        : cfg->act_offload ? "activations (--act-offload), scratch, heads"
                           : "activations (--act-ckpt), scratch, heads",
        p.activations);
    if (!BE->host_memory) row("attention and GEMM workspaces", p.workspace);
    if (BE->host_memory && p.offload) row("offloaded layer inputs (host to host)", p.offload);
    row(BE->host_memory ? "total" : "total on each GPU", p.total);
    if (!BE->host_memory) row("host memory (fp32 weights, state for files)", p.host);
    if (!BE->host_memory && p.offload) row("pinned host memory: offloaded layer inputs", p.offload);
    if (cfg->command == CMD_TRAIN && cfg->act_ckpt == CONFIG_AUTO && !BE->host_memory) {
        sl_memplan c = memplan_compute(cfg, &mc, RT.world, 1);
        log_info("  with --act-ckpt (chosen at the start when the above does not fit): activations %.1f MiB, "
                 "total %.1f MiB", (double)c.activations / (1 << 20), (double)c.total / (1 << 20));
    }
    log_info("inputs validated; nothing was run (--dry-run)");
}
