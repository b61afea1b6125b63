/* generate: greedy decoding of every prompt at once, as one packed batch, through the one forward
 * pass of eval (forward.c, kernels/backend.h). There is no KV cache: a cache would need attention
 * of new rows against stored keys, a second attention path in both backends. So each new token
 * runs the forward over every unfinished sequence whole: for a prompt of P tokens and N new ones,
 * N passes over P .. P + N - 1 rows, about N (P + N / 2) token-rows where a cache would take P + N
 * (64 tokens after a 10-token prompt: 2,656 against 74, 36 times the compute; attention grows
 * with the cube of the length). Every rank runs the same batch, each gathering the weights it
 * shards; rank 0's choice of each token is what every rank appends, so they cannot drift apart. */
#include "generate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "comm.h"
#include "forward.h"
#include "h5io.h"
#include "model.h"
#include "runtime.h"
#include "vocab.h"

typedef struct {
    int n;
    int32_t **tok;   /* each prompt, then its continuation (room for max_new more) */
    int *prompt_len, *len;
    int *done;       /* the eos token ended it */
} gen_prompts;

static void add_prompt(gen_prompts *p, const int32_t *ids, int n, int max_new)
{
    p->tok = realloc(p->tok, sizeof *p->tok * (size_t)(p->n + 1));
    p->prompt_len = realloc(p->prompt_len, sizeof(int) * (size_t)(p->n + 1));
    p->len = realloc(p->len, sizeof(int) * (size_t)(p->n + 1));
    p->done = realloc(p->done, sizeof(int) * (size_t)(p->n + 1));
    if (!p->tok || !p->prompt_len || !p->len || !p->done) sl_fatal("out of memory for the prompts");
    p->tok[p->n] = sl_malloc(sizeof(int32_t) * (size_t)(n + max_new), "prompt");
    memcpy(p->tok[p->n], ids, sizeof(int32_t) * (size_t)n);
    p->prompt_len[p->n] = p->len[p->n] = n;
    p->done[p->n++] = 0;
}

/* --prompt-ids: ids separated by commas, prompts by ';' (blanks around ids allowed). Ids are
 * checked against the vocabulary, and each prompt's length plus max_new against the positions. */
static void parse_prompts(const char *text, int max_new, const sl_model_config *c, const char *model,
                          gen_prompts *p)
{
    memset(p, 0, sizeof *p);
    const size_t cap = strlen(text) / 2 + 1;
    int32_t *ids = sl_malloc(sizeof(int32_t) * cap, "prompt");
    const char *s = text;
    for (;;) {
        int n = 0;
        for (;;) {
            char *end;
            errno = 0;
            long id = strtol(s, &end, 10);
            while (*end == ' ' || *end == '\t') end++;
            if (end == s || errno || (*end && *end != ',' && *end != ';'))
                sl_fatal("option --prompt-ids: prompt %d, position %d: expected a token id, found '%.*s'", p->n, n,
                         (int)strcspn(s, ",;"), s);
            if (id < 0 || id >= c->vocab_size)
                sl_fatal("option --prompt-ids: token id %ld (prompt %d, position %d) is outside the vocabulary [0, %d) "
                         "of model %s", id, p->n, n, c->vocab_size, model);
            ids[n++] = (int32_t)id;
            s = end + (*end == ',');
            if (*end != ',') break;
        }
        if ((int64_t)n + max_new > c->max_positions)
            sl_fatal("option --max-new-tokens=%d: prompt %d has %d tokens, and %d + %d exceeds the model's "
                     "max_position_embeddings (%d) in %s", max_new, p->n, n, n, max_new, c->max_positions, model);
        if (c->sliding_window > 0 && n + max_new > c->sliding_window)
            sl_fatal("option --max-new-tokens=%d: prompt %d would reach %d tokens, beyond the model's sliding_window "
                     "(%d) in %s: sliding-window attention is not implemented", max_new, p->n, n + max_new,
                     c->sliding_window, model);
        add_prompt(p, ids, n, max_new);
        if (*s != ';') break;
        s++;
    }
    free(ids);
}

static void free_prompts(gen_prompts *p)
{
    for (int i = 0; i < p->n; i++) free(p->tok[i]);
    free(p->tok), free(p->prompt_len), free(p->len), free(p->done);
}

static void check_inputs(void *arg)
{
    const sl_config *cfg = arg;
    config_check_input_files(cfg);
    sl_model_config mc;
    model_validate(cfg->model, &mc);
    gen_prompts p;
    parse_prompts(cfg->prompt_ids, cfg->max_new_tokens, &mc, cfg->model, &p);
    free_prompts(&p);
    if (cfg->adapter) {
        adapter_info info;
        adapter_read_info(cfg->adapter, &info);
        if (strcmp(info.task, "causal_lm") != 0)
            sl_fatal("%s: generate continues text with the LM head, but this adapter was trained for %s", cfg->adapter,
                     info.task);
    }
    quant_format fmt;
    const char *problem = model_format_of_run(cfg, &fmt);
    if (problem) sl_fatal("%s", problem);
    if (cfg->tokenizer) {
        vocab v;
        vocab_load(&v, cfg->tokenizer);
        if (v.n != mc.vocab_size)
            sl_fatal("option --tokenizer: %s has %d tokens, but model %s has vocab_size %d (expected the tokenizer of "
                     "the model's vocabulary)", cfg->tokenizer, v.n, cfg->model, mc.vocab_size);
        vocab_free(&v);
    }
    if (cfg->out) h5_close(h5_create(cfg->out, "generation result", MPI_COMM_NULL)); /* fail now, not at the end */
}

/* The unfinished sequences as one packed batch; which[k] is the prompt of sequence k. */
static void fill_batch(const gen_prompts *p, sl_batch *b, int *which)
{
    b->T = b->n_seqs = 0;
    b->seq_start[0] = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->done[i]) continue;
        for (int t = 0; t < p->len[i]; t++) {
            b->ids[b->T + t] = p->tok[i][t];
            b->pos[b->T + t] = t;
            b->target[b->T + t] = -1;
        }
        b->T += p->len[i];
        which[b->n_seqs] = i;
        b->seq_start[++b->n_seqs] = b->T;
    }
}

/* The first largest logit, as torch.argmax takes it. */
static int64_t argmax(const float *x, int n)
{
    int64_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void print_ids(const char *label, int k, const int32_t *ids, int n)
{
    if (RT.rank != 0) return;
    printf("%s %d:", label, k);
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : " ", ids[i]);
    printf("\n");
}

/* Tokens as text on one line: bytes outside printable ASCII as C escapes (\n, \xNN). */
static void print_text(const char *label, int k, const vocab *v, int32_t prev, const int32_t *ids, int n)
{
    printf("%s %d: ", label, k);
    for (int i = 0; i < n; prev = ids[i++]) {
        char byte;
        int len;
        const char *s = vocab_decode(v, prev, ids[i], &len, &byte);
        for (int j = 0; j < len; j++) {
            unsigned char ch = (unsigned char)s[j];
            if (ch == '\n') printf("\\n");
            else if (ch == '\\') printf("\\\\");
            else if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
            else putchar(ch);
        }
    }
    printf("\n");
}

static void write_result(const sl_config *cfg, const gen_prompts *p, int eos)
{
    hid_t f = h5_create(cfg->out, "generation result", MPI_COMM_NULL);
    h5_set_attr_string(f, "/", "shardlora_kind", "generation");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "shardlora_version", sl_version());
    h5_set_attr_string(f, "/", "model", cfg->model);
    if (cfg->adapter) h5_set_attr_string(f, "/", "adapter", cfg->adapter);
    h5_set_attr_int(f, "/", "eos_token_id", eos);
    int64_t total = 0, np = p->n, offsets_n = p->n + 1;
    for (int i = 0; i < p->n; i++) total += p->len[i];
    int32_t *tokens = sl_malloc(sizeof(int32_t) * (size_t)(total + 1), "tokens");
    int64_t *offsets = sl_malloc(sizeof(int64_t) * (size_t)offsets_n, "offsets");
    offsets[0] = 0;
    for (int i = 0; i < p->n; i++) {
        memcpy(tokens + offsets[i], p->tok[i], sizeof(int32_t) * (size_t)p->len[i]);
        offsets[i + 1] = offsets[i] + p->len[i];
    }
    h5_write(f, "/tokens", SL_I32, SL_I32, 1, &total, tokens);
    h5_write(f, "/doc_offsets", SL_I64, SL_I64, 1, &offsets_n, offsets);
    h5_write(f, "/prompt_lengths", SL_I32, SL_I32, 1, &np, p->prompt_len);
    config_write(cfg, f, "/shardlora/options");
    h5_close(f);
    free(tokens), free(offsets);
}

void generate_run(const sl_config *cfg)
{
    rt_rank0_checks(check_inputs, (void *)cfg);
    double t0 = rt_now();
    sl_model m;
    model_load_of_run(&m, cfg);
    adapter_applied adapter = {0};
    if (cfg->adapter) adapter_apply(&m, cfg->adapter, &adapter);
    gen_prompts p;
    parse_prompts(cfg->prompt_ids, cfg->max_new_tokens, &m.cfg, cfg->model, &p);
    const int V = m.cfg.vocab_size, eos = m.cfg.eos_token_id;
    int max_T = 0, max_seq = 0;
    for (int i = 0; i < p.n; i++) {
        max_T += p.len[i] + cfg->max_new_tokens;
        if (p.len[i] + cfg->max_new_tokens > max_seq) max_seq = p.len[i] + cfg->max_new_tokens;
    }
    sl_batch b = {.ids = sl_malloc((size_t)max_T * 4, "batch"), .pos = sl_malloc((size_t)max_T * 4, "batch"),
                  .target = sl_malloc((size_t)max_T * 4, "batch"),
                  .seq_start = sl_malloc(((size_t)p.n + 1) * 4, "batch")};
    int *which = sl_malloc(sizeof(int) * (size_t)p.n, "batch");
    float *logits = sl_malloc(sizeof(float) * (size_t)p.n * (size_t)V, "logits");
    int64_t *next = sl_malloc(sizeof(int64_t) * (size_t)p.n, "next tokens");
    log_info("generate: %d prompts, greedy, up to %d new tokens each (the eos token %d ends one early)", p.n,
             cfg->max_new_tokens, eos);
    forward_state fw;
    forward_init(&fw, &m, max_T, max_seq);
    forward_plan_next_logits(&fw, &m, p.n);
    int64_t rows = 0, passes = 0;
    for (int step = 0; step < cfg->max_new_tokens; step++) {
        fill_batch(&p, &b, which);
        if (b.n_seqs == 0) break; /* every prompt reached eos */
        model_forward_next_logits(&m, &fw, &b, logits);
        rows += b.T, passes++;
        for (int k = 0; k < b.n_seqs; k++) next[k] = RT.rank == 0 ? argmax(logits + (size_t)k * (size_t)V, V) : -1;
        comm_allreduce_max_i64(next, b.n_seqs);
        for (int k = 0; k < b.n_seqs; k++) {
            int i = which[k];
            p.tok[i][p.len[i]++] = (int32_t)next[k];
            if (next[k] == eos) p.done[i] = 1;
        }
    }
    forward_free(&fw);
    vocab v = {0};
    if (cfg->tokenizer && RT.rank == 0) vocab_load(&v, cfg->tokenizer);
    int64_t made = 0;
    for (int i = 0; i < p.n; i++) {
        const int np = p.prompt_len[i], nc = p.len[i] - np;
        made += nc;
        print_ids("prompt", i, p.tok[i], np);
        print_ids("continuation", i, p.tok[i] + np, nc);
        if (v.n == 0) continue;
        const int bos = p.tok[i][0] == VOCAB_BOS; /* not printed, as llama2.c prints none */
        print_text("prompt text", i, &v, bos ? VOCAB_BOS : -1, p.tok[i] + bos, np - bos);
        print_text("continuation text", i, &v, p.tok[i][np - 1], p.tok[i] + np, nc);
    }
    vocab_free(&v);
    log_info("generate: %lld tokens in %.2f s: %lld forward passes over %lld rows in all (no KV cache: each pass "
             "recomputes every sequence whole)", (long long)made, rt_now() - t0, (long long)passes, (long long)rows);
    if (cfg->out && RT.rank == 0) {
        write_result(cfg, &p, eos);
        log_info("generate: wrote %s", cfg->out);
    }
    free(next), free(logits), free(which);
    free(b.ids), free(b.pos), free(b.target), free(b.seq_start);
    free_prompts(&p);
    adapter_applied_free(&adapter);
    model_free(&m);
}
