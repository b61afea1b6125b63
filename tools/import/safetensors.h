/* safetensors: one .safetensors file: its JSON header, validated whole when opened, and reads of
 * a tensor or a byte range of one (files can be tens of GB), with pread, from any thread. */
#ifndef SL_IMPORT_SAFETENSORS_H
#define SL_IMPORT_SAFETENSORS_H

#include <cJSON.h>
#include <stdint.h>

#include "dtype.h"

#define ST_MAXDIMS 8

typedef struct {
    char *path;
    int fd;
    int64_t file_size, data_start; /* the data area is [data_start, file_size) */
    cJSON *header;
    int n_tensors;                 /* entries other than __metadata__ */
} st_file;

typedef struct {
    const char *name, *dtype_name; /* as in the header, e.g. "BF16" */
    sl_dtype dtype;                /* SL_DTYPE_OTHER for types other than F32, F16, BF16 */
    int ndims;
    int64_t dims[ST_MAXDIMS], n;
    int64_t offset, nbytes;        /* absolute position in the file */
} st_tensor;

void st_open(st_file *st, const char *path);
/* Also after st_open stopped at an error caught by rt_try: st holds what it had opened. */
void st_close(st_file *st);
/* Find a tensor by name; returns 0 when the file has no such tensor. */
int st_find(const st_file *st, const char *name, st_tensor *t);
/* Read a tensor's bytes (t->nbytes) into buf, on every thread; an I/O error is fatal. */
void st_read(const st_file *st, const st_tensor *t, void *buf);
/* Bytes [at, at + len) of a tensor's data into buf, on the calling thread: 0, or a code for
 * fileio_strerror (it never ends the program, so it can run in a parallel region). */
int st_read_range(const st_file *st, const st_tensor *t, int64_t at, int64_t len, void *buf);

#endif
