/* staging: pinned double buffers for loads (staging.h). */
#include "staging.h"

#include <string.h>

#include "backend.h"

staging staging_open(size_t bytes)
{
    staging st = {.bytes = bytes};
    if (BE->host_memory) return st;
    for (int k = 0; k < 2; k++) st.buf[k] = BE->host_alloc(bytes, "weights in transit");
    return st;
}

void *staging_next(staging *st)
{
    BE->host_wait_copy(st->ticket[st->turn]);
    return st->buf[st->turn];
}

void staging_send(staging *st, void *dst, size_t at, size_t bytes)
{
    if (!bytes) return;
    st->ticket[st->turn] = BE->copy_async(dst, (char *)st->buf[st->turn] + at, bytes);
    BE->wait_copy(st->ticket[st->turn]);
}

void staging_flip(staging *st) { st->turn ^= 1; }

void staging_close(staging *st)
{
    for (int k = 0; k < 2; k++) BE->host_release(st->buf[k]); /* after the copies in flight */
    memset(st, 0, sizeof *st);
}
