/* tokenizer_file: what the tokenizer-file targets share. The input is a tokenizer file; when
 * tokenizer_load accepts it, a short text is encoded with it and must spell back (spelling.h). */
#ifndef SL_FUZZ_TOKENIZER_FILE_H
#define SL_FUZZ_TOKENIZER_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* data[0..size) written as the scratch file called name, read by tokenizer_load (pattern: its
 * --pattern, or NULL). The outcome says the format and the spelling's verdict. */
void fuzz_tokenizer_file(const uint8_t *data, size_t size, const char *name, const char *pattern, const char *target);

/* The llama2.c tokenizer of ../shared/data ($SHARDLORA_SHARED/data), loaded once; a target that
 * cannot load it ends naming it. */
const tokenizer *fuzz_shared_llama2c(const char *target);

#endif
