/* resume: the table of options a resumed run must share with its checkpoint, and the check. */
#include "resume.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "lora.h"
#include "modelcfg.h"
#include "runtime.h"

#define OPTIONS_GROUP "/shardlora/options"

typedef enum {
    MUST_MATCH,      /* changes the trained function or the data of a step: an error */
    WARN_IF_CHANGED, /* a legitimate choice on restart: a warning */
    MAY_CHANGE,      /* changes neither: not compared */
} resume_kind;

typedef struct {
    const char *option;
    resume_kind kind;
    const char *why;  /* MUST_MATCH: what it sets; WARN_IF_CHANGED: what the change means (NULL: from when it applies) */
    const char *when; /* "option=value" or "option!=value": compared only where it holds in both runs */
    void (*canonical)(char *value, size_t len); /* one spelling of equal values */
} resume_rule;

/* "all-linear" and any order of the same projections are one set of targets. */
static void canonical_targets(char *value, size_t len)
{
    unsigned mask;
    if (lora_parse_targets(value, &mask)) return;
    value[0] = 0;
    for (int p = 0; p < N_PROJ; p++)
        if (mask & (1u << p)) snprintf(value + strlen(value), len - strlen(value), "%s%s", value[0] ? "," : "", PROJ_NAMES[p]);
}

#define MATCH(name, what, ...) {.option = name, .kind = MUST_MATCH, .why = what, __VA_ARGS__}
#define WARN(name, ...) {.option = name, .kind = WARN_IF_CHANGED, __VA_ARGS__}
#define FREE(name) {.option = name, .kind = MAY_CHANGE}
#define BASE "it sets the frozen base weights"
static const resume_rule RULES[] = {
    MATCH("seq-len", "it sets the windows the documents are cut into"),
    MATCH("quant", BASE),
    MATCH("double-quant", BASE, .when = "quant!=none"),
    MATCH("blocksize", BASE, .when = "quant!=none"),
    MATCH("task", "it sets the loss and the trained head"),
    MATCH("num-labels", "it sets the shape of the classification head", .when = "task=seq_cls"),
    MATCH("lora-r", "it sets the shape of every adapter"),
    MATCH("lora-alpha", "it scales every adapter's update"),
    MATCH("rslora", "it sets the scale of every adapter's update"),
    MATCH("lora-dropout", "it sets the dropout on every adapter's input"),
    MATCH("lora-targets", "it sets which projections have adapters", .canonical = canonical_targets),
    MATCH("seed", "it sets the data order and the dropout masks"),
    /* the global batch they make (micro-batch x ranks x grad-accum) must match: global_batch_item */
    FREE("micro-batch"), FREE("grad-accum"), FREE("global-batch"),
    /* the model's shapes are checked against the checkpoint's signature; a file may move */
    WARN("model", .why = "its shapes match the checkpoint's, so it is taken to be the same model"),
    WARN("data", .why = "the steps from here on read their windows from it"),
    /* the optimizer: a new rate or schedule on restart is the user's choice */
    WARN("lr"), WARN("schedule"), WARN("warmup-steps"), WARN("weight-decay"), WARN("adam-beta1"), WARN("adam-beta2"),
    WARN("adam-eps"), WARN("max-grad-norm"),
    /* the run's length (a linear or cosine schedule follows the new total), its outputs and pace */
    FREE("steps"), FREE("epochs"), FREE("out"), FREE("log-every"), FREE("ckpt-every"), FREE("ckpt-keep"),
    FREE("ckpt-before-end"), FREE("resume"), FREE("overwrite"), FREE("dump-grads"), FREE("dry-run"),
    /* the checkpoint's adapter replaces the one a run starts from */
    FREE("adapter"),
    /* the machine: the same function, computed elsewhere or otherwise */
    FREE("device"), FREE("comm"), FREE("comm-timeout"), FREE("shard"), FREE("act-ckpt"), FREE("act-offload"),
    FREE("threads"),
};
#define N_RULES (int)(sizeof RULES / sizeof RULES[0])

static const resume_rule *rule_of(const char *option)
{
    for (int i = 0; i < N_RULES; i++)
        if (!strcmp(RULES[i].option, option)) return &RULES[i];
    return NULL;
}

/* A new option must be placed in the table deliberately: resuming fails until it is. */
static void check_every_option_has_a_rule(int command)
{
    const char *name;
    for (int i = 0; (name = config_option_name(command, i)); i++)
        if (!rule_of(name))
            sl_fatal("internal error: option --%s has no resume rule in src/resume.c (must it match the checkpoint?)",
                     name);
}

typedef struct {
    char then[512], now[512];
} values;

/* The option's value in the checkpoint and now; 0 when the checkpoint does not record it. */
static int values_of(hid_t f, const sl_config *cfg, const resume_rule *r, values *v)
{
    if (!config_read_value(f, OPTIONS_GROUP, r->option, v->then, sizeof v->then)) return 0;
    if (!config_value(cfg, r->option, v->now, sizeof v->now)) snprintf(v->now, sizeof v->now, "(none)");
    if (r->canonical) r->canonical(v->then, sizeof v->then), r->canonical(v->now, sizeof v->now);
    return 1;
}

static int holds_in_both(hid_t f, const sl_config *cfg, const char *when)
{
    if (!when) return 1;
    char option[64];
    const char *op = strchr(when, '!') ? strchr(when, '!') : strchr(when, '=');
    const int negate = *op == '!';
    const char *value = op + (negate ? 2 : 1);
    snprintf(option, sizeof option, "%.*s", (int)(op - when), when);
    values v;
    const resume_rule r = {.option = option};
    if (!values_of(f, cfg, &r, &v)) return 0;
    return (strcmp(v.then, value) != 0) == negate && (strcmp(v.now, value) != 0) == negate;
}

static void append(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* The windows of a step depend on the global batch alone, so the rank count may change with it kept. */
static void global_batch_item(hid_t f, const char *path, const sl_config *cfg, char *items, size_t ilen, char *fixes,
                              size_t flen)
{
    char mb[32], ga[32];
    if (!h5_has_attr(f, "/", "world_size") || !config_read_value(f, OPTIONS_GROUP, "micro-batch", mb, sizeof mb) ||
        !config_read_value(f, OPTIONS_GROUP, "grad-accum", ga, sizeof ga)) {
        log_warn("%s does not record its global batch (an older build?); it is not checked", path);
        return;
    }
    const long long m0 = atoll(mb), a0 = atoll(ga), w0 = h5_attr_int(f, "/", "world_size"), g0 = m0 * w0 * a0;
    const long long g1 = (long long)cfg->micro_batch * RT.world * cfg->grad_accum;
    if (g0 == g1) return;
    append(items, ilen, "%sthe global batch is %lld windows in the checkpoint (--micro-batch=%lld x %lld rank%s x "
           "--grad-accum=%lld) but %lld in this run (--micro-batch=%d x %d rank%s x --grad-accum=%d), and it must match "
           "(it sets the windows of every step%s)", items[0] ? "; " : "", g0, m0, w0, w0 == 1 ? "" : "s", a0, g1,
           cfg->micro_batch, RT.world, RT.world == 1 ? "" : "s", cfg->grad_accum,
           w0 != RT.world ? "; another rank count is fine when --global-batch keeps the batch the same" : "");
    const char *sep = fixes[0] ? " " : "";
    if (g0 % RT.world != 0) {
        append(fixes, flen, "%s--global-batch=%lld on a rank count that divides %lld", sep, g0, g0);
        return;
    }
    int k = cfg->micro_batch; /* the largest micro-batch up to this run's that splits the batch */
    while ((g0 / RT.world) % k) k--;
    if (k == cfg->micro_batch) append(fixes, flen, "%s--global-batch=%lld", sep, g0);
    else append(fixes, flen, "%s--micro-batch=%d --global-batch=%lld", sep, k, g0);
}

void resume_check_options(hid_t f, const char *path, const sl_config *cfg, int64_t step)
{
    check_every_option_has_a_rule(cfg->command);
    char items[4096] = "", fixes[1024] = "";
    values v;
    for (int pass = MUST_MATCH; pass <= WARN_IF_CHANGED; pass++) { /* no warnings before a refusal */
        for (int i = 0; i < N_RULES; i++) {
            const resume_rule *r = &RULES[i];
            if ((int)r->kind != pass || !holds_in_both(f, cfg, r->when)) continue;
            if (!values_of(f, cfg, r, &v)) {
                log_warn("%s does not record --%s (an older build?); it is not checked", path, r->option);
                continue;
            }
            if (!strcmp(v.then, v.now)) continue;
            if (r->kind == MUST_MATCH) {
                append(items, sizeof items, "%s--%s is %s in the checkpoint but %s in this run, and it must match (%s)",
                       items[0] ? "; " : "", r->option, v.then, v.now, r->why);
                append(fixes, sizeof fixes, "%s--%s=%s", fixes[0] ? " " : "", r->option, v.then);
                continue;
            }
            char applies[64];
            snprintf(applies, sizeof applies, "it applies from step %lld on", (long long)step + 1);
            log_warn("resuming from %s with --%s=%s, where the checkpoint's run had --%s=%s; %s", path, r->option, v.now,
                     r->option, v.then, r->why ? r->why : applies);
        }
        if (pass == MUST_MATCH) global_batch_item(f, path, cfg, items, sizeof items, fixes, sizeof fixes);
        if (items[0])
            sl_fatal("cannot resume from %s: %s; pass %s to continue that run, or start a new one in another --out "
                     "(or with --overwrite)", path, items, fixes);
    }
}
