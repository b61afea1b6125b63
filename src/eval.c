/* eval: windows are dealt to ranks in contiguous, token-balanced ranges; each rank evaluates its
 * own in micro-batches while every rank takes part in each unit's all-gather. Per-window sums are
 * combined on rank 0 in window order, so the result does not depend on the number of ranks. */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "comm.h"
#include "data.h"
#include "forward.h"
#include "h5io.h"
#include "memplan.h"
#include "model.h"
#include "runtime.h"

typedef struct {
    double loss_sum;
    double count; /* predicted tokens, as a double so one reduction carries both */
} window_result;

/* First window of each rank, balancing tokens: rank r takes the windows whose first token falls
 * in the r-th of world equal slices of all window tokens. */
static void deal_windows(const sl_window *w, int64_t n, int64_t *first, int64_t *last)
{
    int64_t total = 0, seen = 0;
    for (int64_t i = 0; i < n; i++) total += w[i].len - 1;
    int64_t lo = total * RT.rank / RT.world, hi = total * (RT.rank + 1) / RT.world;
    *first = *last = n;
    for (int64_t i = 0; i < n; i++) {
        if (seen >= lo && *first == n) *first = i;
        if (seen >= hi) { *last = i; break; }
        seen += w[i].len - 1;
    }
    if (*first > *last) *first = *last;
}

/* Read up to max windows into a packed batch; returns how many were taken. */
static int64_t fill_batch(const sl_dataset *d, const sl_window *w, int64_t n, int max, sl_batch *b,
                          int32_t *tokens, uint8_t *mask)
{
    b->T = 0;
    b->n_seqs = 0;
    b->seq_start[0] = 0;
    int64_t bad = -1, taken = 0;
    for (; taken < n && taken < max; taken++) {
        const sl_window *win = &w[taken];
        int64_t bad_here = data_read(d, win->start, win->len, tokens, mask);
        if (bad_here >= 0 && bad < 0) bad = bad_here;
        for (int j = 0; j < win->len - 1; j++) {
            int t = b->T + j;
            b->ids[t] = bad_here >= 0 ? 0 : tokens[j];
            b->pos[t] = j;
            b->target[t] = mask[j + 1] && bad_here < 0 ? tokens[j + 1] : -1;
        }
        b->T += win->len - 1;
        b->seq_start[++b->n_seqs] = b->T;
    }
    int32_t bad_id = 0;
    if (bad >= 0) h5_read_range(d->file, "/tokens", SL_I32, bad, 1, &bad_id);
    rt_agree(bad < 0, "%s: dataset /tokens: token id %d at index %lld is outside the vocabulary [0, %d)",
             d->path, bad_id, (long long)bad, d->vocab_size);
    return taken;
}

typedef struct {
    const sl_config *cfg;
    int model_vocab;
} eval_checks;

static void check_inputs(void *arg)
{
    const eval_checks *c = arg;
    config_check_input_files(c->cfg);
    sl_model_config mc;
    model_validate(c->cfg->model, &mc);
    data_validate(c->cfg->data, mc.vocab_size);
    modelcfg_check_seq_len(&mc, c->cfg->seq_len, c->cfg->model);
    if (c->cfg->adapter) {
        adapter_info info;
        adapter_read_info(c->cfg->adapter, &info);
        if (strcmp(info.task, "causal_lm") != 0)
            sl_fatal("%s: eval computes next-token loss, but this adapter was trained for %s", c->cfg->adapter, info.task);
    }
    sl_dataset d;
    data_open(&d, c->cfg->data);
    const data_checks dc = {.model_vocab = mc.vocab_size, .model = c->cfg->model, .causal = 1, .purpose = "evaluate"};
    data_summary sum;
    data_check_contents(&d, &dc, &sum); /* also: no token to evaluate */
    data_close(&d);
    quant_format fmt;
    const char *problem = model_format_of_run(c->cfg, &fmt);
    if (problem) sl_fatal("%s", problem);
    /* Fail now rather than after the evaluation if the result cannot be written. */
    hid_t out = h5_create(c->cfg->out, "eval result", MPI_COMM_NULL);
    h5_close(out);
}

static void write_result(const sl_config *cfg, const sl_model *m, double loss, int64_t tokens, int64_t windows,
                         const int64_t *bytes_read)
{
    hid_t f = h5_create(cfg->out, "eval result", MPI_COMM_NULL);
    h5_set_attr_string(f, "/", "shardlora_kind", "eval");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "shardlora_version", sl_version());
    h5_set_attr_string(f, "/", "model", cfg->model);
    h5_set_attr_string(f, "/", "data", cfg->data);
    double ppl = exp(loss);
    h5_write(f, "/eval/loss", SL_F64, SL_F64, 0, NULL, &loss);
    h5_write(f, "/eval/tokens", SL_I64, SL_I64, 0, NULL, &tokens);
    h5_write(f, "/eval/perplexity", SL_F64, SL_F64, 0, NULL, &ppl);
    h5_write(f, "/eval/windows", SL_I64, SL_I64, 0, NULL, &windows);
    h5_set_attr_string(f, "/eval/loss", "units", "nats per predicted token");
    const int64_t world = RT.world;
    h5_write(f, "/io/model_bytes_read", SL_I64, SL_I64, 1, &world, bytes_read);
    int64_t total = 0;
    for (int i = 0; i < m->n_units; i++) total += m->units[i].frozen.numel;
    h5_set_attr_int(f, "/io/model_bytes_read", "model_elements", total);
    config_write(cfg, f, "/shardlora/options");
    h5_close(f);
}

void eval_run(const sl_config *cfg)
{
    eval_checks checks = {.cfg = cfg};
    rt_rank0_checks(check_inputs, &checks);
    if (cfg->dry_run) { memplan_print(cfg); return; }
    double t0 = rt_now();
    sl_model m;
    model_load_of_run(&m, cfg);
    adapter_applied adapter = {0};
    if (cfg->adapter) adapter_apply(&m, cfg->adapter, &adapter); /* a causal LM adapter: checked above */
    sl_dataset d;
    data_open(&d, cfg->data);
    sl_window *w;
    int64_t n = data_eval_windows(&d, cfg->seq_len, &w), first, last;
    deal_windows(w, n, &first, &last);
    int64_t mine = last - first, steps = (mine + cfg->micro_batch - 1) / cfg->micro_batch;
    comm_allreduce_max_i64(&steps, 1);

    int max_T = cfg->micro_batch * cfg->seq_len;
    sl_batch b = {0};
    b.ids = sl_malloc((size_t)max_T * 4, "batch"), b.pos = sl_malloc((size_t)max_T * 4, "batch");
    b.target = sl_malloc((size_t)max_T * 4, "batch");
    b.seq_start = sl_malloc(((size_t)cfg->micro_batch + 1) * 4, "batch");
    int32_t *tokens = sl_malloc(((size_t)cfg->seq_len + 1) * 4, "tokens");
    uint8_t *mask = sl_malloc((size_t)cfg->seq_len + 1, "loss mask");
    double *row_loss = sl_malloc((size_t)max_T * 8, "losses");
    window_result *res = sl_calloc((size_t)n, sizeof *res, "results"); /* all windows; this rank fills its own */
    log_info("eval: %lld windows of up to %d tokens over %lld documents, %d ranks, %lld steps",
             (long long)n, cfg->seq_len, (long long)d.n_docs, RT.world, (long long)steps);

    forward_state fw;
    forward_init(&fw, &m, max_T, cfg->seq_len);
    int64_t next = first;
    for (int64_t s = 0; s < steps; s++) {
        int64_t taken = fill_batch(&d, w + next, last - next, cfg->micro_batch, &b, tokens, mask);
        model_forward_loss(&m, &fw, &b, row_loss);
        for (int64_t i = 0; i < taken; i++)
            for (int t = b.seq_start[i]; t < b.seq_start[i + 1]; t++)
                if (b.target[t] >= 0) res[next + i].loss_sum += row_loss[t], res[next + i].count += 1;
        next += taken;
    }
    forward_free(&fw);
    /* Each window is filled by exactly one rank, so the sum is exact; add in window order after. */
    comm_allreduce_sum_f64(&res[0].loss_sum, 2 * n);
    double loss_sum = 0, count = 0;
    for (int64_t i = 0; i < n; i++) loss_sum += res[i].loss_sum, count += res[i].count;
    if (count == 0) rt_fail_all("%s: no token to evaluate (every document is shorter than 2 tokens or masked)", cfg->data);
    double loss = loss_sum / count, secs = rt_now() - t0;

    int64_t *bytes = sl_calloc((size_t)RT.world, 8, "byte counts");
    bytes[RT.rank] = m.bytes_read;
    comm_allreduce_max_i64(bytes, RT.world);
    log_info("eval: loss %.6f  perplexity %.4f  tokens %lld  (%.1f s, %.0f tokens/s)", loss, exp(loss),
             (long long)count, secs, count / secs);
    if (RT.rank == 0) write_result(cfg, &m, loss, (int64_t)count, n, bytes);
    log_info("eval: wrote %s", cfg->out);
    free(bytes), free(res), free(row_loss), free(mask), free(tokens);
    free(b.ids), free(b.pos), free(b.target), free(b.seq_start), free(w);
    data_close(&d);
    model_free(&m);
    adapter_applied_free(&adapter);
}
