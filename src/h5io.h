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
/* path as messages name it: with the group's own path before it where loc is a group (h5_open_group;
 * "." names the group). Valid until four more calls. */
const char *h5_object_name(hid_t loc, const char *path);

int h5_has(hid_t file, const char *path); /* a dataset or group exists at path */
/* A group, open, in place of the file for the functions here (and h5_name): its members are named
 * relative to it, each found with one lookup rather than from the root; messages name them in full.
 * Fatal when path is no group. */
hid_t h5_open_group(hid_t file, const char *path);
void h5_close_group(hid_t group);
int h5_is_group(hid_t file, const char *path);
h5_shape h5_shape_of(hid_t file, const char *path); /* fatal when missing or not a dataset */
/* Fatal unless the dataset has this many dimensions and these sizes (dims[i] < 0: any). */
h5_shape h5_expect_shape(hid_t file, const char *path, int ndims, const int64_t *dims);

/* Read a whole dataset converted to mem (float types convert to float types, integers to integers). */
void h5_read(hid_t file, const char *path, sl_dtype mem, void *buf);
/* Read the flat (row-major) element range [start, start + count) of a dataset of any rank. */
void h5_read_range(hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count, void *buf);
/* A float dataset (float32, bfloat16 or float16) read with pread from any thread, bypassing
 * HDF5, which is not thread-safe: only contiguous datasets of files open read-only qualify (see
 * h5io.c). h5_direct_open says whether path does (and opens r), on one thread; h5_direct_read
 * reads elements [e0, e0 + n) into out as stored, or widened to float32 (words: room for n
 * 16-bit words); a failure is kept and reported by h5_direct_close, which ends the program. */
typedef struct {
    int fd;
    int64_t addr, n; /* file offset of element 0; elements of the dataset */
    sl_dtype stored;
    int elem_size;
    int err;         /* the first failed read's errno, -1 for an end of file */
    int64_t bytes;   /* bytes read */
    char file[1024];
    char path[256];
} h5_direct;
int h5_direct_open(hid_t file, const char *path, h5_direct *r);
void h5_direct_read(h5_direct *r, int64_t e0, int64_t n, void *out, int widen, uint16_t *words);
void h5_direct_close(h5_direct *r);
/* Ranges of several datasets read as one: h5_batch_read_range takes a range as h5_read_range
 * would (one thread; collective where that is), reading it at once where it cannot be read
 * directly and otherwise keeping it, with a file descriptor, for h5_batch_finish, which reads all
 * it kept on every thread, none waiting at one range's end for another's reads (on a cold disk
 * those waits, three per quantized weight, idled it), then ends the batch; a failed read ends the
 * program naming its dataset. Start from {0}; buf must stay until the finish. */
typedef struct {
    struct h5_batch_range *ranges;
    int n, capacity;
} h5_batch;
void h5_batch_read_range(h5_batch *b, hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count,
                         void *buf);
void h5_batch_finish(h5_batch *b);
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
/* Create a dataset whose bytes the caller writes itself, at the returned file offset, with pwrite on
 * a descriptor of its own (from every thread and rank at once): contiguous, its storage allocated
 * now and never filled or written by HDF5, little-endian in file_type. Collective with MPI. */
int64_t h5_create_dataset_at(hid_t file, const char *path, sl_dtype file_type, int ndims, const int64_t *dims);
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
