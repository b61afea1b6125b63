/* h5io: HDF5 helpers that turn every failure into a message naming the file and the object. */
#include "h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "runtime.h"

static int64_t bytes_read_total, bytes_read_direct;

static void quiet_hdf5(void)
{
    static int done;
    if (!done) H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* we report errors ourselves */
    done = 1;
}

const char *h5_name(hid_t file)
{
    static char names[8][4096];
    static int next;
    char *buf = names[next++ % 8];
    if (H5Fget_name(file, buf, sizeof names[0]) < 0) strcpy(buf, "(unknown file)");
    return buf;
}

/* The file a location (the file, or a group opened in it) belongs to, whose properties say how
 * its datasets are read. */
static hid_t file_of(hid_t loc)
{
    if (H5Iget_type(loc) == H5I_FILE) return loc;
    hid_t f = H5Iget_file_id(loc); /* the file's own id, with one more reference */
    H5Idec_ref(f);
    return f;
}

const char *h5_object_name(hid_t loc, const char *path)
{
    if (H5Iget_type(loc) == H5I_FILE) return path;
    static char names[4][1280];
    static int next;
    char *buf = names[next++ % 4], group[1024];
    if (H5Iget_name(loc, group, sizeof group) < 0) strcpy(group, "(unknown group)");
    if (strcmp(path, ".") == 0) snprintf(buf, sizeof names[0], "%s", group);
    else snprintf(buf, sizeof names[0], "%s/%s", group, path);
    return buf;
}

/* What the program needs to know of the files it opened, noted once at open: asking HDF5 each time
 * would cost a collective (H5Fget_access_plist duplicates the communicator) or a copy of the
 * file's creation properties, on every read. */
typedef struct {
    hid_t id;
    int mpi;    /* open with a communicator: transfers are collective */
    int direct; /* open read-only, no user block: contiguous datasets are where H5Dget_offset says */
} open_file;
enum { MAX_OPEN_FILES = 256 };
static open_file open_files[MAX_OPEN_FILES];
static int n_open_files;

static void note_file(hid_t f, int mpi, int writable)
{
    if (n_open_files == MAX_OPEN_FILES) sl_fatal("internal error: more than %d HDF5 files open", MAX_OPEN_FILES);
    hsize_t userblock = 1;
    if (!writable) {
        hid_t fcpl = H5Fget_create_plist(f);
        H5Pget_userblock(fcpl, &userblock);
        H5Pclose(fcpl);
    }
    open_files[n_open_files++] = (open_file){.id = f, .mpi = mpi, .direct = !writable && userblock == 0};
}

static open_file noted_file(hid_t f)
{
    for (int i = 0; i < n_open_files; i++)
        if (open_files[i].id == f) return open_files[i];
    return (open_file){.id = f};
}

static void forget_file(hid_t f)
{
    for (int i = 0; i < n_open_files; i++)
        if (open_files[i].id == f) open_files[i] = open_files[--n_open_files];
}

static hid_t file_access(MPI_Comm comm)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (comm != MPI_COMM_NULL) {
        H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
        H5Pset_all_coll_metadata_ops(fapl, 1);
        H5Pset_coll_metadata_write(fapl, 1);
    }
    return fapl;
}

hid_t h5_open(const char *path, const char *what, int writable, MPI_Comm comm)
{
    quiet_hdf5();
    if (access(path, F_OK) != 0)
        sl_fatal("cannot open %s file '%s': %s", what, path, strerror(errno));
    if (access(path, writable ? R_OK | W_OK : R_OK) != 0)
        sl_fatal("cannot open %s file '%s' for %s: %s", what, path, writable ? "writing" : "reading",
                 strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        sl_fatal("%s file '%s' is not an HDF5 file (expected HDF5, found other content)", what, path);
    hid_t fapl = file_access(comm);
    hid_t f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) sl_fatal("cannot open %s file '%s' with HDF5 (damaged or locked file?)", what, path);
    note_file(f, comm != MPI_COMM_NULL, writable);
    return f;
}

hid_t h5_create(const char *path, const char *what, MPI_Comm comm)
{
    quiet_hdf5();
    hid_t fapl = file_access(comm);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f >= 0) note_file(f, comm != MPI_COMM_NULL, 1);
    if (f < 0) {
        const char *slash = strrchr(path, '/');
        sl_fatal("cannot create %s file '%s'%s", what, path,
                 slash ? " (does its directory exist and is it writable?)" : " (is the directory writable?)");
    }
    return f;
}

void h5_close(hid_t file)
{
    forget_file(file);
    if (file >= 0 && H5Fclose(file) < 0) sl_fatal("closing HDF5 file failed (disk full or I/O error?)");
}

void h5_close_all(hid_t file)
{
    const unsigned kinds = H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR | H5F_OBJ_LOCAL;
    ssize_t n = H5Fget_obj_count(file, kinds);
    hid_t *ids = n > 0 ? sl_malloc((size_t)n * sizeof *ids, "open HDF5 objects") : NULL;
    if (n > 0) n = H5Fget_obj_ids(file, kinds, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) H5Idec_ref(ids[i]);
    free(ids);
    forget_file(file);
    H5Fclose(file); /* its own error, if any, adds nothing to the one being handled */
}

int h5_has(hid_t file, const char *path)
{
    /* One lookup of the whole path: it fails (errors are quiet) where a parent is missing. */
    return strcmp(path, "/") == 0 || H5Oexists_by_name(file, path, H5P_DEFAULT) > 0;
}

hid_t h5_open_group(hid_t file, const char *path)
{
    hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
    if (g < 0) sl_fatal("%s: group %s is missing", h5_name(file), h5_object_name(file, path));
    return g;
}

void h5_close_group(hid_t group) { H5Gclose(group); }

int h5_is_group(hid_t file, const char *path)
{
    H5O_info_t info; /* fails (quietly) where path or a parent is missing */
    return H5Oget_info_by_name(file, path, &info, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_GROUP;
}

/* A 16-bit float of exactly this layout (as make_small_float builds it, little-endian), whose raw
 * words the program converts itself: HDF5's soft conversion of custom floats runs at ~20 MB/s. */
static int is_layout(hid_t t, size_t mant_bits, size_t exp_bits, size_t bias)
{
    size_t spos, epos, esize, mpos, msize;
    H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
    return H5Tget_size(t) == 2 && H5Tget_precision(t) == 16 && H5Tget_offset(t) == 0 &&
           H5Tget_order(t) == H5T_ORDER_LE && H5Tget_norm(t) == H5T_NORM_IMPLIED && spos == 15 &&
           epos == mant_bits && esize == exp_bits && mpos == 0 && msize == mant_bits && H5Tget_ebias(t) == bias;
}

static sl_dtype classify(hid_t t)
{
    size_t size = H5Tget_size(t);
    switch (H5Tget_class(t)) {
    case H5T_FLOAT: {
        size_t spos, epos, esize, mpos, msize;
        H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
        if (size == 4 && msize == 23) return SL_F32;
        if (size == 8 && msize == 52) return SL_F64;
        if (size == 2 && is_layout(t, 10, 5, 15)) return SL_F16;
        if (size == 2 && is_layout(t, 7, 8, 127)) return SL_BF16;
        return SL_DTYPE_OTHER;
    }
    case H5T_INTEGER: {
        int is_signed = H5Tget_sign(t) == H5T_SGN_2;
        switch (size) {
        case 1: return is_signed ? SL_I8 : SL_U8;
        case 2: return is_signed ? SL_I16 : SL_U16;
        case 4: return is_signed ? SL_I32 : SL_U32;
        case 8: return is_signed ? SL_I64 : SL_U64;
        default: return SL_DTYPE_OTHER;
        }
    }
    default: return SL_DTYPE_OTHER;
    }
}

static hid_t make_small_float(size_t mant_bits, size_t exp_bits, size_t bias)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, mant_bits, exp_bits, 0, mant_bits);
    H5Tset_offset(t, 0);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, bias);
    return t;
}

hid_t h5_type(sl_dtype t)
{
    static hid_t bf16 = -1, f16 = -1;
    switch (t) {
    case SL_F32: return H5T_NATIVE_FLOAT;
    case SL_F64: return H5T_NATIVE_DOUBLE;
    case SL_BF16: if (bf16 < 0) bf16 = make_small_float(7, 8, 127); return bf16;
    case SL_F16: if (f16 < 0) f16 = make_small_float(10, 5, 15); return f16;
    case SL_I8: return H5T_NATIVE_INT8;
    case SL_U8: return H5T_NATIVE_UINT8;
    case SL_I16: return H5T_NATIVE_INT16;
    case SL_U16: return H5T_NATIVE_UINT16;
    case SL_I32: return H5T_NATIVE_INT32;
    case SL_U32: return H5T_NATIVE_UINT32;
    case SL_I64: return H5T_NATIVE_INT64;
    case SL_U64: return H5T_NATIVE_UINT64;
    default: sl_fatal("internal error: no HDF5 type for %s", sl_dtype_name(t));
    }
}

static hid_t open_dataset(hid_t file, const char *path)
{
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT); /* why it failed is asked after */
    if (d < 0 && !h5_has(file, path)) sl_fatal("%s: dataset %s is missing", h5_name(file), h5_object_name(file, path));
    if (d < 0)
        sl_fatal("%s: %s is not a dataset (expected a dataset, found a group or link)", h5_name(file),
                 h5_object_name(file, path));
    return d;
}

h5_shape h5_shape_of(hid_t file, const char *path)
{
    hid_t d = open_dataset(file, path);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    h5_shape sh = {.dtype = classify(t)};
    sh.ndims = H5Sget_simple_extent_ndims(s);
    if (sh.ndims > H5IO_MAXDIMS) {
        H5Tclose(t), H5Sclose(s), H5Dclose(d); /* before the error: the checkpoint probes catch it */
        sl_fatal("%s: dataset %s has %d dimensions (at most %d supported)", h5_name(file),
                 h5_object_name(file, path), sh.ndims, H5IO_MAXDIMS);
    }
    hsize_t dims[H5IO_MAXDIMS];
    H5Sget_simple_extent_dims(s, dims, NULL);
    sh.n = 1;
    for (int i = 0; i < sh.ndims; i++) sh.dims[i] = (int64_t)dims[i], sh.n *= (int64_t)dims[i];
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    return sh;
}

static void format_dims(char *buf, size_t len, int ndims, const int64_t *dims)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndims && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, dims[i] < 0 ? "%s*" : "%s%lld", i ? ", " : "",
                              (long long)dims[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

h5_shape h5_expect_shape(hid_t file, const char *path, int ndims, const int64_t *dims)
{
    h5_shape sh = h5_shape_of(file, path);
    int ok = sh.ndims == ndims;
    for (int i = 0; ok && i < ndims; i++) ok = dims[i] < 0 || dims[i] == sh.dims[i];
    if (!ok) {
        char want[256], got[256];
        format_dims(want, sizeof want, ndims, dims);
        format_dims(got, sizeof got, sh.ndims, sh.dims);
        sl_fatal("%s: dataset %s has the wrong shape (expected %s, found %s)", h5_name(file),
                 h5_object_name(file, path), want, got);
    }
    return sh;
}

static hid_t transfer_plist(hid_t file)
{
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (noted_file(file_of(file)).mpi) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    return dxpl;
}

/* A float type that is none of ours, for messages: "float of 2 bytes: sign bit 15, ...". */
static void describe_float(hid_t t, char *buf, size_t len)
{
    size_t spos, epos, esize, mpos, msize;
    H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
    snprintf(buf, len, "a %zu-byte float: sign bit %zu, exponent %zu bits at bit %zu, mantissa %zu bits at bit %zu, "
             "bias %zu, precision %zu, offset %d, %s", H5Tget_size(t), spos, esize, epos, msize, mpos,
             H5Tget_ebias(t), H5Tget_precision(t), H5Tget_offset(t),
             H5Tget_order(t) == H5T_ORDER_LE ? "little-endian" : "big-endian");
}

static void check_convertible(hid_t file, const char *path, hid_t t, sl_dtype stored, sl_dtype mem)
{
    if (stored == SL_DTYPE_OTHER && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 2) {
        char found[256];
        describe_float(t, found, sizeof found);
        sl_fatal("%s: dataset %s is %s (expected IEEE float16, or bfloat16 stored as sign bit 15, exponent "
                 "8 bits at bit 7, mantissa 7 bits at bit 0, bias 127, little-endian)", h5_name(file),
                 h5_object_name(file, path), found);
    }
    if (stored == SL_DTYPE_OTHER || sl_dtype_is_float(stored) != sl_dtype_is_float(mem))
        sl_fatal("%s: dataset %s has type %s (expected %s data)", h5_name(file), h5_object_name(file, path),
                 stored == SL_DTYPE_OTHER ? "unsupported" : sl_dtype_name(stored),
                 sl_dtype_is_float(mem) ? "floating-point" : "integer");
}

/* Select the flat range [start, start + count) of a dataspace of rank 1 or 2. */
static void select_flat_range(hid_t space, int ndims, const hsize_t *dims, int64_t start, int64_t count)
{
    if (count == 0) { H5Sselect_none(space); return; }
    if (ndims <= 1) {
        hsize_t off = (hsize_t)start, cnt = (hsize_t)count;
        H5Sselect_hyperslab(space, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
        return;
    }
    int64_t cols = (int64_t)dims[1], end = start + count;
    int64_t r0 = start / cols, c0 = start % cols, r1 = end / cols, c1 = end % cols;
    H5S_seloper_t op = H5S_SELECT_SET;
    if (r0 == r1) {
        hsize_t off[2] = {(hsize_t)r0, (hsize_t)c0}, cnt[2] = {1, (hsize_t)(c1 - c0)};
        H5Sselect_hyperslab(space, op, off, NULL, cnt, NULL);
        return;
    }
    if (c0 > 0) { /* the partial first row */
        hsize_t off[2] = {(hsize_t)r0, (hsize_t)c0}, cnt[2] = {1, (hsize_t)(cols - c0)};
        H5Sselect_hyperslab(space, op, off, NULL, cnt, NULL);
        op = H5S_SELECT_OR;
        r0++;
    }
    if (r1 > r0) { /* whole rows */
        hsize_t off[2] = {(hsize_t)r0, 0}, cnt[2] = {(hsize_t)(r1 - r0), (hsize_t)cols};
        H5Sselect_hyperslab(space, op, off, NULL, cnt, NULL);
        op = H5S_SELECT_OR;
    }
    if (c1 > 0) { /* the partial last row */
        hsize_t off[2] = {(hsize_t)r1, 0}, cnt[2] = {1, (hsize_t)c1};
        H5Sselect_hyperslab(space, op, off, NULL, cnt, NULL);
    }
}

/* buf holds n 16-bit words of type t in its first 2n bytes; make it n floats. Element i's float
 * covers words 2i and 2i+1, so the top half [ceil(h/2), h) of the h elements still to convert
 * lands only on words already converted: each halving is one parallel conversion. */
static void widen_in_place(float *buf, int64_t n, sl_dtype t)
{
    const uint16_t *words = (const uint16_t *)buf;
    int64_t h = n;
    while (h > 1) {
        int64_t lo = (h + 1) / 2;
        sl_to_f32(buf + lo, words + lo, t, (size_t)(h - lo));
        h = lo;
    }
    if (h == 1) sl_to_f32(buf, words, t, 1); /* reads word 0 before writing float 0 */
}

/* ---- direct reads: a read-only file's contiguous datasets, read with pread on every thread ----
 * HDF5 reads a selection on one thread (and through MPI-IO on a parallel file). A dataset stored
 * contiguously, unfiltered and allocated is one extent of the file, so a flat element range is
 * one byte range: each thread preads its pieces of it straight into the caller's buffer (the page
 * faults of a fresh buffer are taken by all threads too), and 16-bit floats are widened piece by
 * piece from a small per-thread buffer. Only for files open read-only without a user block (no
 * cached writes, addresses as stored), and only where the memory type is the stored one or the
 * widening of f16/bf16 words: exactly the bytes HDF5 would deliver. The decision depends only on
 * the file, so every rank of a parallel file takes the same path (none of these are collective). */

/* The file offset of the dataset's first byte, or -1 when it cannot be read directly. */
static int64_t direct_address(hid_t file, hid_t d)
{
    if (!noted_file(file_of(file)).direct) return -1;
    hid_t dcpl = H5Dget_create_plist(d);
    int ok = H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 && H5Pget_external_count(dcpl) == 0;
    H5Pclose(dcpl);
    haddr_t a = ok ? H5Dget_offset(d) : HADDR_UNDEF;
    return a == HADDR_UNDEF ? -1 : (int64_t)a;
}

enum { DIRECT_PIECE = 4 << 20 }; /* bytes per pread */

static void direct_init(h5_direct *r, hid_t file, const char *path, int64_t addr, sl_dtype stored, int elem_size,
                        int64_t n)
{
    *r = (h5_direct){.addr = addr, .n = n, .stored = stored, .elem_size = elem_size};
    snprintf(r->file, sizeof r->file, "%s", h5_name(file)); /* h5_name's buffers are reused */
    snprintf(r->path, sizeof r->path, "%s", h5_object_name(file, path));
    r->fd = open(r->file, O_RDONLY);
    if (r->fd < 0) sl_fatal("%s: cannot open the file again to read dataset %s: %s", r->file, path, strerror(errno));
}

void h5_direct_read(h5_direct *r, int64_t e0, int64_t n, void *out, int widen, uint16_t *words)
{
    widen = widen && (r->stored == SL_F16 || r->stored == SL_BF16);
    int rc = fileio_pread(r->fd, widen ? (void *)words : out, (size_t)(n * r->elem_size), r->addr + e0 * r->elem_size);
    if (rc) {
#pragma omp atomic write
        r->err = rc;
        return;
    }
    if (widen) sl_to_f32(out, words, r->stored, (size_t)n);
#pragma omp atomic
    r->bytes += n * r->elem_size;
}

void h5_direct_close(h5_direct *r)
{
    close(r->fd);
    bytes_read_direct += r->bytes;
    bytes_read_total += r->bytes;
    if (r->err)
        sl_fatal("%s: reading dataset %s failed (%s)", r->file, r->path,
                 r->err == FILEIO_EOF ? "the file ends before the dataset: truncated file?" : strerror(r->err));
}

/* A range kept for reading: elements [start, start + count) through r into buf, in pieces of per
 * elements; with widen, buf takes them as float32. */
struct h5_batch_range {
    h5_direct r;
    int64_t start, count, per;
    void *buf;
    int widen;
};

/* Pieces are at most DIRECT_PIECE bytes and small enough that every thread gets some (a quantized
 * member's codes are a few MB). */
static void batch_keep(h5_batch *b, const h5_direct *r, int64_t start, int64_t count, void *buf, int widen)
{
    if (b->n == b->capacity) {
        b->capacity = b->capacity ? 2 * b->capacity : 8;
        b->ranges = sl_realloc(b->ranges, (size_t)b->capacity * sizeof *b->ranges, "ranges to read");
    }
    const int64_t most = DIRECT_PIECE / r->elem_size, least = (64 << 10) / r->elem_size;
    const int64_t share = count / (4 * (int64_t)omp_get_max_threads());
    b->ranges[b->n++] = (struct h5_batch_range){.r = *r, .start = start, .count = count, .buf = buf, .widen = widen,
                                                .per = share > most ? most : share < least ? least : share};
}

/* Every kept range, a piece per thread at a time; a thread done with its pieces of one range goes
 * on to the next (nowait). */
static void read_kept(struct h5_batch_range *g, int n)
{
    int64_t pieces = 0;
    int widen = 0;
    for (int j = 0; j < n; j++) pieces += (g[j].count + g[j].per - 1) / g[j].per, widen |= g[j].widen;
#pragma omp parallel if (pieces > 1)
    {
        uint16_t *words = widen ? malloc(DIRECT_PIECE) : NULL;
        for (int j = 0; j < n; j++) {
            const int64_t per = g[j].per, count = g[j].count;
            const size_t out_size = g[j].widen ? sizeof(float) : (size_t)g[j].r.elem_size;
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t k = 0; k < (count + per - 1) / per; k++) {
                const int64_t e0 = k * per, m = count - e0 < per ? count - e0 : per;
                if (g[j].widen && !words) {
#pragma omp atomic write
                    g[j].r.err = ENOMEM;
                } else {
                    h5_direct_read(&g[j].r, g[j].start + e0, m, (char *)g[j].buf + e0 * (int64_t)out_size, g[j].widen,
                                   words);
                }
            }
        }
        free(words);
    }
}

void h5_batch_finish(h5_batch *b)
{
    read_kept(b->ranges, b->n);
    for (int j = 0; j < b->n; j++) h5_direct_close(&b->ranges[j].r);
    free(b->ranges);
    *b = (h5_batch){0};
}

int64_t h5_bytes_read_direct(void) { return bytes_read_direct; }

/* With batch, a range read directly is kept there for h5_batch_finish; without, read now. */
static void transfer_range(hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count,
                           void *buf, int writing, h5_batch *batch)
{
    hid_t d = open_dataset(file, path);
    hid_t t = H5Dget_type(d), fs = H5Dget_space(d);
    sl_dtype stored = classify(t);
    check_convertible(file, path, t, stored, mem);
    int ndims = H5Sget_simple_extent_ndims(fs);
    hsize_t dims[H5IO_MAXDIMS] = {0};
    H5Sget_simple_extent_dims(fs, dims, NULL);
    int64_t n = 1;
    for (int i = 0; i < ndims; i++) n *= (int64_t)dims[i];
    if (ndims > 2 && !(start == 0 && count == n))
        sl_fatal("%s: dataset %s has %d dimensions; ranges are read only from 1-D or 2-D datasets",
                 h5_name(file), h5_object_name(file, path), ndims);
    if (start < 0 || count < 0 || start + count > n)
        sl_fatal("%s: dataset %s: elements [%lld, %lld) requested, but it holds %lld", h5_name(file),
                 h5_object_name(file, path), (long long)start, (long long)(start + count), (long long)n);
    int words = stored == SL_F16 || stored == SL_BF16;
    int64_t addr = !writing && ndims >= 1 && ndims <= 2 ? direct_address(file, d) : -1; /* not on count: see above */
    hid_t native = mem == stored && !words && stored != SL_DTYPE_OTHER ? h5_type(mem) : -1;
    if (addr >= 0 && (words ? mem == stored || mem == SL_F32 : native >= 0 && H5Tequal(t, native) > 0)) {
        if (count) {
            h5_batch now = {0};
            h5_direct r;
            direct_init(&r, file, path, addr, stored, (int)H5Tget_size(t), n);
            batch_keep(batch ? batch : &now, &r, start, count, buf, words && mem == SL_F32);
            if (!batch) h5_batch_finish(&now);
        }
        H5Sclose(fs), H5Tclose(t), H5Dclose(d);
        return;
    }
    if (ndims == 0 && count == 0) H5Sselect_none(fs);
    else if (ndims >= 1 && ndims <= 2) select_flat_range(fs, ndims, dims, start, count);
    hsize_t mcount = (hsize_t)count;
    hid_t ms = H5Screate_simple(1, &mcount, NULL);
    if (count == 0) H5Sselect_none(ms);
    hid_t dxpl = transfer_plist(file);
    /* 16-bit floats move as the file's own words (no HDF5 conversion); float32 is widened or
     * narrowed here. Reads land in the first half of the float buffer and widen in place. */
    int narrow = words && writing && mem == SL_F32, widen = words && !writing && mem == SL_F32;
    hid_t mtype = words && (mem == stored || mem == SL_F32) ? t : h5_type(mem);
    void *data = buf;
    if (narrow) {
        data = sl_malloc((size_t)count * 2 + 1, "16-bit floats to write");
        sl_from_f32(data, buf, stored, (size_t)count);
    }
    herr_t rc = writing ? H5Dwrite(d, mtype, ms, fs, dxpl, data) : H5Dread(d, mtype, ms, fs, dxpl, data);
    if (narrow) free(data);
    if (rc < 0)
        sl_fatal("%s: %s dataset %s failed (%s)", h5_name(file), writing ? "writing" : "reading",
                 h5_object_name(file, path), writing ? "disk full or quota exceeded?" : "damaged file or I/O error?");
    if (widen) widen_in_place(buf, count, stored);
    if (!writing) bytes_read_total += count * (int64_t)H5Tget_size(t);
    H5Pclose(dxpl);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Tclose(t);
    H5Dclose(d);
}

int h5_direct_open(hid_t file, const char *path, h5_direct *r)
{
    hid_t d = open_dataset(file, path);
    hid_t t = H5Dget_type(d), fs = H5Dget_space(d), f32 = h5_type(SL_F32);
    const sl_dtype stored = classify(t);
    const int ndims = H5Sget_simple_extent_ndims(fs);
    const int64_t addr = ndims >= 1 && ndims <= 2 ? direct_address(file, d) : -1;
    const int ok = addr >= 0 && (stored == SL_BF16 || stored == SL_F16 || (stored == SL_F32 && H5Tequal(t, f32) > 0));
    if (ok) direct_init(r, file, path, addr, stored, (int)H5Tget_size(t), H5Sget_simple_extent_npoints(fs));
    H5Sclose(fs), H5Tclose(t), H5Dclose(d);
    return ok;
}

void h5_read_range(hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count, void *buf)
{
    transfer_range(file, path, mem, start, count, buf, 0, NULL);
}

void h5_batch_read_range(h5_batch *b, hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count,
                         void *buf)
{
    transfer_range(file, path, mem, start, count, buf, 0, b);
}

void h5_read(hid_t file, const char *path, sl_dtype mem, void *buf)
{
    h5_shape sh = h5_shape_of(file, path);
    transfer_range(file, path, mem, 0, sh.n, buf, 0, NULL);
}

int64_t h5_bytes_read(void) { return bytes_read_total; }

void h5_make_groups(hid_t file, const char *path)
{
    char buf[1024];
    if (strlen(path) >= sizeof buf) sl_fatal("HDF5 path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) {
                hid_t g = H5Gcreate2(file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                if (g < 0) sl_fatal("%s: cannot create group %s", h5_name(file), buf);
                H5Gclose(g);
            }
            if (saved == 0) break;
            *p = saved;
        }
    }
}

static void make_parent_groups(hid_t file, const char *path)
{
    char parent[1024];
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return;
    size_t len = (size_t)(slash - path);
    if (len >= sizeof parent) sl_fatal("HDF5 path too long: %s", path);
    memcpy(parent, path, len);
    parent[len] = 0;
    h5_make_groups(file, parent);
}

/* Create a dataset; with at_offset its storage is contiguous, allocated now and never filled, and
 * its file offset is returned (else 0). */
static int64_t create_dataset(hid_t file, const char *path, sl_dtype file_type, int ndims, const int64_t *dims,
                              int at_offset)
{
    make_parent_groups(file, path);
    hsize_t hd[H5IO_MAXDIMS];
    for (int i = 0; i < ndims; i++) hd[i] = (hsize_t)dims[i];
    hid_t s = ndims == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndims, hd, NULL);
    hid_t ftype = h5_type(file_type);
    if (file_type != SL_BF16 && file_type != SL_F16) ftype = H5Tget_native_type(ftype, H5T_DIR_DEFAULT);
    /* no modification times in object headers: the same data gives the same file bytes */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    if (at_offset) {
        H5Pset_layout(dcpl, H5D_CONTIGUOUS);
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    }
    hid_t d = H5Dcreate2(file, path, ftype, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    if (d < 0) sl_fatal("%s: cannot create dataset %s (does it exist already, or is the disk full?)",
                        h5_name(file), h5_object_name(file, path));
    haddr_t addr = at_offset ? H5Dget_offset(d) : 0;
    if (addr == HADDR_UNDEF)
        sl_fatal("%s: dataset %s has no storage in the file after its creation (expected it allocated)",
                 h5_name(file), h5_object_name(file, path));
    if (file_type != SL_BF16 && file_type != SL_F16) H5Tclose(ftype);
    H5Dclose(d);
    H5Sclose(s);
    return (int64_t)addr;
}

void h5_create_dataset(hid_t file, const char *path, sl_dtype file_type, int ndims, const int64_t *dims)
{
    create_dataset(file, path, file_type, ndims, dims, 0);
}

int64_t h5_create_dataset_at(hid_t file, const char *path, sl_dtype file_type, int ndims, const int64_t *dims)
{
    return create_dataset(file, path, file_type, ndims, dims, 1);
}

void h5_write_range(hid_t file, const char *path, sl_dtype mem, int64_t start, int64_t count, const void *buf)
{
    transfer_range(file, path, mem, start, count, (void *)buf, 1, NULL);
}

void h5_write(hid_t file, const char *path, sl_dtype file_type, sl_dtype mem, int ndims,
              const int64_t *dims, const void *buf)
{
    h5_create_dataset(file, path, file_type, ndims, dims);
    int64_t n = 1;
    for (int i = 0; i < ndims; i++) n *= dims[i];
    h5_write_range(file, path, mem, 0, RT.rank == 0 ? n : 0, buf);
}

/* ---- attributes ---- */

int h5_has_attr(hid_t file, const char *obj, const char *name)
{
    return H5Aexists_by_name(file, obj, name, H5P_DEFAULT) > 0; /* fails (quietly) where obj is missing */
}

static hid_t open_attr(hid_t file, const char *obj, const char *name)
{
    hid_t a = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT); /* why it failed is asked after */
    if (a < 0 && !h5_has_attr(file, obj, name))
        sl_fatal("%s: attribute '%s' of %s is missing", h5_name(file), name, h5_object_name(file, obj));
    if (a < 0) sl_fatal("%s: cannot open attribute '%s' of %s", h5_name(file), name, h5_object_name(file, obj));
    return a;
}

static H5T_class_t attr_class(hid_t a)
{
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    return c;
}

/* An attribute getter's error, after closing the attribute (and its type, when t >= 0): the
 * checkpoint probes run under rt_try, where what an error leaves open stays open. */
static noreturn void attr_error(hid_t file, hid_t a, hid_t t, const char *obj, const char *name, const char *what)
{
    char msg[4352];
    snprintf(msg, sizeof msg, "%s: attribute '%s' of %s %s", h5_name(file), name, h5_object_name(file, obj), what);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    sl_fatal("%s", msg);
}

/* The single-value getters read into one variable: an attribute of several values (an array, as an
 * edited file may hold) would overflow it. */
static void expect_one_value(hid_t file, hid_t a, const char *obj, const char *name)
{
    hid_t s = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    H5Sclose(s);
    char what[96];
    snprintf(what, sizeof what, "holds %lld values (expected a single value)", (long long)n);
    if (n != 1) attr_error(file, a, -1, obj, name, what);
}

int64_t h5_attr_int(hid_t file, const char *obj, const char *name)
{
    hid_t a = open_attr(file, obj, name);
    expect_one_value(file, a, obj, name);
    if (attr_class(a) != H5T_INTEGER) attr_error(file, a, -1, obj, name, "must be an integer");
    int64_t v = 0;
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) attr_error(file, a, -1, obj, name, "cannot be read");
    H5Aclose(a);
    return v;
}

double h5_attr_double(hid_t file, const char *obj, const char *name)
{
    hid_t a = open_attr(file, obj, name);
    expect_one_value(file, a, obj, name);
    H5T_class_t c = attr_class(a);
    if (c != H5T_FLOAT && c != H5T_INTEGER) attr_error(file, a, -1, obj, name, "must be a number");
    double v = 0;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) attr_error(file, a, -1, obj, name, "cannot be read");
    H5Aclose(a);
    return v;
}

char *h5_attr_string(hid_t file, const char *obj, const char *name)
{
    hid_t a = open_attr(file, obj, name);
    expect_one_value(file, a, obj, name);
    hid_t t = H5Aget_type(a);
    if (H5Tget_class(t) != H5T_STRING) attr_error(file, a, t, obj, name, "must be a string");
    char *out;
    if (H5Tis_variable_str(t) > 0) {
        char *vs = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &vs) < 0)
            sl_fatal("%s: cannot read attribute '%s' of %s", h5_name(file), name, h5_object_name(file, obj));
        out = strdup(vs ? vs : "");
        H5free_memory(vs);
        H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(t);
        out = sl_calloc(len + 1, 1, "string attribute");
        hid_t mt = H5Tcopy(t);
        if (H5Aread(a, mt, out) < 0)
            sl_fatal("%s: cannot read attribute '%s' of %s", h5_name(file), name, h5_object_name(file, obj));
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

int h5_attr_ints(hid_t file, const char *obj, const char *name, int64_t *v, int max)
{
    hid_t a = open_attr(file, obj, name);
    if (attr_class(a) != H5T_INTEGER)
        sl_fatal("%s: attribute '%s' of %s must be integers", h5_name(file), name, h5_object_name(file, obj));
    hid_t s = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    if (n > max) sl_fatal("%s: attribute '%s' of %s has %lld values (at most %d expected)", h5_name(file),
                          name, h5_object_name(file, obj), (long long)n, max);
    if (H5Aread(a, H5T_NATIVE_INT64, v) < 0)
        sl_fatal("%s: cannot read attribute '%s' of %s", h5_name(file), name, h5_object_name(file, obj));
    H5Sclose(s);
    H5Aclose(a);
    return (int)n;
}

static void write_attr_n(hid_t file, const char *obj, const char *name, hid_t type, const void *v, int n)
{
    if (h5_has_attr(file, obj, name)) H5Adelete_by_name(file, obj, name, H5P_DEFAULT);
    hsize_t len = (hsize_t)n;
    hid_t s = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &len, NULL);
    hid_t a = H5Acreate_by_name(file, obj, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, v) < 0)
        sl_fatal("%s: cannot write attribute '%s' of %s", h5_name(file), name, h5_object_name(file, obj));
    H5Aclose(a);
    H5Sclose(s);
}

static void write_attr(hid_t file, const char *obj, const char *name, hid_t type, const void *v)
{
    write_attr_n(file, obj, name, type, v, -1);
}

void h5_set_attr_ints(hid_t file, const char *obj, const char *name, const int64_t *v, int n)
{
    write_attr_n(file, obj, name, H5T_NATIVE_INT64, v, n);
}

void h5_set_attr_int(hid_t file, const char *obj, const char *name, int64_t v)
{
    write_attr(file, obj, name, H5T_NATIVE_INT64, &v);
}

void h5_set_attr_double(hid_t file, const char *obj, const char *name, double v)
{
    write_attr(file, obj, name, H5T_NATIVE_DOUBLE, &v);
}

void h5_set_attr_string(hid_t file, const char *obj, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    write_attr(file, obj, name, t, &v);
    H5Tclose(t);
}
