/* stream: one rank's part of a tensor, read piece by piece on every thread (pread), checked for
 * finite values, converted, and written (pwrite) into its place in the output file, or quantized:
 * block absmax and codes per piece (quant_encode_from), the part's codes written once encoded, the
 * statistics left to the writer, which needs the whole tensor's offset for them. No buffer holds
 * more than a piece, but the codes of the part. */
#ifndef SL_IMPORT_STREAM_H
#define SL_IMPORT_STREAM_H

#include <stdint.h>

#include "import.h"

/* The unit ranks share a tensor by: 131072 elements, or with fmt (a quantized tensor) whole groups
 * of QUANT_NESTED_BLOCKS blocks, at least one; a float tensor is also read and written in pieces of
 * this size. */
int64_t stream_piece_elems(const quant_format *fmt);

/* A problem found in a part: the lowest key wins (its place in the tensor, see stream.c), -1 none. */
typedef struct {
    int64_t key;
    char msg[IMPORT_MSG_LEN];
} stream_problem;
/* Keep msg if key is below p's (thread-safe). */
void stream_note(stream_problem *p, int64_t key, const char *msg);

/* Per-thread piece buffers, kept from tensor to tensor (their pages are faulted in once). */
typedef struct stream_buffers stream_buffers;
stream_buffers *stream_buffers_new(void);
void stream_buffers_free(stream_buffers *b);

typedef struct {
    const import_source *src;
    const sl_tensor_spec *spec;
    int64_t n;            /* elements of the tensor */
    sl_dtype out;         /* the stored type, or the type the values are rounded to before quantization */
    int fd;               /* the output file, and its path for messages */
    const char *out_path;
    int64_t first, count; /* this rank's elements: whole pieces from the tensor's start */
    int64_t addr;         /* float: the dataset's file offset */
    const quant_format *fmt; /* quantized: the format, the members' offsets, absmax of the part's */
    quant_store_addrs at;    /* blocks (filled in) and the exact sum of them (double quantization) */
    float *absmax;
    quant_sum *sum;
} stream_part;

/* Every piece of the part; problems go to pr (the first non-finite value of the source, then of
 * the converted values, I/O errors). */
void stream_run(const stream_part *part, stream_buffers *b, stream_problem *pr);

#endif
