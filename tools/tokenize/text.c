/* Text input: documents are paragraphs (or whole files with --doc-per-file), encoded with the
 * tokenizer of --tokenizer, read line by line from this rank's part of the inputs.
 *
 * Paragraph rule: a line is blank when it holds only spaces, tabs and carriage returns (or
 * nothing). A document is a maximal run of non-blank lines, taken verbatim from its first byte to
 * the end of its last line, without that line's newline; the newlines between its lines stay.
 * Blank lines only separate documents, so a file of blank lines gives none. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "runtime.h"
#include "tokenize.h"

typedef struct {
    const tokenizer *tok;
    encoder enc;
    id_list ids;
    char *doc;
    size_t len, cap;
    progress *prog;
} text_ctx;

static int line_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static void add_text(text_ctx *x, const char *text, size_t len, corpus *c)
{
    x->ids.n = 0;
    encode_text(x->tok, &x->enc, text, len, 1, &x->ids);
    corpus_add(c, x->ids.v, x->ids.n, NULL, -1);
}

static void append(text_ctx *x, const char *s, size_t n)
{
    if (x->len + n + 1 > x->cap) {
        x->cap = 2 * (x->len + n + 1);
        x->doc = realloc(x->doc, x->cap);
        if (!x->doc) sl_fatal("out of memory for a paragraph of %zu bytes", x->len + n);
    }
    memcpy(x->doc + x->len, s, n);
    x->len += n;
}

static void end_paragraph(text_ctx *x, corpus *c)
{
    if (x->len && !corpus_full(c)) add_text(x, x->doc, x->len, c);
    x->len = 0;
}

/* The paragraphs of path[from..to), which starts at a line after a blank line (or the file's start). */
static void add_paragraphs(text_ctx *x, const char *path, int64_t from, int64_t to, corpus *c)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseeko(f, from, SEEK_SET) != 0) sl_fatal("cannot open text file '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int in_paragraph = 0;
    ssize_t n;
    for (int64_t pos = from; pos < to && !corpus_full(c) && (n = getline(&line, &cap, f)) > 0; pos += n) {
        size_t body = (size_t)n - (line[n - 1] == '\n');
        if (line_is_blank(line, body)) end_paragraph(x, c), in_paragraph = 0;
        else {
            if (in_paragraph) append(x, "\n", 1);
            append(x, line, body);
            in_paragraph = 1;
        }
        progress_add(x->prog, n, c);
    }
    if (ferror(f)) sl_fatal("error reading text file '%s'", path);
    end_paragraph(x, c);
    free(line);
    fclose(f);
}

void read_text(const tk_options *opts, const tokenizer *tok, corpus *c, progress *prog)
{
    text_ctx x = {.tok = tok, .prog = prog};
    doc_align align = opts->doc_per_file ? ALIGN_FILE : ALIGN_PARAGRAPH;
    input_range r;
    input_range_plan(&r, opts->files, opts->n_files, align, "--text");
    progress_start(prog, r.end - r.start);
    for (int i = 0; i < opts->n_files && !corpus_full(c); i++) {
        int64_t from, to;
        if (!input_range_part(&r, i, align, &from, &to)) continue;
        if (!opts->doc_per_file) {
            add_paragraphs(&x, opts->files[i], from, to, c);
            continue;
        }
        size_t len;
        char *buf = read_whole_file(opts->files[i], "text", &len);
        add_text(&x, buf, len, c);
        progress_add(prog, (int64_t)len, c);
        free(buf);
    }
    input_range_free(&r);
    encoder_free(&x.enc);
    free(x.ids.v);
    free(x.doc);
}
