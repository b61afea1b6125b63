/* Text input: documents are paragraphs (or whole files with --doc-per-file), encoded with the
 * tokenizer of --tokenizer.
 *
 * Paragraph rule: a line is blank when it holds only spaces, tabs and carriage returns (or
 * nothing). A document is a maximal run of non-blank lines, taken verbatim from its first byte to
 * the end of its last line, without that line's newline; the newlines between its lines stay.
 * Blank lines only separate documents, so a file of blank lines gives none. */
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "runtime.h"
#include "tokenize.h"

static int line_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* The line at *pos: its length without the newline; *pos moves past the newline. */
static size_t next_line(const char *buf, size_t len, size_t *pos)
{
    const char *nl = memchr(buf + *pos, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - (buf + *pos)) : len - *pos;
    *pos += n + (nl != NULL);
    return n;
}

/* Find the next paragraph at or after *pos: returns 0 when none is left. */
static int next_paragraph(const char *buf, size_t len, size_t *pos, size_t *start, size_t *end)
{
    int found = 0;
    while (*pos < len) {
        size_t line_start = *pos, n = next_line(buf, len, pos);
        if (line_is_blank(buf + line_start, n)) {
            if (found) return 1;
            continue;
        }
        if (!found) *start = line_start;
        found = 1;
        *end = line_start + n;
    }
    return found;
}

typedef struct {
    const tokenizer *tok;
    encoder enc;
    id_list ids;
} text_ctx;

static void add_text(text_ctx *x, const char *text, size_t len, corpus *c)
{
    x->ids.n = 0;
    encode_text(x->tok, &x->enc, text, len, 1, &x->ids);
    corpus_add(c, x->ids.v, x->ids.n, NULL, -1);
}

static void add_file(text_ctx *x, const char *path, int doc_per_file, corpus *c)
{
    size_t len, pos = 0, start, end;
    char *buf = read_whole_file(path, "text", &len);
    if (doc_per_file) add_text(x, buf, len, c);
    else
        while (!corpus_full(c) && next_paragraph(buf, len, &pos, &start, &end))
            add_text(x, buf + start, end - start, c);
    free(buf);
}

void read_text(const tk_options *opts, const tokenizer *tok, corpus *c)
{
    text_ctx x = {.tok = tok};
    for (int i = 0; i < opts->n_files && !corpus_full(c); i++) add_file(&x, opts->files[i], opts->doc_per_file, c);
    encoder_free(&x.enc);
    free(x.ids.v);
}
