/* regex: PCRE2 in UTF + UCP mode, JIT-compiled when the platform allows; $ is the end of the text
 * only, as in the Rust engines. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "utf8.h"

struct regex {
    pcre2_code *code;
    pcre2_match_data *match; /* one per regex: the tool encodes on one thread per rank */
};

/* PCRE2's \s in UCP mode leaves out U+0085 and similar, where the Rust engines follow Unicode's
 * White_Space; spell \s and \S as that property (escaped backslashes are kept as they are). */
static char *white_space_as_property(const char *p)
{
    size_t n = strlen(p), o = 0;
    char *out = sl_malloc(n * 8 + 1, "regular expression");
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && (p[i + 1] == 's' || p[i + 1] == 'S')) {
            o += (size_t)sprintf(out + o, "\\%c{White_Space}", p[i + 1] == 's' ? 'p' : 'P');
            i++;
        } else if (p[i] == '\\' && p[i + 1]) {
            out[o++] = p[i++];
            out[o++] = p[i];
        } else
            out[o++] = p[i];
    }
    out[o] = '\0';
    return out;
}

regex *regex_compile(const char *pattern, const char *where)
{
    char *p = white_space_as_property(pattern);
    int err;
    PCRE2_SIZE at;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &at, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        sl_fatal("%s: the regular expression '%s' does not compile (PCRE2, near offset %zu: %s)", where, pattern,
                 (size_t)at, (char *)msg);
    }
    free(p);
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* without JIT the interpreter gives the same matches */
    regex *re = sl_malloc(sizeof *re, "regular expression");
    re->code = code;
    re->match = pcre2_match_data_create_from_pattern(code, NULL);
    return re;
}

void regex_split(regex *re, const char *s, size_t len, void (*piece)(void *, size_t, size_t), void *ctx)
{
    size_t pos = 0, gap = 0;
    while (pos < len) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, re->match, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) sl_fatal("regular expression matching failed (PCRE2 error %d) at byte %zu", rc, pos);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->match);
        size_t start = ov[0], end = ov[1];
        if (end == start) { /* an empty match splits nothing; look again one character on */
            if (start >= len) break;
            pos = start + (size_t)utf8_len((unsigned char)s[start]);
            continue;
        }
        if (start > gap) piece(ctx, gap, start - gap);
        piece(ctx, start, end - start);
        pos = gap = end;
    }
    if (len > gap) piece(ctx, gap, len - gap);
}

int regex_find(regex *re, const char *s, size_t len, size_t *start, size_t *end)
{
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, re->match, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) sl_fatal("regular expression matching failed (PCRE2 error %d)", rc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->match);
    *start = ov[0], *end = ov[1];
    return 1;
}

void regex_free(regex *re)
{
    if (!re) return;
    pcre2_match_data_free(re->match);
    pcre2_code_free(re->code);
    free(re);
}
