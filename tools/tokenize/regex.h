/* regex: the pre-tokenizer's Unicode regular expressions through PCRE2, with the semantics of the
 * Rust regex engines that tokenizers and tiktoken use (\s is Unicode White_Space). */
#ifndef SL_REGEX_H
#define SL_REGEX_H

#include <stddef.h>

typedef struct regex regex;

/* Compile a pattern; where names its origin in messages (a file and field, or an option). */
regex *regex_compile(const char *pattern, const char *where);
/* Split s[0..len) (valid UTF-8) into the matches and the text between them, in order, calling
 * piece(ctx, start, length) for each non-empty one. */
void regex_split(regex *re, const char *s, size_t len, void (*piece)(void *, size_t, size_t), void *ctx);
/* The first match in s[0..len): returns 0 when there is none, else 1 with its span. */
int regex_find(regex *re, const char *s, size_t len, size_t *start, size_t *end);
void regex_free(regex *re);

#endif
