/* spelling: a tokenization compared with its text, piece by piece where each lands. */
#include "spelling.h"

int spells_text(const vocab *v, const int32_t *ids, int64_t n, const uint8_t *text, size_t len)
{
    size_t at = 0; /* position in " " + text */
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n) return 0;
        int is_byte = ids[i] >= VOCAB_BYTE_FALLBACK && ids[i] < VOCAB_BYTE_FALLBACK + 256;
        const char *piece = vocab_piece(v, ids[i]);
        size_t piece_len = is_byte ? 1 : (size_t)v->lens[ids[i]];
        for (size_t k = 0; k < piece_len; k++, at++) {
            char got = is_byte ? (char)(ids[i] - VOCAB_BYTE_FALLBACK) : piece[k];
            if (at > len || got != (at == 0 ? ' ' : (char)text[at - 1])) return 0;
        }
    }
    return at == (len ? len + 1 : 0);
}
