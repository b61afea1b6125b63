/* Fuzz target: SentencePiece .model files (tools/tokenize/spmodel.c through tokenizer_load): the
 * protobuf wire format, the pieces and their types, the trainer and normalizer specs; an accepted
 * file encodes a short text whose ids must spell it back (spelling.h: U+2581 for each space, the
 * dummy prefix). */
#include "harness.h"
#include "tokenizer_file.h"

static void fuzz_one(const uint8_t *data, size_t size)
{
    fuzz_tokenizer_file(data, size, "tokenizer.model", NULL, "fuzz_spmodel");
}

FUZZ_TARGET(fuzz_one)
