/* staging: two pinned host buffers through which a load reaches a backend off the host: one is
 * filled while the other is copied, so reading the file and the copies to the device overlap. */
#ifndef SL_STAGING_H
#define SL_STAGING_H

#include <stddef.h>
#include <stdint.h>

enum { STAGING_BYTES = 64 << 20 }; /* per buffer, for a model's load */

typedef struct {
    void *buf[2];
    size_t bytes; /* of each buffer */
    int64_t ticket[2];
    int turn;
} staging;

/* Two buffers of bytes each; nothing is allocated on a backend that computes on host memory (it
 * needs no staging). */
staging staging_open(size_t bytes);
/* The buffer to fill next, once its previous copy has left it. */
void *staging_next(staging *st);
/* Copy bytes [at, at + bytes) of the buffer staging_next gave into dst where the backend computes
 * (several calls may send parts of one buffer); the compute issued later comes after them. */
void staging_send(staging *st, void *dst, size_t at, size_t bytes);
/* The filled buffer is sent: the next staging_next gives the other one. */
void staging_flip(staging *st);
void staging_close(staging *st);

#endif
