/* JSONL input: one document per line, {"input_ids": [...], "loss_mask": [...], "label": k}, the
 * last two optional, or {"text": ...} or {"messages": [...]} (records.c) with --tokenizer. Ids
 * are taken verbatim; labels must be on every line or on none. */
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "runtime.h"
#include "tokenize.h"

typedef struct {
    const char *path;
    long line;
    int64_t vocab_size;
    text_records *texts;
    int32_t *ids;
    uint8_t *mask;
    int cap;
    const char *first_path; /* the first record, whose label-or-not every record must follow */
    long first_line;
    int first_has_label;
} jsonl_ctx;

/* An integral JSON number in [lo, hi), or fatal naming the file, line, field and value. */
static int64_t int_in(const jsonl_ctx *x, const cJSON *item, const char *field, int index, double lo, double hi)
{
    char where[64];
    snprintf(where, sizeof where, index >= 0 ? "%s[%d]" : "%s", field, index);
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble))
        sl_fatal("%s line %ld: %s must be an integer", x->path, x->line, where);
    double d = item->valuedouble;
    if (d < lo || d >= hi)
        sl_fatal("%s line %ld: %s = %.0f is out of range (expected %.0f <= value < %.0f)", x->path, x->line,
                 where, d, lo, hi);
    return (int64_t)d;
}

static const cJSON *array_field(const jsonl_ctx *x, const cJSON *obj, const char *field)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (a && !cJSON_IsArray(a)) sl_fatal("%s line %ld: \"%s\" must be an array", x->path, x->line, field);
    return a;
}

static void fit(jsonl_ctx *x, int n)
{
    if (n <= x->cap) return;
    x->cap = n;
    x->ids = realloc(x->ids, (size_t)n * sizeof *x->ids);
    x->mask = realloc(x->mask, (size_t)n);
    if (!x->ids || !x->mask) sl_fatal("out of memory reading %s line %ld (%d tokens)", x->path, x->line, n);
}

/* Parse one record into the corpus; *has_label says whether it carried a label. */
static void add_record(jsonl_ctx *x, const cJSON *obj, corpus *c, int *has_label)
{
    if (!cJSON_IsObject(obj)) sl_fatal("%s line %ld: expected a JSON object", x->path, x->line);
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(obj, "label");
    *has_label = label != NULL;
    int32_t k = label ? (int32_t)int_in(x, label, "label", -1, 0, 2147483647.0) : -1;
    char where[4200];
    snprintf(where, sizeof where, "%s line %ld", x->path, x->line);
    const int32_t *text_ids;
    const uint8_t *text_mask;
    int64_t n_text;
    if (text_record(x->texts, obj, where, &text_ids, &text_mask, &n_text)) return corpus_add(c, text_ids, n_text, text_mask, k);
    const cJSON *ids = array_field(x, obj, "input_ids"), *mask = array_field(x, obj, "loss_mask");
    if (!ids) sl_fatal("%s line %ld: \"input_ids\" is missing (expected \"input_ids\", \"text\" or \"messages\")", x->path, x->line);
    int n = cJSON_GetArraySize(ids);
    if (mask && cJSON_GetArraySize(mask) != n)
        sl_fatal("%s line %ld: \"loss_mask\" has %d entries but \"input_ids\" has %d (expected the same length)",
                 x->path, x->line, cJSON_GetArraySize(mask), n);
    fit(x, n + 1);
    int i = 0;
    for (const cJSON *e = ids->child; e; e = e->next, i++)
        x->ids[i] = (int32_t)int_in(x, e, "input_ids", i, 0, (double)x->vocab_size);
    i = 0;
    for (const cJSON *e = mask ? mask->child : NULL; e; e = e->next, i++)
        x->mask[i] = (uint8_t)int_in(x, e, "loss_mask", i, 0, 2);
    corpus_add(c, x->ids, n, mask ? x->mask : NULL, k);
}

static int is_blank(const char *s)
{
    while (isspace((unsigned char)*s)) s++;
    return *s == '\0';
}

static void check_labels(jsonl_ctx *x, int has_label)
{
    if (!x->first_path) x->first_path = x->path, x->first_line = x->line, x->first_has_label = has_label;
    if (has_label != x->first_has_label)
        sl_fatal("%s line %ld: %s a \"label\" but %s line %ld %s (expected labels on every line or on none)",
                 x->path, x->line, has_label ? "has" : "lacks", x->first_path, x->first_line,
                 x->first_has_label ? "has one" : "does not");
}

/* The records of path[from..to), which starts at a line's start; line numbers count from the
 * file's start, so they are found by counting the lines before from. */
static long lines_before(const char *path, int64_t from)
{
    FILE *f = fopen(path, "rb");
    if (!f) sl_fatal("cannot open JSONL file '%s': %s", path, strerror(errno));
    long lines = 0;
    char buf[1 << 16];
    for (int64_t left = from; left > 0;) {
        size_t n = fread(buf, 1, left < (int64_t)sizeof buf ? (size_t)left : sizeof buf, f);
        if (n == 0) break;
        for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
        left -= (int64_t)n;
    }
    fclose(f);
    return lines;
}

static void read_jsonl_part(jsonl_ctx *x, int64_t from, int64_t to, corpus *c, progress *prog)
{
    FILE *f = fopen(x->path, "r");
    if (!f || fseeko(f, from, SEEK_SET) != 0) sl_fatal("cannot open JSONL file '%s': %s", x->path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int has_label;
    x->line = from ? lines_before(x->path, from) : 0;
    for (int64_t pos = from; pos < to && !corpus_full(c) && (len = getline(&line, &cap, f)) >= 0; pos += len) {
        x->line++;
        progress_add(prog, len, c);
        if (is_blank(line)) continue;
        cJSON *obj = cJSON_ParseWithLength(line, (size_t)len);
        if (!obj) sl_fatal("%s line %ld: malformed JSON near byte %ld (expected one JSON object per line)",
                           x->path, x->line, (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - line : 0) + 1);
        add_record(x, obj, c, &has_label);
        check_labels(x, has_label);
        cJSON_Delete(obj);
    }
    if (ferror(f)) sl_fatal("error reading JSONL file '%s' after line %ld", x->path, x->line);
    fclose(f);
    free(line);
}

void read_jsonl(const tk_options *opts, const tokenizer *tok, corpus *c, progress *prog)
{
    text_records texts;
    text_records_init(&texts, tok, opts->chat_template, opts->train_on);
    jsonl_ctx x = {.vocab_size = tok ? tok->vocab_size : opts->vocab_size, .texts = &texts};
    input_range r;
    input_range_plan(&r, opts->files, opts->n_files, ALIGN_LINE, "--jsonl");
    progress_start(prog, r.end - r.start);
    for (int i = 0; i < opts->n_files && !corpus_full(c); i++) {
        int64_t from, to;
        x.path = opts->files[i];
        if (input_range_part(&r, i, ALIGN_LINE, &from, &to)) read_jsonl_part(&x, from, to, c, prog);
    }
    input_range_free(&r);
    free(x.ids);
    free(x.mask);
    text_records_free(&texts);
}
