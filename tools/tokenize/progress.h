/* progress: a line every few seconds on rank 0 with documents, tokens, MB/s and an ETA, from rank
 * 0's share of the input (every rank has about the same share). */
#ifndef SL_PROGRESS_H
#define SL_PROGRESS_H

#include <stdint.h>

#include "corpus.h"

typedef struct {
    double t0, last;
    int64_t bytes_total, bytes_done; /* this rank's */
    int64_t checked;                 /* bytes_done when the clock was last read */
    int world;
} progress;

void progress_start(progress *p, int64_t bytes_total);
/* bytes more of the input have been read; print when the last line is old enough. */
void progress_add(progress *p, int64_t bytes, const corpus *c);

#endif
