/* encode: text to token ids through a tokenizer's pipeline. */
#ifndef SL_ENCODE_H
#define SL_ENCODE_H

#include <stddef.h>

#include "bpe.h"
#include "ids.h"
#include "tokenizer.h"

typedef struct {
    size_t start, len;
    int at_start; /* the piece begins at the start of the text (Metaspace's "first" scheme) */
} text_piece;

/* Scratch buffers reused from one document to the next. */
typedef struct {
    char *clean, *buf[2];
    size_t cap_clean, cap_buf[2];
    text_piece *pieces[2];
    int64_t n_pieces[2], cap_pieces[2];
    bpe_scratch bpe;
} encoder;

/* Append the ids of text[0..len) (any bytes: ill-formed UTF-8 becomes U+FFFD) to out. at_start:
 * the text begins the document (0 for text a chat template puts after a special token). */
void encode_text(const tokenizer *t, encoder *e, const char *text, size_t len, int at_start, id_list *out);
void encoder_free(encoder *e);

#endif
