/* spelling: whether a tokenization spells its text back, the oracle of the tokenizer targets.
 *
 * The bytes ids spell are their pieces' bytes, a byte-fallback token standing for its byte (or for
 * its piece, <0xNN>, when the text reads so). What
 * they must spell is the text as the tokenizer's normalizers and pre-tokenizers rewrite it (a
 * prepended space or U+2581, spaces replaced, NFC), worked out here on the whole text. That is
 * only what the tokenizer promises when nothing else intervenes, so the check is skipped when an
 * added token occurs in the text, when a rewriting pre-tokenizer (Metaspace, ByteLevel's prefix
 * space) follows a step that cut the text or another rewriting one (it then rewrites each piece),
 * or when a unit of the text (a byte, or a character) is no piece and has no byte-fallback tokens
 * (it becomes unk, or nothing, as in the reference libraries). */
#ifndef SL_FUZZ_SPELLING_H
#define SL_FUZZ_SPELLING_H

#include <stddef.h>

#include "tokenizer.h"

typedef enum { SPELLS_BACK, SPELLING_NOT_PROMISED, SPELLS_OTHERWISE } spelling_verdict;

/* Encode text[0..len) (valid UTF-8 unless the tokenizer keeps ill-formed bytes) with t as a whole
 * document and judge its ids. *why describes the verdict for messages and OUTCOMES lines. */
spelling_verdict spelling_check(const tokenizer *t, const char *text, size_t len, const char **why);

/* For a target: encode and judge; a tokenization that spells otherwise stops the program (a
 * finding), naming the target, the tokenizer's format and the text's length. Returns the verdict's
 * description. */
const char *spelling_require(const tokenizer *t, const char *text, size_t len, const char *target);

#endif
