/* partition: the inputs as one byte stream, cut into one contiguous range per rank, each cut
 * moved forward to a document boundary so that every document is read by exactly one rank. */
#ifndef SL_PARTITION_H
#define SL_PARTITION_H

#include <stdint.h>

typedef enum {
    ALIGN_LINE,      /* JSONL: a document per line */
    ALIGN_PARAGRAPH, /* text: a line after a blank line (a paragraph cannot straddle it) */
    ALIGN_FILE,      /* a document per file */
} doc_align;

typedef struct {
    const char **files;
    int n_files, rank, world;
    int64_t *base, *size; /* each file's offset in the stream, and its size */
    int64_t total, start, end; /* this rank's range [start, end) of the stream */
} input_range;

/* Plan this rank's range; a missing or unreadable file is fatal naming option and file. */
void input_range_plan(input_range *r, const char **files, int n, doc_align align, const char *option);
/* The bytes [*from, *to) of file i that this rank reads (ALIGN_FILE: the whole file when the
 * file is this rank's); returns 0 when it reads none of it. */
int input_range_part(const input_range *r, int i, doc_align align, int64_t *from, int64_t *to);
void input_range_free(input_range *r);

#endif
