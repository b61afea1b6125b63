/* train: the loop. Each optimizer step: count the step's loss targets on all ranks (so the loss
 * is a mean over the global batch, whatever the rank count), run the micro-batches, reduce-scatter
 * the trainable gradients to their owners, clip by the global norm, and update each rank's shard
 * with AdamW. */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapter.h"
#include "backend.h"
#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "h5io.h"
#include "memplan.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "outdir.h"
#include "runtime.h"
#include "sampler.h"
#include "slurm.h"
#include "step.h"

/* The flat per-rank buffers of the trainable state, one contiguous buffer per role: where the
 * backend computes (the optimizer runs there), and on the host for the files (the same buffers
 * on the CPU backend). */
typedef struct {
    int64_t n;
    float *param, *m, *v;                /* host */
    float *d_param, *d_grad, *d_m, *d_v; /* backend */
} train_state;

/* Every value of the dataset, and (causal LM) that every step of this run has a loss target, so
 * that bad data stops the run before step 1 rather than at the step that reaches it. */
static void check_data(const sl_dataset *d, const sl_config *cfg, const sl_model_config *mc, int classify)
{
    const data_checks dc = {.model_vocab = mc->vocab_size, .model = cfg->model, .causal = !classify,
                            .seq_len = classify ? 0 : cfg->seq_len, .num_labels = classify ? cfg->num_labels : 0,
                            .purpose = "train on"};
    data_summary sum;
    data_check_contents(d, &dc, &sum);
    if (classify) {
        int64_t nonempty = 0;
        for (int64_t doc = 0; doc < d->n_docs; doc++) nonempty += d->doc_offsets[doc + 1] > d->doc_offsets[doc];
        if (nonempty == 0) sl_fatal("%s: nothing to train on: every document is empty", cfg->data);
        return;
    }
    if (sum.window_has_target) { /* the step loop's "no loss target" can then not happen */
        int64_t accum = cfg->global_batch > 0 ? cfg->global_batch / (cfg->micro_batch * RT.world) : cfg->grad_accum;
        int64_t g = (int64_t)RT.world * cfg->micro_batch * accum;
        int64_t total = cfg->steps > 0 ? cfg->steps : cfg->epochs * ((sum.n_windows + g - 1) / g);
        int64_t bad = sampler_first_step_without(sum.window_has_target, sum.n_windows, g, (uint64_t)cfg->seed, total);
        free(sum.window_has_target);
        if (bad >= 0)
            sl_fatal("%s: dataset /loss_mask: step %lld of %lld would have no loss target: all %lld windows of its "
                     "global batch are fully masked (%lld of %lld documents are); raise --global-batch, or leave the "
                     "fully masked documents out of the dataset", cfg->data, (long long)bad + 1, (long long)total,
                     (long long)g, (long long)sum.masked_docs, (long long)d->n_docs);
    }
}

static void check_inputs(void *arg)
{
    const sl_config *cfg = arg;
    config_check_input_files(cfg);
    sl_model_config mc;
    model_validate(cfg->model, &mc);
    data_validate(cfg->data, mc.vocab_size);
    modelcfg_check_seq_len(&mc, cfg->seq_len, cfg->model);
    unsigned mask;
    const char *problem = lora_parse_targets(cfg->lora_targets, &mask);
    if (problem) sl_fatal("option %s", problem);
    quant_format fmt;
    problem = model_format_of_run(cfg, &fmt);
    if (problem) sl_fatal("%s", problem);
    if (cfg->adapter) {
        adapter_info info;
        adapter_read_info(cfg->adapter, &info);
        if (info.lora.r != cfg->lora_r || info.lora.targets != mask)
            sl_fatal("%s: adapter has rank %d on other modules than --lora-r=%d --lora-targets=%s", cfg->adapter,
                     info.lora.r, cfg->lora_r, cfg->lora_targets);
    }
    if (cfg->lora_dropout >= 1) sl_fatal("option --lora-dropout: expected a value in [0, 1), found %g", cfg->lora_dropout);
    if (cfg->global_batch > 0 && cfg->global_batch % (cfg->micro_batch * RT.world) != 0)
        sl_fatal("option --global-batch=%d is not a multiple of --micro-batch (%d) x ranks (%d)", cfg->global_batch,
                 cfg->micro_batch, RT.world);
    sl_dataset d;
    data_open(&d, cfg->data);
    const int classify = !strcmp(cfg->task, "seq_cls");
    if (classify) {
        if (!d.has_labels)
            sl_fatal("%s: dataset has no /labels, which --task=seq_cls needs (tokenize JSONL with \"label\" fields)", cfg->data);
        if (cfg->num_labels <= 0) sl_fatal("option --num-labels is required with --task=seq_cls (the dataset has %d)", d.num_labels);
        if (d.num_labels != cfg->num_labels)
            sl_fatal("option --num-labels=%d does not match %s, whose num_labels attribute is %d", cfg->num_labels,
                     cfg->data, d.num_labels);
    }
    check_data(&d, cfg, &mc, classify);
    data_close(&d);
    if (cfg->resume && cfg->overwrite)
        sl_fatal("options --resume=%s and --overwrite contradict each other: --resume continues the run in '%s', "
                 "--overwrite replaces it", cfg->resume, cfg->out);
    if (mkdir(cfg->out, 0755) != 0 && errno != EEXIST)
        sl_fatal("cannot create output directory '%s': %s", cfg->out, strerror(errno));
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.write_test", cfg->out);
    FILE *fp = fopen(probe, "w");
    if (!fp) sl_fatal("output directory '%s' is not writable: %s", cfg->out, strerror(errno));
    fclose(fp);
    remove(probe);
}

static float *host_role(float *dev, int64_t n, const char *what)
{
    return BE->host_memory ? dev : sl_calloc((size_t)n, sizeof(float), what);
}

static void state_alloc(train_state *s, sl_model *m)
{
    s->n = model_trainable_shard_numel(m);
    const size_t bytes = (size_t)s->n * sizeof(float);
    float **dev[4] = {&s->d_param, &s->d_grad, &s->d_m, &s->d_v};
    const char *what[4] = {"trainable parameters", "gradients", "AdamW moments", "AdamW moments"};
    for (int r = 0; r < 4; r++) {
        *dev[r] = BE->alloc(bytes, what[r]);
        BE->zero(*dev[r], bytes);
    }
    s->param = host_role(s->d_param, s->n, what[0]);
    s->m = host_role(s->d_m, s->n, what[2]), s->v = host_role(s->d_v, s->n, what[3]);
    model_bind_trainable(m, s->param, s->d_param, s->d_grad);
}

/* The host copies are what files read and write; the backend's are what trains. */
static void state_to_backend(train_state *s)
{
    if (BE->host_memory) return;
    const size_t bytes = (size_t)s->n * sizeof(float);
    BE->mirror(s->d_param, s->param, bytes), BE->mirror(s->d_m, s->m, bytes), BE->mirror(s->d_v, s->v, bytes);
}

static void state_to_host(train_state *s)
{
    if (BE->host_memory) return;
    const size_t bytes = (size_t)s->n * sizeof(float);
    BE->download(s->param, s->d_param, bytes), BE->download(s->m, s->d_m, bytes), BE->download(s->v, s->d_v, bytes);
}

static void state_free(train_state *s)
{
    if (!BE->host_memory) free(s->param), free(s->m), free(s->v);
    BE->release(s->d_param), BE->release(s->d_grad), BE->release(s->d_m), BE->release(s->d_v);
}

static void state_init(sl_model *m, const sl_config *cfg)
{
    if (cfg->adapter) {
        adapter_load(m, cfg->adapter);
        return;
    }
    for (int u = 0; u < m->n_units; u++) lora_init_shard(&m->units[u].train, m->units[u].train.shard, (uint64_t)cfg->seed);
}

/* Write the gradients as an adapter-shaped file, by pointing the pools' host shards at them. */
static void dump_gradients(sl_model *m, train_state *s, const sl_config *cfg)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/grads_step1.h5", cfg->out);
    float *grad = host_role(s->d_grad, s->n, "gradients");
    if (!BE->host_memory) BE->download(grad, s->d_grad, (size_t)s->n * sizeof(float));
    model_bind_trainable(m, grad, s->d_param, s->d_grad);
    adapter_write(m, cfg, path, "gradients");
    model_bind_trainable(m, s->param, s->d_param, s->d_grad);
    if (grad != s->d_grad) free(grad);
}

/* Loss targets (causal LM) or sequences (classification) of this rank's part of a step. */
static double count_targets(sl_sampler *smp, const sl_config *cfg, int64_t step, int classify)
{
    double n = 0;
    for (int a = 0; a < cfg->grad_accum; a++) {
        const sl_micro_batch *mb = sampler_batch(smp, step, a);
        n += classify ? mb->batch.n_seqs : (double)mb->n_targets;
    }
    return n;
}

typedef struct {
    double loss, grad_norm, tokens;
    double gathered, reduced; /* bytes rank 0 received from all-gathers and sent to reduce-scatters */
} step_result;

static step_result optimizer_step(sl_model *m, train_state *s, step_state *st, sl_sampler *smp, const sl_config *cfg,
                                  const sl_schedule *sched, int64_t step)
{
    const int classify = m->num_labels > 0;
    const comm_traffic before = comm_traffic_so_far();
    double counts[2] = {count_targets(smp, cfg, step, classify), 0};
    comm_allreduce_sum_f64(counts, 1);
    rt_agree(counts[0] > 0 || RT.rank != 0, "step %lld has no loss target in its global batch (all masked?)", (long long)step + 1);
    step_zero_grads(m);
    double sums[2] = {0, 0}; /* loss, input tokens */
    for (int a = 0; a < cfg->grad_accum; a++) {
        const sl_micro_batch *mb = sampler_batch(smp, step, a);
        uint64_t key = (uint64_t)cfg->seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)step << 20 ^ (uint64_t)a << 8 ^ (uint64_t)RT.rank;
        st->reduce_grads = a + 1 == cfg->grad_accum;
        sums[0] += step_micro(m, st, &mb->batch, mb->labels, 1.0 / counts[0], key);
        sums[1] += mb->batch.T;
    }
    for (int u = 0; u < m->n_units; u++) fsdp_unit_step_done(&m->units[u]);
    step_grads_wait(m);
    if (step == 0 && cfg->dump_grads) dump_gradients(m, s, cfg);
    comm_allreduce_sum_f64(sums, 2);
    double norm = optim_global_norm(BE->sq_norm(s->d_grad, s->n));
    rt_agree(isfinite(norm) && isfinite(sums[0]), "step %lld: the %s is not finite (loss %g, gradient norm %g); "
             "lower --lr or check the data", (long long)step + 1, isfinite(sums[0]) ? "gradient" : "loss", sums[0], norm);
    if (cfg->max_grad_norm > 0) BE->scale_f32(s->d_grad, s->n, optim_clip_coef(norm, cfg->max_grad_norm));
    BE->adamw(s->d_param, s->d_grad, s->d_m, s->d_v, s->n, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay,
              step + 1, lr_at(sched, step));
    BE->mark_step();
    const comm_traffic after = comm_traffic_so_far();
    return (step_result){.loss = sums[0], .grad_norm = norm, .tokens = sums[1],
                         .gathered = (double)(after.gathered - before.gathered),
                         .reduced = (double)(after.reduced - before.reduced)};
}

static void log_step(sl_metrics *mx, int64_t step, int64_t total, step_result r, float lr, double step_secs,
                     double elapsed)
{
    double tps = r.tokens / step_secs, eta = elapsed / (double)(step + 1) * (double)(total - step - 1);
    log_info("step %6lld/%lld  loss %.5f  lr %.3e  grad_norm %.4f  tokens/s %.0f  eta %dm%02ds", (long long)step + 1,
             (long long)total, r.loss, lr, r.grad_norm, tps, (int)(eta / 60), (int)eta % 60);
    if (RT.rank == 0) {
        const sl_metric row[] = {{"loss", "nats per target token", r.loss}, {"lr", "1", lr},
                                 {"grad_norm", "1", r.grad_norm}, {"tokens_per_s", "tokens/s", tps},
                                 {"allgather_bytes", "bytes received by rank 0 in the step", r.gathered},
                                 {"reduce_scatter_bytes", "bytes sent by rank 0 in the step", r.reduced},
                                 {"gathered_peak_bytes", "most gathered weight bytes held at once on rank 0, so far",
                                  (double)fsdp_gathered_peak()}};
        metrics_append(mx, step + 1, row, 7);
    }
}

/* Collective: whether to stop now, agreed by all ranks: a signal on any rank, or (rank 0 asks
 * Slurm) less wall time left than --ckpt-before-end plus one more step. */
static int should_stop(const sl_config *cfg, double step_secs)
{
    int64_t stop = slurm_signal_received() ? 1 : 0;
    if (RT.rank == 0 && cfg->ckpt_before_end > 0) {
        double left = slurm_remaining_seconds();
        if (left >= 0 && left < cfg->ckpt_before_end + step_secs) stop = 2;
    }
    comm_allreduce_max_i64(&stop, 1);
    return (int)stop;
}

/* The options record the format the base is trained in: a pre-quantized model file sets it even
 * where --quant is left at none, and a resumed run compares it with the checkpoint's. */
static void resolve_quant(sl_config *cfg, const quant_format *fmt)
{
    if (fmt->type == QUANT_NONE) return;
    cfg->quant = (char *)quant_type_name(fmt->type);
    cfg->blocksize = fmt->blocksize, cfg->double_quant = fmt->double_quant;
}

int train_run(const sl_config *cfg_in)
{
    sl_config cfg_local = *cfg_in, *cfg = &cfg_local;
    rt_rank0_checks(check_inputs, (void *)cfg);
    if (cfg->global_batch > 0) cfg->grad_accum = cfg->global_batch / (cfg->micro_batch * RT.world);
    if (cfg->dry_run) {
        rt_rank0_checks(outdir_check_previous, cfg);
        memplan_print(cfg);
        return 0;
    }
    outdir_claim(cfg);
    slurm_catch_signals();
    sl_model m;
    quant_format fmt;
    model_format_of_run(cfg, &fmt); /* checked on rank 0 already */
    resolve_quant(cfg, &fmt);
    model_load(&m, cfg->model, &fmt, model_keep_of(cfg->shard));
    unsigned targets;
    lora_parse_targets(cfg->lora_targets, &targets);
    sl_lora lora;
    lora_setup(&lora, cfg->lora_r, cfg->lora_alpha, cfg->lora_dropout, cfg->rslora, targets);
    int classify = !strcmp(cfg->task, "seq_cls");
    model_add_trainable(&m, &lora, classify ? cfg->num_labels : 0);
    train_state s;
    state_alloc(&s, &m);
    state_init(&m, cfg);

    sl_dataset d;
    data_open(&d, cfg->data);
    sl_sampler smp;
    const sampler_options so = {.task = classify ? SAMPLER_SEQ_CLS : SAMPLER_CAUSAL_LM, .seq_len = cfg->seq_len,
                                .micro_batch = cfg->micro_batch, .grad_accum = cfg->grad_accum,
                                .num_labels = cfg->num_labels, .seed = (uint64_t)cfg->seed};
    sampler_init(&smp, &d, &so);
    int64_t total = cfg->steps > 0 ? cfg->steps : cfg->epochs * sampler_steps_per_epoch(&smp);
    sl_schedule sched = {.kind = schedule_kind(cfg->schedule), .base_lr = (float)cfg->lr,
                         .warmup_steps = cfg->warmup_steps, .total_steps = total};
    char quant[32] = "none", path[4096];
    if (fmt.type != QUANT_NONE) quant_format_name(&fmt, quant, sizeof quant);
    float *const roles[CKPT_ROLES] = {s.param, s.m, s.v};
    ckpt_meta meta = {0, 0};
    int resumed = cfg->resume && checkpoint_resume(&m, roles, cfg, &meta);
    state_to_backend(&s);
    step_state st;
    cfg->act_ckpt = memplan_choose_act_ckpt(cfg, &m.cfg);
    step_init(&st, &m, cfg->micro_batch * cfg->seq_len, cfg->seq_len, cfg->act_ckpt, cfg->act_offload);
    snprintf(path, sizeof path, "%s/metrics.h5", cfg->out);
    sl_metrics mx;
    if (RT.rank == 0) metrics_open(&mx, path, resumed ? meta.step : -1);
    log_info("train: %s, %lld trainable parameters, %d ranks x %d micro-batch x %d accumulation, %lld steps",
             cfg->task, (long long)(s.n * RT.world), RT.world, cfg->micro_batch, cfg->grad_accum, (long long)total);

    double t_start = rt_now();
    int stopping = 0;
    for (int64_t step = meta.step; step < total; step++) {
        double t0 = rt_now();
        step_result r = optimizer_step(&m, &s, &st, &smp, cfg, &sched, step);
        meta = (ckpt_meta){.step = step + 1, .tokens_seen = meta.tokens_seen + r.tokens};
        if ((step + 1) % cfg->log_every == 0 || step + 1 == total)
            log_step(&mx, step, total, r, lr_at(&sched, step), rt_now() - t0, rt_now() - t_start);
        if (cfg->ckpt_every > 0 && (step + 1) % cfg->ckpt_every == 0 && step + 1 < total) {
            state_to_host(&s);
            checkpoint_save(&m, roles, cfg, quant, meta);
        }
        if (step + 1 < total && (stopping = should_stop(cfg, rt_now() - t0))) break;
    }
    if (RT.rank == 0) metrics_close(&mx);
    state_to_host(&s);
    checkpoint_save(&m, roles, cfg, quant, meta);
    if (stopping) {
        log_info("train: stopped at step %lld (%s); exit status %d asks the job script to requeue and resume",
                 (long long)meta.step, stopping == 1 ? "signal received" : "wall time nearly over", SL_EXIT_REQUEUE);
    } else {
        snprintf(path, sizeof path, "%s/adapter.h5", cfg->out);
        adapter_write(&m, cfg, path, "adapter");
        log_info("train: wrote %s (%.1f s)", path, rt_now() - t_start);
    }
    step_free(&st, &m);
    sampler_free(&smp);
    data_close(&d);
    state_free(&s);
    model_free(&m);
    if (RT.rank == 0) outdir_release();
    return stopping ? SL_EXIT_REQUEUE : 0;
}
