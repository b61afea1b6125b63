/* safetensors: one .safetensors file: its JSON header, validated whole when opened, and reads of
 * one tensor at a time (files can be tens of GB). */
#ifndef SL_IMPORT_SAFETENSORS_H
#define SL_IMPORT_SAFETENSORS_H

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "dtype.h"

#define ST_MAXDIMS 8

typedef struct {
    char *path;
    FILE *f;
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
/* Read a tensor's bytes (t->nbytes) into buf. */
void st_read(const st_file *st, const st_tensor *t, void *buf);

#endif
