/* eval: windows (causal LM) or documents (sequence classification) are dealt to ranks in
 * contiguous, token-balanced ranges; each rank evaluates its own in micro-batches while every rank
 * takes part in each unit's all-gather. Per-window results are combined on rank 0 in window
 * order, so the result does not depend on the number of ranks. */
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

/* Each window's result is a row of doubles, so one reduction carries them all: the loss sum and
 * the predicted tokens (causal LM), or the loss, 1 and the num_labels logits (classification). */
enum { RES_LOSS, RES_COUNT, RES_LOGITS };

/* First window of each rank, balancing rows: rank r takes the windows whose first row falls in
 * the r-th of world equal slices of all rows. A window of len tokens has len - 1 rows (causal LM:
 * its last token is only a target) or len (classification, classify = 1). */
static void deal_windows(const sl_window *w, int64_t n, int classify, int64_t *first, int64_t *last)
{
    int64_t total = 0, seen = 0;
    for (int64_t i = 0; i < n; i++) total += w[i].len - !classify;
    int64_t lo = total * RT.rank / RT.world, hi = total * (RT.rank + 1) / RT.world;
    *first = *last = n;
    for (int64_t i = 0; i < n; i++) {
        if (seen >= lo && *first == n) *first = i;
        if (seen >= hi) { *last = i; break; }
        seen += w[i].len - !classify;
    }
    if (*first > *last) *first = *last;
}

/* Read up to max windows into a packed batch; returns how many were taken. Classification
 * (doc_labels non-NULL): every token is an input, none a target, and labels[s] is the label of
 * sequence s. */
static int64_t fill_batch(const sl_dataset *d, const sl_window *w, int64_t n, int max, sl_batch *b,
                          int32_t *tokens, uint8_t *mask, const int32_t *doc_labels, int32_t *labels)
{
    b->T = 0;
    b->n_seqs = 0;
    b->seq_start[0] = 0;
    int64_t bad = -1, taken = 0;
    for (; taken < n && taken < max; taken++) {
        const sl_window *win = &w[taken];
        int64_t bad_here = data_read(d, win->start, win->len, tokens, mask);
        if (bad_here >= 0 && bad < 0) bad = bad_here;
        const int rows = doc_labels ? win->len : win->len - 1;
        for (int j = 0; j < rows; j++) {
            int t = b->T + j;
            b->ids[t] = bad_here >= 0 ? 0 : tokens[j];
            b->pos[t] = j;
            b->target[t] = !doc_labels && mask[j + 1] && bad_here < 0 ? tokens[j + 1] : -1;
        }
        if (doc_labels) labels[b->n_seqs] = doc_labels[win->doc];
        b->T += rows;
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

/* A model file merged from a classifier (shardlora-merge) holds its head: its num_labels, or 0. */
static int merged_head_labels(const char *model)
{
    hid_t f = h5_open(model, "model", 0, MPI_COMM_NULL);
    int k = 0;
    if (h5_has_attr(f, "/", "task") && h5_has(f, SCORE_PATH)) {
        char *task = h5_attr_string(f, "/", "task");
        if (!strcmp(task, "seq_cls")) k = (int)h5_attr_int(f, "/", "num_labels");
        free(task);
    }
    if (k > 0) {
        const int64_t dims[2] = {k, -1};
        h5_expect_shape(f, SCORE_PATH, 2, dims);
    }
    h5_close(f);
    return k;
}

/* The adapter's task must be the run's; a classifier needs its head, from the adapter or from a
 * merged model file. Returns the classes (0: causal LM). */
static int check_adapter(const sl_config *cfg)
{
    const int classify = !strcmp(cfg->task, "seq_cls");
    if (!cfg->adapter) {
        const int k = classify ? merged_head_labels(cfg->model) : 0;
        if (classify && k == 0)
            sl_fatal("option --task=seq_cls needs --adapter: the classification head (/score/weight) is trained with "
                     "the adapter and stored in its file (or in a model file shardlora-merge made of them)");
        return k;
    }
    adapter_info info;
    adapter_read_info(cfg->adapter, &info);
    if (strcmp(info.task, cfg->task) != 0)
        sl_fatal("%s: this adapter was trained for %s, but eval runs --task=%s (pass --task=%s)", cfg->adapter,
                 info.task, cfg->task, info.task);
    return info.num_labels;
}

/* Classification: one label per document, of the head's classes. */
static void check_labels(const sl_config *cfg, const sl_dataset *d, int num_labels)
{
    if (!d->has_labels)
        sl_fatal("%s: dataset has no /labels, which --task=seq_cls needs (tokenize JSONL with \"label\" fields)", d->path);
    if (d->num_labels != num_labels)
        sl_fatal("%s: the num_labels attribute is %d but the classification head of %s has %d labels", d->path,
                 d->num_labels, cfg->adapter ? cfg->adapter : cfg->model, num_labels);
}

static void check_inputs(void *arg)
{
    const eval_checks *c = arg;
    config_check_input_files(c->cfg);
    sl_model_config mc;
    model_validate(c->cfg->model, &mc);
    data_validate(c->cfg->data, mc.vocab_size);
    modelcfg_check_seq_len(&mc, c->cfg->seq_len, c->cfg->model);
    const int num_labels = check_adapter(c->cfg);
    sl_dataset d;
    data_open(&d, c->cfg->data);
    if (num_labels > 0) check_labels(c->cfg, &d, num_labels);
    const data_checks dc = {.model_vocab = mc.vocab_size, .model = c->cfg->model, .causal = num_labels == 0,
                            .num_labels = num_labels, .purpose = "evaluate"};
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

/* What a classifier's evaluation adds to the result file: accuracy, each document's logits,
 * label and prediction (the first of equal logits, as torch.argmax), and the confusion counts. */
static double write_classification(hid_t f, const double *res, int64_t n, int K, const int32_t *labels)
{
    const int W = RES_LOGITS + K;
    float *logits = sl_malloc((size_t)(n * K + 1) * sizeof(float), "logits");
    int32_t *pred = sl_malloc((size_t)(n + 1) * sizeof(int32_t), "predictions");
    int64_t *confusion = sl_calloc((size_t)K * (size_t)K, sizeof(int64_t), "confusion"), correct = 0;
    for (int64_t i = 0; i < n; i++) {
        pred[i] = 0;
        for (int k = 0; k < K; k++) {
            logits[i * K + k] = (float)res[i * W + RES_LOGITS + k];
            if (logits[i * K + k] > logits[i * K + pred[i]]) pred[i] = k;
        }
        confusion[(int64_t)labels[i] * K + pred[i]]++;
        correct += pred[i] == labels[i];
    }
    double accuracy = (double)correct / (double)n;
    const int64_t dims[2] = {n, K}, square[2] = {K, K};
    h5_write(f, "/eval/accuracy", SL_F64, SL_F64, 0, NULL, &accuracy);
    h5_write(f, "/eval/correct", SL_I64, SL_I64, 0, NULL, &correct);
    h5_write(f, "/eval/logits", SL_F32, SL_F32, 2, dims, logits);
    h5_write(f, "/eval/labels", SL_I32, SL_I32, 1, dims, labels);
    h5_write(f, "/eval/predictions", SL_I32, SL_I32, 1, dims, pred);
    h5_write(f, "/eval/confusion", SL_I64, SL_I64, 2, square, confusion);
    h5_set_attr_string(f, "/eval/confusion", "layout", "[label, prediction]: documents of each label given each prediction");
    free(logits), free(pred), free(confusion);
    return accuracy;
}

typedef struct {
    double loss, count;  /* the mean loss, and the predicted tokens (causal LM) or documents */
    int64_t windows;
    const double *res;   /* the window rows (classification: the logits) */
    int num_labels;      /* > 0: classification */
    const int32_t *labels; /* classification: each window's label */
} eval_result;

static void write_result(const sl_config *cfg, const sl_model *m, const eval_result *r, const int64_t *bytes_read)
{
    hid_t f = h5_create(cfg->out, "eval result", MPI_COMM_NULL);
    h5_set_attr_string(f, "/", "shardlora_kind", "eval");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "shardlora_version", sl_version());
    h5_set_attr_string(f, "/", "model", cfg->model);
    h5_set_attr_string(f, "/", "data", cfg->data);
    h5_set_attr_string(f, "/", "task", cfg->task);
    const int64_t count = (int64_t)r->count;
    h5_write(f, "/eval/loss", SL_F64, SL_F64, 0, NULL, &r->loss);
    h5_write(f, "/eval/windows", SL_I64, SL_I64, 0, NULL, &r->windows);
    if (r->num_labels > 0) {
        h5_write(f, "/eval/documents", SL_I64, SL_I64, 0, NULL, &count);
        h5_set_attr_string(f, "/eval/loss", "units", "nats per document (cross-entropy over the labels)");
        double accuracy = write_classification(f, r->res, r->windows, r->num_labels, r->labels);
        log_info("eval: accuracy %.6f  loss %.6f  documents %lld", accuracy, r->loss, (long long)count);
    } else {
        double ppl = exp(r->loss);
        h5_write(f, "/eval/tokens", SL_I64, SL_I64, 0, NULL, &count);
        h5_write(f, "/eval/perplexity", SL_F64, SL_F64, 0, NULL, &ppl);
        h5_set_attr_string(f, "/eval/loss", "units", "nats per predicted token");
    }
    const int64_t world = RT.world;
    h5_write(f, "/io/model_bytes_read", SL_I64, SL_I64, 1, &world, bytes_read);
    int64_t total = 0;
    for (int i = 0; i < m->n_units; i++) total += m->units[i].frozen.numel;
    h5_set_attr_int(f, "/io/model_bytes_read", "model_elements", total);
    config_write(cfg, f, "/shardlora/options");
    h5_close(f);
}

/* This rank's windows [first, last) in micro-batches, every rank taking part in as many passes;
 * fills their rows of res (width RES_LOGITS + num_labels, or 2). */
static void evaluate(sl_model *m, const sl_config *cfg, const sl_dataset *d, const sl_window *w, int64_t first,
                     int64_t last, const int32_t *doc_labels, double *res)
{
    const int K = m->num_labels, width = K > 0 ? RES_LOGITS + K : RES_LOGITS;
    int64_t steps = (last - first + cfg->micro_batch - 1) / cfg->micro_batch;
    comm_allreduce_max_i64(&steps, 1);
    int max_T = cfg->micro_batch * cfg->seq_len;
    sl_batch b = {0};
    b.ids = sl_malloc((size_t)max_T * 4, "batch"), b.pos = sl_malloc((size_t)max_T * 4, "batch");
    b.target = sl_malloc((size_t)max_T * 4, "batch");
    b.seq_start = sl_malloc(((size_t)cfg->micro_batch + 1) * 4, "batch");
    int32_t *tokens = sl_malloc(((size_t)cfg->seq_len + 1) * 4, "tokens");
    int32_t *labels = sl_malloc(((size_t)cfg->micro_batch + 1) * 4, "batch labels");
    uint8_t *mask = sl_malloc((size_t)cfg->seq_len + 1, "loss mask");
    double *row_loss = sl_malloc((size_t)max_T * 8, "losses");
    float *logits = sl_malloc(((size_t)cfg->micro_batch * (size_t)K + 1) * sizeof(float), "logits");
    forward_state fw;
    forward_init(&fw, m, max_T, cfg->seq_len);
    int64_t next = first;
    for (int64_t s = 0; s < steps; s++) {
        int64_t taken = fill_batch(d, w + next, last - next, cfg->micro_batch, &b, tokens, mask, doc_labels, labels);
        model_forward_loss(m, &fw, &b, labels, row_loss, logits);
        for (int64_t i = 0; i < taken; i++) {
            double *r = res + (next + i) * width;
            if (K > 0) {
                r[RES_LOSS] = row_loss[i], r[RES_COUNT] = 1;
                for (int k = 0; k < K; k++) r[RES_LOGITS + k] = logits[i * K + k];
            }
            for (int t = b.seq_start[i]; K == 0 && t < b.seq_start[i + 1]; t++)
                if (b.target[t] >= 0) r[RES_LOSS] += row_loss[t], r[RES_COUNT] += 1;
        }
        next += taken;
    }
    forward_free(&fw);
    free(logits), free(row_loss), free(mask), free(labels), free(tokens);
    free(b.ids), free(b.pos), free(b.target), free(b.seq_start);
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
    if (cfg->adapter) adapter_apply(&m, cfg->adapter, &adapter); /* its task: checked above */
    else if (!strcmp(cfg->task, "seq_cls")) adapter_apply_state(&m, cfg->model, NULL, merged_head_labels(cfg->model), &adapter);
    const int K = m.num_labels, width = K > 0 ? RES_LOGITS + K : RES_LOGITS;
    sl_dataset d;
    data_open(&d, cfg->data);
    sl_window *w;
    int32_t *doc_labels = NULL, *labels = NULL;
    int64_t n = K > 0 ? data_document_units(&d, cfg->seq_len, &w) : data_eval_windows(&d, cfg->seq_len, &w), first, last;
    if (K > 0) {
        doc_labels = sl_malloc((size_t)(d.n_docs + 1) * 4, "labels");
        h5_read(d.file, "/labels", SL_I32, doc_labels);
        labels = sl_malloc((size_t)(n + 1) * 4, "labels");
        for (int64_t i = 0; i < n; i++) labels[i] = doc_labels[w[i].doc];
    }
    deal_windows(w, n, K > 0, &first, &last);
    log_info("eval: %lld %s of up to %d tokens over %lld documents, %d ranks", (long long)n,
             K > 0 ? "documents classified" : "windows", cfg->seq_len, (long long)d.n_docs, RT.world);
    double *res = sl_calloc((size_t)(n * width + 1), sizeof *res, "results"); /* all windows; this rank fills its own */
    evaluate(&m, cfg, &d, w, first, last, doc_labels, res);
    /* Each window is filled by exactly one rank, so the sum is exact; add in window order after. */
    comm_allreduce_sum_f64(res, n * width);
    eval_result r = {.windows = n, .res = res, .num_labels = K, .labels = labels};
    for (int64_t i = 0; i < n; i++) r.loss += res[i * width + RES_LOSS], r.count += res[i * width + RES_COUNT];
    if (r.count == 0)
        rt_fail_all("%s: %s", cfg->data, K > 0 ? "no document to classify (every document is empty)"
                                               : "no token to evaluate (every document is shorter than 2 tokens or masked)");
    r.loss /= r.count;
    const double secs = rt_now() - t0;

    int64_t *bytes = sl_calloc((size_t)RT.world, 8, "byte counts");
    bytes[RT.rank] = m.bytes_read;
    comm_allreduce_max_i64(bytes, RT.world);
    if (K == 0)
        log_info("eval: loss %.6f  perplexity %.4f  tokens %lld  (%.1f s, %.0f tokens/s)", r.loss, exp(r.loss),
                 (long long)r.count, secs, r.count / secs);
    if (RT.rank == 0) write_result(cfg, &m, &r, bytes);
    log_info("eval: wrote %s", cfg->out);
    free(bytes), free(res), free(w), free(labels), free(doc_labels);
    data_close(&d);
    model_free(&m);
    adapter_applied_free(&adapter);
}
