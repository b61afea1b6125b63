/* weights: a model weight's values by element range, as float32: read from the model file, or
 * made from the file's recipe (synth.h), in pieces on every thread. */
#ifndef SL_WEIGHTS_H
#define SL_WEIGHTS_H

#include <hdf5.h>
#include <stdint.h>

#include "h5io.h"
#include "synth.h"

/* Elements a loader hands each thread at a time: a few hundred KB, in its cache while it checks,
 * converts or quantizes them. A multiple of every quantization blocksize. */
enum { WEIGHTS_PIECE = 1 << 16 };

/* Elements [start, start + count) of the model weight at path as fp32: read, or made on every
 * thread from the file's recipe. Collective where h5_read_range is (count may be 0). */
void weights_read_range(hid_t file, const char *path, int64_t start, int64_t count, float *out);

/* The same range read piece by piece from any thread: weights_source_open (one thread; collective
 * where h5_read_range is) makes it ready, weights_source_read delivers elements [e0, e0 + n) of
 * the tensor (inside the opened range) into out, words being room for n 16-bit words, checks
 * them, notes the first non-finite one in bad and bad_value and returns its index in the piece
 * (n if none); weights_source_close ends the program if a read failed. A dataset HDF5 must read
 * itself (chunked, filtered, or in a file open for writing) is read whole at open. */
typedef struct {
    enum { WEIGHTS_RECIPE, WEIGHTS_DIRECT, WEIGHTS_BUFFERED } how;
    synth_recipe recipe;
    sl_tensor_kind kind;
    char path[256];
    h5_direct direct;
    int64_t start;
    float *buffered;
    int64_t bad; /* the first non-finite element read (tensor index), INT64_MAX if none */
    float bad_value;
} weights_source;

void weights_source_open(weights_source *s, hid_t file, const char *path, int64_t start, int64_t count);
int64_t weights_source_read(weights_source *s, int64_t e0, int64_t n, float *out, uint16_t *words);
void weights_source_close(weights_source *s);

/* The first non-finite value of several sources read in turn (a pool's members): note each
 * closed source, then every rank agrees, the error naming file, dataset and element. */
typedef struct {
    char path[256];
    int64_t at; /* INT64_MAX: none */
    float value;
} weights_first_bad;
weights_first_bad weights_no_bad(void);
void weights_note_bad(weights_first_bad *first, const weights_source *s);
void weights_agree_finite(hid_t file, const weights_first_bad *first);

#endif
