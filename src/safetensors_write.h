/* safetensors_write: the bytes a safetensors file starts with, for the tools that write one
 * (shardlora-export's adapters, shardlora-merge's checkpoints): an 8-byte little-endian header
 * length, the JSON header {"__metadata__": {"format": "pt"}, name: {"dtype", "shape",
 * "data_offsets"}} padded with spaces to a multiple of 8, then the data of each tensor back to back
 * in the order given (offsets relative to the end of the header). */
#ifndef SL_SAFETENSORS_WRITE_H
#define SL_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define ST_WRITE_MAXDIMS 2

typedef struct {
    const char *name;
    sl_dtype dtype; /* SL_F32, SL_F16 or SL_BF16 */
    int ndims;
    int64_t dims[ST_WRITE_MAXDIMS];
} st_entry;

/* safetensors' name of a float dtype ("F32", "F16", "BF16"). */
const char *st_dtype_name(sl_dtype t);
/* Bytes of an entry's data. */
int64_t st_entry_bytes(const st_entry *e);
/* The length field, header and padding for entries e[0..n) (malloc'd, *len bytes); the data of
 * entry i then starts *len + offsets[i] bytes into the file (offsets may be NULL). */
char *st_header(const st_entry *e, int n, size_t *len, int64_t *offsets);

#endif
