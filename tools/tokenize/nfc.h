/* nfc: Unicode normalization form C through ICU, for tokenizer.json's NFC normalizer (Qwen2/3). */
#ifndef SL_NFC_H
#define SL_NFC_H

#include <stddef.h>

/* The NFC form of s[0..n) (valid UTF-8) in *out (grown as needed, capacity *cap); returns its length. */
size_t nfc_normalize(const char *s, size_t n, char **out, size_t *cap);

#endif
