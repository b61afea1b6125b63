/* ids: a growable list of token ids. */
#ifndef SL_IDS_H
#define SL_IDS_H

#include <stdint.h>
#include <stdlib.h>

#include "runtime.h"

typedef struct {
    int32_t *v;
    int64_t n, cap;
} id_list;

static inline void ids_push(id_list *l, int32_t id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
        if (!l->v) sl_fatal("out of memory growing a token list to %lld ids", (long long)l->cap);
    }
    l->v[l->n++] = id;
}

#endif
