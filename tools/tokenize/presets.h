/* presets: the pre-tokenizer patterns and special tokens of known tiktoken encodings, named by
 * --pattern, and GPT-2's pattern that tokenizer.json's ByteLevel pre-tokenizer implies. */
#ifndef SL_PRESETS_H
#define SL_PRESETS_H

#include <stdint.h>

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *text;
    int32_t id; /* < 0: this many after the file's last rank (-1 is the first id after it) */
} preset_token;

typedef struct {
    const char *name, *pattern;
    const preset_token *tokens;
    int n_tokens;
    const char *bos, *eos; /* among tokens, or NULL */
    int32_t reserved_end;  /* the ids from the first token's up to this one that tokens leave free are
                            * <|reserved_special_token_K|>, K counting up (Llama 3); 0: none */
} preset;

/* The preset called name, or NULL. */
const preset *preset_find(const char *name);
/* The preset names, for messages. */
const char *preset_names(void);

#endif
