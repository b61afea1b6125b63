/* Fuzz target: Hugging Face tokenizer.json files (tools/tokenize/hfjson.c through tokenizer_load):
 * the normalizers, pre-tokenizers, the BPE model's vocabulary and merges, added tokens; an accepted
 * file encodes a short text whose ids must spell it back where the pipeline promises it (spelling.h). */
#include "harness.h"
#include "tokenizer_file.h"

static void fuzz_one(const uint8_t *data, size_t size)
{
    fuzz_tokenizer_file(data, size, "tokenizer.json", NULL, "fuzz_hfjson");
}

FUZZ_TARGET(fuzz_one)
