/* utf8: making input text valid UTF-8, and the byte-level alphabet of GPT-2 style tokenizers. */
#ifndef SL_UTF8_H
#define SL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length of a valid UTF-8 character from its first byte. */
static inline int utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }
/* A byte and the continuation bytes after it (three at most): a character of valid UTF-8, and
 * how llama2.c groups bytes that are not. */
int utf8_group_len(const char *s, int64_t avail);
/* The length of the valid UTF-8 sequence at s[0..avail), or 0 when it is not one. */
int utf8_valid_len(const unsigned char *s, size_t avail);
/* Copy in[0..len) to out (room for 3 * len bytes), each ill-formed sequence replaced by U+FFFD
 * (one per maximal ill-formed subpart, as Python's decode(errors="replace") does); returns the
 * length written. */
size_t utf8_sanitize(const char *in, size_t len, char *out);
/* Decode one character of valid UTF-8 at s; *n gets its length. */
uint32_t utf8_decode(const unsigned char *s, int *n);
/* Encode a code point; returns the length (1-4). */
int utf8_encode(uint32_t cp, char *out);
/* GPT-2's byte-level alphabet: the code point standing for a byte, and back (-1 when cp stands
 * for none). */
uint32_t bytelevel_char(uint8_t byte);
int bytelevel_byte(uint32_t cp);

#endif
