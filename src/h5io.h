/* h5io: HDF5 helpers. Every failure is fatal with a message naming the file and the object, and
 * what was expected and found. Files opened with an MPI communicator use MPI-IO, and their reads
 * and writes are collective: every rank of the communicator must make the same calls. */
#ifndef SL_H5IO_H
#define SL_H5IO_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>

#include "dtype.h"

#define H5IO_MAXDIMS 8

typedef struct {
    sl_dtype dtype;
    int ndims;
    int64_t dims[H5IO_MAXDIMS];
    int64_t n; /* number of elements */
} h5_shape;

/* Open an existing file (comm == MPI_COMM_NULL for serial access); "what" names its role in
 * messages ("model", "dataset", ...). Missing files and non-HDF5 files are fatal. */
hid_t h5_open(const char *path, const char *what, int writable, MPI_Comm comm);
hid_t h5_create(const char *path, const char *what, MPI_Comm comm);
void h5_close(hid_t file);
/* Close the file and every object of it still open: after an error caught by rt_try, which leaves
 * open what the failed check had opened (and the file with them). */
void h5_close_all(hid_t file);
/* The file's path, for messages. Valid until the file is closed. */
const char *h5_name(hid_t file);

int h5_has(hid_t file, const char *path); /* a dataset or group exists at path */
int h5_is_group(hid_t file, const char *path);
h5_shape h5_shape_of(hid_t file, const char *path); /* fatal when missing or not a dataset */
/* Fatal unless the dataset has this many dimensions and these sizes (dims[i] < 0: any). */
h5_shape h5_expect_shape(hid_t file, const char *path, int ndims, const int64_t *dims);

/* Read a whole dataset converted to mem (float types convert to float types, integers to integers). */
void h5_read(hid_t file, const char *path, sl_dtype mem, void *buf);
/* Read the flat (row-major) element range [start, start + count) of a dataset of any rank. */
void h5_read_range(hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count, void *buf);
/* Bytes of dataset payload this process has read, as stored in the files. */
int64_t h5_bytes_read(void);
/* Of those, the bytes read directly with pread on every thread (contiguous datasets of files open
 * read-only; see h5io.c), bypassing HDF5's own reading. */
int64_t h5_bytes_read_direct(void);

/* Create a dataset (and any missing parent groups) and write it whole; with MPI only rank 0's
 * buffer is written. file_type may differ from mem (bf16 is stored as HDF5's custom bf16 float). */
void h5_write(hid_t file, const char *path, sl_dtype file_type, sl_dtype mem, int ndims,
              const int64_t *dims, const void *buf);
/* Create a dataset without writing it, for later h5_write_range calls (chunked when extendable). */
void h5_create_dataset(hid_t file, const char *path, sl_dtype file_type, int ndims, const int64_t *dims);
/* Write the flat element range [start, start + count) of an existing dataset (collective with MPI). */
void h5_write_range(hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count, const void *buf);
/* Create intermediate groups of path (path itself included when it names a group). */
void h5_make_groups(hid_t file, const char *path);

/* Attributes on the object at obj ("/" for the file). Getters are fatal when missing. */
int h5_has_attr(hid_t file, const char *obj, const char *name);
int64_t h5_attr_int(hid_t file, const char *obj, const char *name);
double h5_attr_double(hid_t file, const char *obj, const char *name);
char *h5_attr_string(hid_t file, const char *obj, const char *name); /* malloc'd */
void h5_set_attr_int(hid_t file, const char *obj, const char *name, int64_t v);
void h5_set_attr_double(hid_t file, const char *obj, const char *name, double v);
void h5_set_attr_string(hid_t file, const char *obj, const char *name, const char *v);
/* 1-D integer array attributes (shapes, per-rank counts): returns the length, fills up to max. */
int h5_attr_ints(hid_t file, const char *obj, const char *name, int64_t *v, int max);
void h5_set_attr_ints(hid_t file, const char *obj, const char *name, const int64_t *v, int n);

/* The HDF5 type for a dtype (bf16: IEEE float32 cut to 16 bits). Do not close the result. */
hid_t h5_type(sl_dtype t);

#endif
