/* Fuzz target: shardlora-tokenize's encoder (tools/tokenize/encode.c, bpe.c) on any text, with the
 * llama2.c tokenizer of ../shared/data. Its ids must spell the text back (spelling.h): the
 * dummy-prefix space, then the text byte for byte (a llama2.c tokenizer keeps ill-formed UTF-8;
 * byte-fallback tokens stand for their byte). */
#include "harness.h"
#include "spelling.h"
#include "tokenizer_file.h"

static void fuzz_one(const uint8_t *data, size_t size)
{
    fuzz_accepted_as(spelling_require(fuzz_shared_llama2c("fuzz_bpe"), (const char *)data, size, "fuzz_bpe"));
}

FUZZ_TARGET(fuzz_one)
