/* saved_inputs: the layer inputs of activation checkpointing, in backend memory or offloaded. */
#include "saved_inputs.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "runtime.h"

/* The layer computed and the one written or fetched beside it: copies overlap whole layers. */
enum { OFFLOAD_RING = 2 };

void saved_inputs_init(saved_inputs *s, int layers, int max_T, int hidden, int offload)
{
    memset(s, 0, sizeof *s);
    s->layers = layers;
    s->ring = offload && layers > OFFLOAD_RING ? OFFLOAD_RING : layers;
    s->row_bytes = (size_t)hidden * (size_t)BE->act_bytes;
    s->slot_bytes = (size_t)(max_T > 0 ? max_T : 1) * s->row_bytes;
    s->buf = BE->alloc((size_t)s->ring * s->slot_bytes, "activations");
    if (s->ring < layers) s->host = BE->host_alloc((size_t)(layers - s->ring) * s->slot_bytes, "offloaded layer inputs");
    s->ticket = sl_calloc((size_t)s->ring, sizeof *s->ticket, "activations");
}

void saved_inputs_free(saved_inputs *s)
{
    for (int i = 0; i < s->ring; i++) BE->wait_copy(s->ticket[i]); /* the release is ordered after them */
    BE->release(s->buf);
    if (s->host) BE->host_release(s->host);
    free(s->ticket);
    memset(s, 0, sizeof *s);
}

void *saved_input_at(const saved_inputs *s, int l) { return s->buf + (size_t)(l % s->ring) * s->slot_bytes; }

void *saved_input_use(saved_inputs *s, int l)
{
    BE->wait_copy(s->ticket[l % s->ring]);
    return saved_input_at(s, l);
}

/* The inputs forward overwrites in the ring: all but the last ring's worth. */
static int leaves(const saved_inputs *s, int l) { return l >= 0 && l < s->layers - s->ring; }

static char *host_slot(const saved_inputs *s, int l) { return s->host + (size_t)l * s->slot_bytes; }

/* Layer l's T rows between its ring slot and its host slot, when they leave the ring. */
static void copy_rows(saved_inputs *s, int l, int T, int to_host)
{
    if (!leaves(s, l)) return;
    char *dev = saved_input_at(s, l), *host = host_slot(s, l);
    s->ticket[l % s->ring] = BE->copy_async(to_host ? host : dev, to_host ? dev : host, (size_t)T * s->row_bytes);
}

void saved_input_offload(saved_inputs *s, int l, int T) { copy_rows(s, l, T, 1); }

void saved_input_prefetch(saved_inputs *s, int l, int T) { copy_rows(s, l, T, 0); }
