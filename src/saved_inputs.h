/* saved_inputs: what activation checkpointing keeps of a micro-batch, each decoder layer's input
 * [T, hidden] (act), for backward to recompute the layer from. Without offload every input has
 * its own buffer in backend memory. With offload (--act-offload) the backend keeps a ring of two
 * buffers, input l in buffer l % 2, and the inputs the ring overwrites in forward (all but the
 * last two) are copied into a host area, one slot each, as soon as the compute has written them,
 * and fetched back one layer ahead in backward; the copies run beside the compute
 * (backend.h: copy_async), and a buffer is written or read only once its last copy is done. */
#ifndef SL_SAVED_INPUTS_H
#define SL_SAVED_INPUTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int layers, ring;  /* ring == layers: nothing is offloaded */
    size_t slot_bytes; /* one input of max_T rows */
    size_t row_bytes;
    char *buf;         /* backend memory, ring slots */
    char *host;        /* offload: host memory, a slot per input that leaves the ring (NULL without) */
    int64_t *ticket;   /* per ring slot: the last copy that reads or fills it (0: none) */
} saved_inputs;

void saved_inputs_init(saved_inputs *s, int layers, int max_T, int hidden, int offload);
void saved_inputs_free(saved_inputs *s);

/* Where layer l's input is, with no ordering: forward reads what its compute has just written. */
void *saved_input_at(const saved_inputs *s, int l);
/* Layer l's buffer with the compute ordered after its last copy: call it before forward writes
 * input l (the copy of the input it replaces has left) and before backward reads it (the copy
 * bringing it back has arrived). */
void *saved_input_use(saved_inputs *s, int l);
/* Forward, once the compute writing layer l's T rows is issued: copy them to the host if the
 * ring will overwrite them. */
void saved_input_offload(saved_inputs *s, int l, int T);
/* Backward: start bringing layer l's T rows back, if they left (l < 0: nothing). */
void saved_input_prefetch(saved_inputs *s, int l, int T);

#endif
