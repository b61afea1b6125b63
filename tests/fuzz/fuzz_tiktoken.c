/* Fuzz target: tiktoken rank files (tools/tokenize/tiktoken.c through tokenizer_load) with each
 * --pattern: the first input byte picks a preset (its special tokens placed after the ranks) or
 * GPT-2's pattern as a regular expression; the rest is the file. An accepted file encodes a short
 * text whose ids must spell it back byte for byte (spelling.h). */
#include "harness.h"
#include "presets.h"
#include "tokenizer_file.h"

static void fuzz_one(const uint8_t *data, size_t size)
{
    static const char *const PATTERNS[] = {"llama3", "qwen2", "qwen3.5", "cl100k", GPT2_PATTERN};
    if (size < 1) return;
    fuzz_tokenizer_file(data + 1, size - 1, "ranks.tiktoken", PATTERNS[data[0] % 5], "fuzz_tiktoken");
}

FUZZ_TARGET(fuzz_one)
