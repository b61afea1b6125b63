/* config: the option table, parsing from the command line and environment, help and dump. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "runtime.h"

typedef enum { OPT_INT, OPT_FLOAT, OPT_BOOL, OPT_STRING, OPT_CHOICE, OPT_INT_CHOICE, OPT_PATH } opt_type;

typedef struct {
    const char *name;
    opt_type type;
    const char *def;     /* default as text; NULL: unset (REQUIRED names what a command needs) */
    const char *choices; /* OPT_CHOICE, OPT_INT_CHOICE: "a|b|c" */
    int min;             /* OPT_INT: smallest accepted value */
    int commands;        /* CMD_* where the option applies */
    size_t offset;       /* into sl_config */
    const char *help;
} sl_option;

#define BOTH (CMD_TRAIN | CMD_EVAL)
#define ALL (CMD_TRAIN | CMD_EVAL | CMD_GENERATE)
#define AT(field) offsetof(sl_config, field)

static const sl_option OPTIONS[] = {
    {"model", OPT_PATH, NULL, NULL, 0, ALL, AT(model), "model file (HDF5, from shardlora-import)"},
    {"data", OPT_PATH, NULL, NULL, 0, BOTH, AT(data), "token dataset (HDF5, from shardlora-tokenize)"},
    {"out", OPT_PATH, NULL, NULL, 0, ALL, AT(out),
     "train: output directory; eval: result file (HDF5); generate: also write the tokens to this file (HDF5)"},
    {"seq-len", OPT_INT, "512", NULL, 2, BOTH, AT(seq_len), "tokens per window (documents are cut into windows)"},
    {"micro-batch", OPT_INT, "4", NULL, 1, BOTH, AT(micro_batch), "windows per rank per forward pass"},
    {"quant", OPT_CHOICE, "none", "none|nf4|fp4|int8", 0, ALL, AT(quant),
     "quantization of the frozen base weights"},
    {"double-quant", OPT_BOOL, "false", NULL, 0, ALL, AT(double_quant),
     "quantize the block absmax values too (QLoRA double quantization)"},
    {"blocksize", OPT_INT_CHOICE, "64", "64|128|256|4096", 0, ALL, AT(blocksize), "quantization block size"},
    {"shard", OPT_CHOICE, "full", "full|grad_op|none", 0, ALL, AT(shard),
     "base weights: full (ZeRO-3, gathered per use), grad_op (gathered once per step), none (replicated)"},
    {"device", OPT_CHOICE, "auto", "auto|cpu|cuda", 0, ALL, AT(device),
     "compute backend: cuda (bf16, one GPU per local rank) or cpu (fp32); auto: cuda when built and a GPU is visible"},
    {"comm", OPT_CHOICE, "auto", "auto|nccl|mpi", 0, ALL, AT(comm),
     "collectives of weights and gradients: nccl (CUDA, one GPU per rank) or mpi (host memory; staged through it on "
     "the GPU); auto: nccl when every rank has its own GPU. Named, they run even on one rank"},
    {"comm-timeout", OPT_FLOAT, "600", NULL, 0, ALL, AT(comm_timeout),
     "seconds a collective may make no progress before the job ends with a message (a stuck or dead peer)"},
    {"task", OPT_CHOICE, "causal_lm", "causal_lm|seq_cls", 0, BOTH, AT(task),
     "causal_lm: next-token loss where /loss_mask allows; seq_cls: classify each document by /labels (eval: with "
     "the --adapter's head; accuracy, per-class counts and each document's logits)"},
    {"num-labels", OPT_INT, "0", NULL, 0, CMD_TRAIN, AT(num_labels), "classes for --task=seq_cls (must match the dataset)"},
    {"lora-r", OPT_INT, "16", NULL, 1, CMD_TRAIN, AT(lora_r), "LoRA rank"},
    {"lora-alpha", OPT_FLOAT, "16", NULL, 0, CMD_TRAIN, AT(lora_alpha), "LoRA alpha: the update is scaled by alpha / r"},
    {"lora-dropout", OPT_FLOAT, "0", NULL, 0, CMD_TRAIN, AT(lora_dropout), "dropout on the LoRA input, in [0, 1)"},
    {"lora-targets", OPT_STRING, "all-linear", NULL, 0, CMD_TRAIN, AT(lora_targets),
     "comma-separated module names (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear"},
    {"rslora", OPT_BOOL, "false", NULL, 0, CMD_TRAIN, AT(rslora), "rank-stabilised LoRA: scale by alpha / sqrt(r)"},
    {"adapter", OPT_STRING, NULL, NULL, 0, ALL, AT(adapter),
     "adapter file (HDF5): eval and generate apply it; train starts from it instead of a fresh adapter"},
    {"prompt-ids", OPT_STRING, NULL, NULL, 0, CMD_GENERATE, AT(prompt_ids),
     "prompts as token ids, comma-separated, prompts separated by ';' (e.g. \"1,403,9;1,17\")"},
    {"max-new-tokens", OPT_INT, "64", NULL, 1, CMD_GENERATE, AT(max_new_tokens),
     "tokens to generate after each prompt (greedy; fewer when the model's eos token comes first)"},
    {"tokenizer", OPT_PATH, NULL, NULL, 0, CMD_GENERATE, AT(tokenizer),
     "llama2.c tokenizer.bin of the model's vocabulary: also print each prompt and continuation as text"},
    {"lr", OPT_FLOAT, "2e-4", NULL, 0, CMD_TRAIN, AT(lr), "peak learning rate"},
    {"weight-decay", OPT_FLOAT, "0", NULL, 0, CMD_TRAIN, AT(weight_decay), "AdamW decoupled weight decay"},
    {"adam-beta1", OPT_FLOAT, "0.9", NULL, 0, CMD_TRAIN, AT(beta1), "AdamW beta1"},
    {"adam-beta2", OPT_FLOAT, "0.999", NULL, 0, CMD_TRAIN, AT(beta2), "AdamW beta2"},
    {"adam-eps", OPT_FLOAT, "1e-8", NULL, 0, CMD_TRAIN, AT(adam_eps), "AdamW epsilon"},
    {"schedule", OPT_CHOICE, "constant", "constant|linear|cosine", 0, CMD_TRAIN, AT(schedule),
     "learning-rate schedule after warmup (as Hugging Face's get_*_schedule_with_warmup)"},
    {"warmup-steps", OPT_INT, "0", NULL, 0, CMD_TRAIN, AT(warmup_steps), "linear warmup from 0 over this many steps"},
    {"max-grad-norm", OPT_FLOAT, "1", NULL, 0, CMD_TRAIN, AT(max_grad_norm), "clip the global gradient norm (0: off)"},
    {"grad-accum", OPT_INT, "1", NULL, 1, CMD_TRAIN, AT(grad_accum), "micro-batches per optimizer step"},
    {"global-batch", OPT_INT, "0", NULL, 0, CMD_TRAIN, AT(global_batch),
     "windows per optimizer step over all ranks; sets --grad-accum (0: micro-batch x ranks x grad-accum)"},
    {"steps", OPT_INT, "0", NULL, 0, CMD_TRAIN, AT(steps), "optimizer steps (0: use --epochs)"},
    {"epochs", OPT_INT, "1", NULL, 1, CMD_TRAIN, AT(epochs), "passes over the data when --steps is 0"},
    {"seed", OPT_INT, "42", NULL, 0, CMD_TRAIN, AT(seed), "seed of everything random (adapter init, order, dropout)"},
    {"log-every", OPT_INT, "10", NULL, 1, CMD_TRAIN, AT(log_every), "progress line and metrics row every N steps"},
    {"act-ckpt", OPT_BOOL, "auto", NULL, 0, CMD_TRAIN, AT(act_ckpt),
     "activation checkpointing: keep only each layer's input, recompute in backward; auto: only when every "
     "layer's activations would not fit in the device's free memory"},
    {"act-offload", OPT_BOOL, "false", NULL, 0, CMD_TRAIN, AT(act_offload),
     "with --act-ckpt (which it sets): copy each layer's kept input to pinned host memory while the next layer "
     "computes and fetch it back one layer ahead in backward, so the GPU holds two layer inputs instead of all "
     "(the CPU backend copies host to host: the same code path, no memory saved)"},
    {"dump-grads", OPT_BOOL, "false", NULL, 0, CMD_TRAIN, AT(dump_grads),
     "write the first step's LoRA gradients to OUT/grads_step1.h5 (for verification)"},
    {"ckpt-every", OPT_INT, "0", NULL, 0, CMD_TRAIN, AT(ckpt_every),
     "write OUT/checkpoints/step_N.h5 every N steps (0: only at the end)"},
    {"ckpt-keep", OPT_INT, "3", NULL, 0, CMD_TRAIN, AT(ckpt_keep), "keep the newest K checkpoints (0: all)"},
    {"ckpt-before-end", OPT_INT, "300", NULL, 0, CMD_TRAIN, AT(ckpt_before_end),
     "under Slurm: checkpoint and exit for requeue when fewer seconds than this are left (0: off)"},
    {"resume", OPT_STRING, NULL, NULL, 0, CMD_TRAIN, AT(resume),
     "auto: continue from the newest valid checkpoint in OUT (if any); or a checkpoint file"},
    {"overwrite", OPT_BOOL, "false", NULL, 0, CMD_TRAIN, AT(overwrite),
     "replace the state of another run in OUT (its checkpoints, metrics.h5 and adapter.h5), which is an error without it"},
    {"threads", OPT_INT, "0", NULL, 0, ALL, AT(threads), "CPU threads per rank (0: OMP_NUM_THREADS or all cores / local ranks)"},
    {"dry-run", OPT_BOOL, "false", NULL, 0, BOTH, AT(dry_run),
     "validate every input and print the per-rank memory plan, then stop"},
};
#define N_OPTIONS (int)(sizeof OPTIONS / sizeof OPTIONS[0])

/* Options a command cannot run without. */
static const struct { const char *name; int commands; } REQUIRED[] = {
    {"model", ALL}, {"data", BOTH}, {"out", BOTH}, {"prompt-ids", CMD_GENERATE}};

static int required(const sl_option *o, int command)
{
    for (size_t i = 0; i < sizeof REQUIRED / sizeof *REQUIRED; i++)
        if (!strcmp(REQUIRED[i].name, o->name)) return (REQUIRED[i].commands & command) != 0;
    return 0;
}

static const struct { const char *name; int id; const char *summary; } COMMANDS[] = {
    {"train", CMD_TRAIN, "fine-tune LoRA adapters on a frozen, sharded, quantized base"},
    {"eval", CMD_EVAL, "evaluate next-token loss and perplexity of a model on a dataset"},
    {"generate", CMD_GENERATE, "continue prompts of token ids greedily (with an adapter or without)"},
};

/* Errors here are the same on every rank: only rank 0 speaks, all exit. */
noreturn static void config_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn static void config_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_trap_error(fmt, ap); /* caught under rt_try (the option parser's fuzz target) */
    va_end(ap);
    if (RT.rank == 0) {
        char msg[1024];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        fprintf(stderr, "%s: error: %s\n", RT.program, msg);
    }
    rt_finalize();
    exit(2);
}

static void env_name(char *buf, size_t len, const char *name)
{
    size_t i = (size_t)snprintf(buf, len, "SHARDLORA_");
    for (; *name && i + 1 < len; name++) buf[i++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    buf[i] = 0;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; p; p = strchr(p, '|')) {
        if (*p == '|') p++;
        if (strncmp(p, v, n) == 0 && (p[n] == '|' || p[n] == 0)) return 1;
    }
    return 0;
}

static void set_string(char *field, const char *v)
{
    free(*(char **)field);
    *(char **)field = strdup(v);
}

static int is_string(const sl_option *o) { return o->type == OPT_STRING || o->type == OPT_PATH || o->type == OPT_CHOICE; }

static void set_value(sl_config *cfg, const sl_option *o, const char *v, const char *from)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < o->min || x > 1000000000)
            config_error("%s --%s: expected an integer >= %d, found '%s'", from, o->name, o->min, v);
        *(int *)field = (int)x;
        break;
    }
    case OPT_FLOAT: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x >= 0) || x > 1e30)
            config_error("%s --%s: expected a number >= 0, found '%s'", from, o->name, v);
        *(double *)field = x;
        break;
    }
    case OPT_BOOL: {
        const int can_auto = o->def && !strcmp(o->def, "auto"); /* decided by the run: CONFIG_AUTO */
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *(int *)field = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *(int *)field = 0;
        else if (can_auto && !strcmp(v, "auto")) *(int *)field = CONFIG_AUTO;
        else config_error("%s --%s: expected true%s or false, found '%s'", from, o->name, can_auto ? ", auto" : "", v);
        break;
    }
    case OPT_INT_CHOICE:
    case OPT_CHOICE:
        if (!choice_ok(o->choices, v))
            config_error("%s --%s: expected one of %s, found '%s'", from, o->name, o->choices, v);
        if (o->type == OPT_INT_CHOICE) *(int *)field = atoi(v);
        else set_string(field, v);
        break;
    case OPT_STRING:
    case OPT_PATH:
        if (!*v) config_error("%s --%s: expected a value, found an empty string", from, o->name);
        if (!strncmp(v, "--", 2)) /* "--out --lr=3e-3" would train into a directory named --lr=3e-3 */
            config_error("%s --%s: expected a value, found '%s', which is an option (write --%s=VALUE)", from, o->name,
                         v, o->name);
        set_string(field, v);
        break;
    }
}

static const sl_option *find_option(const char *name, size_t len)
{
    for (int i = 0; i < N_OPTIONS; i++)
        if (strlen(OPTIONS[i].name) == len && !strncmp(OPTIONS[i].name, name, len)) return &OPTIONS[i];
    return NULL;
}

/* Edit distance, to suggest the option the user probably meant. */
static int distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    int row[64];
    if (la >= 63 || lb >= 63) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

static void unknown_option(const char *arg, size_t len)
{
    const char *best = NULL;
    int best_d = 4;
    for (int i = 0; i < N_OPTIONS; i++) {
        int d = distance(arg, len, OPTIONS[i].name);
        if (d < best_d) best_d = d, best = OPTIONS[i].name;
    }
    if (best)
        config_error("unknown option '--%.*s' (did you mean --%s?); 'shardlora %s --help' lists the options",
                     (int)len, arg, best, "train|eval|generate");
    config_error("unknown option '--%.*s'; 'shardlora train|eval|generate --help' lists the options",
                 (int)len, arg);
}

static void apply_defaults_and_env(sl_config *cfg)
{
    for (int i = 0; i < N_OPTIONS; i++) {
        const sl_option *o = &OPTIONS[i];
        if (o->def) set_value(cfg, o, o->def, "default");
        char env[64];
        env_name(env, sizeof env, o->name);
        const char *v = getenv(env);
        if (v) {
            char from[96];
            snprintf(from, sizeof from, "environment variable %s:", env);
            set_value(cfg, o, v, from);
        }
    }
}

/* SHARDLORA_* variables that are not options: the test runner's, the job scripts' and the CUDA
 * backend's profiler switch. */
static const char *const OTHER_VARIABLES[] = {"SHARDLORA_ROOT", "SHARDLORA_SHARED", "SHARDLORA_TEST_TREE",
                                              "SHARDLORA_BIN", "SHARDLORA_JOBS", "SHARDLORA_PROFILE"};

/* A misspelt variable would be ignored silently: rank 0 names it and the closest option. */
static void warn_unknown_variables(const sl_config *cfg)
{
    extern char **environ;
    if (RT.rank != 0) return;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        if (strncmp(*e, "SHARDLORA_", 10) != 0 || len <= 10) continue;
        char name[64], env[64];
        if (len >= sizeof name) len = sizeof name - 1;
        size_t n = 0;
        for (const char *c = *e + 10; c < *e + len; c++) name[n++] = *c == '_' ? '-' : (char)tolower((unsigned char)*c);
        name[n] = 0;
        int known = find_option(name, n) != NULL;
        for (size_t i = 0; i < sizeof OTHER_VARIABLES / sizeof *OTHER_VARIABLES && !known; i++)
            known = strlen(OTHER_VARIABLES[i]) == len && !strncmp(*e, OTHER_VARIABLES[i], len);
        if (known) continue;
        const char *best = NULL;
        int best_d = 4;
        for (int i = 0; i < N_OPTIONS; i++) {
            int d = distance(name, n, OPTIONS[i].name);
            if (d < best_d) best_d = d, best = OPTIONS[i].name;
        }
        if (best) env_name(env, sizeof env, best);
        if (best)
            log_warn("environment variable %.*s names no option (did you mean %s, for --%s?); it is ignored", (int)len,
                     *e, env, best);
        else
            log_warn("environment variable %.*s names no option; 'shardlora %s --help' lists them; it is ignored",
                     (int)len, *e, cfg->command_name);
    }
}

static int find_command(const char *name)
{
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(COMMANDS[i].name, name)) return COMMANDS[i].id;
    return 0;
}

static void parse_flag(sl_config *cfg, int argc, char **argv, int *i)
{
    const char *arg = argv[*i] + 2, *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const sl_option *o = find_option(arg, len);
    if (!o) unknown_option(arg, len);
    if (!(o->commands & cfg->command))
        config_error("option --%s does not apply to '%s'", o->name, cfg->command_name);
    const char *value = eq ? eq + 1 : NULL;
    if (!value && o->type == OPT_BOOL) value = "true";
    if (!value) {
        if (*i + 1 >= argc) config_error("option --%s needs a value", o->name);
        value = argv[++*i];
    }
    set_value(cfg, o, value, "option");
}

/* --act-offload moves the layer inputs that --act-ckpt keeps: it needs checkpointing and turns it on. */
static void imply_act_ckpt(sl_config *cfg)
{
    if (cfg->command != CMD_TRAIN || !cfg->act_offload) return;
    if (cfg->act_ckpt == 0)
        config_error("options --act-offload=true and --act-ckpt=false contradict each other: --act-offload moves the "
                     "layer inputs that --act-ckpt keeps into host memory, so it needs --act-ckpt (and sets it); drop "
                     "one of them");
    cfg->act_ckpt = 1;
}

void config_parse(sl_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        config_help(0);
        rt_finalize();
        exit(argc < 2 ? 2 : 0);
    }
    cfg->command = find_command(argv[1]);
    if (!cfg->command) config_error("unknown command '%s' (expected train, eval or generate; see shardlora --help)", argv[1]);
    cfg->command_name = argv[1];
    apply_defaults_and_env(cfg);
    warn_unknown_variables(cfg);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            config_help(cfg->command);
            rt_finalize();
            exit(0);
        }
        if (strncmp(argv[i], "--", 2) != 0)
            config_error("unexpected argument '%s' (options are written --name=value)", argv[i]);
        parse_flag(cfg, argc, argv, &i);
    }
    for (int i = 0; i < N_OPTIONS; i++) {
        const sl_option *o = &OPTIONS[i];
        if (required(o, cfg->command) && !*(char **)((char *)cfg + o->offset))
            config_error("option --%s is required for '%s'", o->name, cfg->command_name);
    }
    imply_act_ckpt(cfg);
}

void config_help(int command)
{
    if (RT.rank != 0) return;
    if (!command) {
        printf("usage: shardlora COMMAND [--option=value ...]   (run under srun or mpirun, one rank per GPU)\n\n"
               "commands:\n");
        for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
            printf("  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
        printf("\n'shardlora COMMAND --help' lists the options of a command.\n");
        return;
    }
    const char *name = "";
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (COMMANDS[i].id == command) name = COMMANDS[i].name;
    printf("usage: shardlora %s [--option=value ...]\n\noptions (environment variable in brackets):\n", name);
    for (int i = 0; i < N_OPTIONS; i++) {
        const sl_option *o = &OPTIONS[i];
        if (!(o->commands & command)) continue;
        char env[64], flag[64];
        env_name(env, sizeof env, o->name);
        snprintf(flag, sizeof flag, "--%s%s", o->name,
                 o->type == OPT_BOOL ? "" : o->type == OPT_CHOICE || o->type == OPT_INT_CHOICE ? "=" : o->type == OPT_INT ? "=N" : o->type == OPT_FLOAT ? "=X" : "=PATH");
        if (o->type == OPT_CHOICE || o->type == OPT_INT_CHOICE) strncat(flag, o->choices, sizeof flag - strlen(flag) - 1);
        if (o->type == OPT_STRING) snprintf(flag, sizeof flag, "--%s=LIST", o->name);
        printf("  %-32s %s\n  %-32s default: %s  [%s]\n", flag, o->help, "",
               o->def ? o->def : required(o, command) ? "(required)" : "(none)", env);
    }
}

void config_write(const sl_config *cfg, hid_t file, const char *path)
{
    h5_make_groups(file, path);
    h5_set_attr_string(file, path, "command", cfg->command_name);
    for (int i = 0; i < N_OPTIONS; i++) {
        const sl_option *o = &OPTIONS[i];
        if (!(o->commands & cfg->command)) continue;
        const char *field = (const char *)cfg + o->offset;
        if (o->type == OPT_FLOAT)
            h5_set_attr_double(file, path, o->name, *(const double *)field);
        else if (!is_string(o))
            h5_set_attr_int(file, path, o->name, *(const int *)field);
        else if (*(char *const *)field)
            h5_set_attr_string(file, path, o->name, *(char *const *)field);
    }
}

/* The shortest text that reads back as x, so equal values print alike and unequal ones differ. */
static void format_double(double x, char *buf, size_t len)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, len, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void format_value(const sl_option *o, double d, int64_t i, const char *s, char *buf, size_t len)
{
    if (o->type == OPT_FLOAT) format_double(d, buf, len);
    else if (o->type == OPT_BOOL) snprintf(buf, len, "%s", i == CONFIG_AUTO ? "auto" : i ? "true" : "false");
    else if (!is_string(o)) snprintf(buf, len, "%lld", (long long)i);
    else snprintf(buf, len, "%s", s);
}

int config_value(const sl_config *cfg, const char *name, char *buf, size_t len)
{
    const sl_option *o = find_option(name, strlen(name));
    if (!o || !(o->commands & cfg->command)) return 0;
    const char *field = (const char *)cfg + o->offset;
    const char *s = is_string(o) ? *(char *const *)field : NULL;
    if (is_string(o) && !s) return 0;
    format_value(o, o->type == OPT_FLOAT ? *(const double *)field : 0,
                 o->type == OPT_FLOAT || is_string(o) ? 0 : *(const int *)field, s, buf, len);
    return 1;
}

int config_read_value(hid_t file, const char *path, const char *name, char *buf, size_t len)
{
    const sl_option *o = find_option(name, strlen(name));
    if (!o || !h5_has_attr(file, path, name)) return 0;
    char *s = is_string(o) ? h5_attr_string(file, path, name) : NULL;
    format_value(o, o->type == OPT_FLOAT ? h5_attr_double(file, path, name) : 0,
                 o->type == OPT_FLOAT || is_string(o) ? 0 : h5_attr_int(file, path, name), s, buf, len);
    free(s);
    return 1;
}

const char *config_option_name(int command, int i)
{
    for (int k = 0; k < N_OPTIONS; k++)
        if ((OPTIONS[k].commands & command) && i-- == 0) return OPTIONS[k].name;
    return NULL;
}

void config_check_input_files(const sl_config *cfg)
{
    static const char *const INPUTS[] = {"model", "data", "adapter", "resume", "tokenizer"};
    for (size_t i = 0; i < sizeof INPUTS / sizeof *INPUTS; i++) {
        const sl_option *o = find_option(INPUTS[i], strlen(INPUTS[i]));
        const char *path = *(char *const *)((const char *)cfg + o->offset);
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", o->name);
        if ((o->commands & cfg->command) && path && strcmp(path, "auto") != 0) rt_expect_regular_file(flag, path);
    }
}

const char *config_quant(const sl_config *cfg, quant_format *fmt)
{
    static char msg[256];
    *fmt = (quant_format){.type = (quant_type)quant_type_from_name(cfg->quant), .blocksize = cfg->blocksize,
                          .double_quant = cfg->double_quant};
    if (fmt->type == QUANT_NONE) return cfg->double_quant ? "option --double-quant needs --quant=nf4 or fp4" : NULL;
    const char *problem = quant_format_problem(fmt);
    if (!problem) return NULL;
    snprintf(msg, sizeof msg, "options --quant=%s --blocksize=%d%s: %s", cfg->quant, cfg->blocksize,
             cfg->double_quant ? " --double-quant" : "", problem);
    return msg;
}

void config_free(sl_config *cfg)
{
    for (int i = 0; i < N_OPTIONS; i++) {
        const sl_option *o = &OPTIONS[i];
        if (is_string(o)) free(*(char **)((char *)cfg + o->offset));
    }
}
