/* h5edit: edits spelled by fuzz input bytes, applied through the HDF5 API. */
#include "h5edit.h"

#include <errno.h>
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "runtime.h"

enum { MAX_NAMES = 256, MAX_ELEMENTS = 4096 };

typedef struct {
    const uint8_t *p;
    size_t n;
} cursor;

static unsigned take(cursor *c)
{
    if (!c->n) return 0;
    c->n--;
    return *c->p++;
}

static unsigned take16(cursor *c) { return take(c) | take(c) << 8; }

typedef struct {
    char *paths[MAX_NAMES], *attrs[MAX_NAMES];
    int n_paths, n_attrs;
    int n_file_paths; /* paths[0..n_file_paths) exist in the file (paths[0] is "/") */
} names;

static void add_name(char **list, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], name)) return;
    if (*n < MAX_NAMES) list[(*n)++] = strdup(name);
}

static herr_t on_attr(hid_t obj, const char *name, const H5A_info_t *info, void *arg)
{
    names *nm = arg;
    add_name(nm->attrs, &nm->n_attrs, name);
    return 0;
}

static herr_t on_object(hid_t root, const char *name, const H5O_info_t *info, void *arg)
{
    names *nm = arg;
    char path[1024];
    snprintf(path, sizeof path, "/%s", strcmp(name, ".") ? name : "");
    add_name(nm->paths, &nm->n_paths, path);
    hid_t obj = H5Oopen(root, path, H5P_DEFAULT);
    if (obj >= 0) {
        H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, on_attr, nm);
        H5Oclose(obj);
    }
    return 0;
}

static void free_names(names *nm)
{
    for (int i = 0; i < nm->n_paths; i++) free(nm->paths[i]);
    for (int i = 0; i < nm->n_attrs; i++) free(nm->attrs[i]);
}

static const char *pick(char *const *list, int n, cursor *c) { return n ? list[take(c) % n] : "/"; }

/* Values that sit on the edges validators test. */
static const long long EDGE_INTS[] = {0, 1, -1, 2, 3, 7, 16, 64, 255, 256, 4096, 65535, 65536, INT32_MAX,
                                      INT32_MIN, (long long)1 << 31, (long long)1 << 40, INT64_MAX, INT64_MIN};
static const double EDGE_FLOATS[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30, 1e300, DBL_MAX, -DBL_MAX};

static long long edge_int(cursor *c)
{
    unsigned k = take(c);
    return k < 200 ? EDGE_INTS[k % (sizeof EDGE_INTS / sizeof *EDGE_INTS)] : (long long)(int16_t)take16(c);
}

static double edge_float(cursor *c)
{
    unsigned k = take(c) % 16;
    return k == 10 ? NAN : k == 11 ? INFINITY : k == 12 ? -INFINITY : k >= 13 ? (double)(int16_t)take16(c) / 64
                                                                          : EDGE_FLOATS[k];
}

/* The dataset types an edit may store. */
static hid_t some_type(cursor *c, int *is_float)
{
    static const hid_t *const TYPES[] = {&H5T_NATIVE_INT8_g, &H5T_NATIVE_UINT8_g, &H5T_NATIVE_INT16_g,
                                         &H5T_NATIVE_UINT16_g, &H5T_NATIVE_INT32_g, &H5T_NATIVE_UINT32_g,
                                         &H5T_NATIVE_INT64_g, &H5T_NATIVE_UINT64_g, &H5T_NATIVE_FLOAT_g,
                                         &H5T_NATIVE_DOUBLE_g};
    unsigned k = take(c) % (sizeof TYPES / sizeof *TYPES + 1);
    *is_float = k == 8 || k == 9;
    if (k == sizeof TYPES / sizeof *TYPES) {
        hid_t s = H5Tcopy(H5T_C_S1);
        H5Tset_size(s, 8);
        return s;
    }
    return H5Tcopy(*TYPES[k]);
}

/* A dataset of some type and shape (up to 3 dimensions of up to 19, within MAX_ELEMENTS) replaces
 * whatever is at path, its elements edge values. */
static void replace_dataset(hid_t f, const char *path, cursor *c)
{
    int is_float, ndims = (int)(take(c) % 4);
    hid_t type = some_type(c, &is_float);
    hsize_t dims[3], n = 1;
    for (int d = 0; d < ndims; d++) n *= dims[d] = take(c) % 20;
    if (n > MAX_ELEMENTS) n = dims[0] = 0;
    hid_t space = ndims ? H5Screate_simple(ndims, dims, NULL) : H5Screate(H5S_SCALAR);
    if (H5Lexists(f, path, H5P_DEFAULT) > 0) H5Ldelete(f, path, H5P_DEFAULT);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(f, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0 && H5Tget_class(type) != H5T_STRING) {
        double *values = malloc(n * sizeof *values);
        for (hsize_t i = 0; i < n; i++) values[i] = is_float ? edge_float(c) : (double)edge_int(c);
        H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
        free(values);
    }
    if (d >= 0) H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(space);
    H5Tclose(type);
}

/* One element of an existing dataset set to an edge value of its kind (float or integer). */
static void poke_element(hid_t f, const char *path, cursor *c)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return;
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    int ndims = H5Sget_simple_extent_ndims(space);
    if (n > 0 && ndims >= 0 && ndims <= 8 && H5Tget_class(type) != H5T_STRING) {
        hsize_t dims[8], at[8];
        H5Sget_simple_extent_dims(space, dims, NULL);
        hsize_t flat = take16(c) % (hsize_t)n;
        for (int k = ndims - 1; k >= 0; k--) at[k] = flat % dims[k], flat /= dims[k];
        int is_float = H5Tget_class(type) == H5T_FLOAT;
        double v = is_float ? edge_float(c) : (double)edge_int(c);
        hsize_t one = 1;
        hid_t mem = H5Screate_simple(1, &one, NULL);
        if (ndims == 0 || H5Sselect_elements(space, H5S_SELECT_SET, 1, at) >= 0)
            H5Dwrite(d, H5T_NATIVE_DOUBLE, mem, ndims ? space : H5S_ALL, H5P_DEFAULT, &v);
        H5Sclose(mem);
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
}

/* An attribute (re)made on the object at path: an integer, a float, a string or an integer list. */
static void set_attribute(hid_t f, const char *path, const char *name, cursor *c)
{
    hid_t obj = H5Oopen(f, path, H5P_DEFAULT);
    if (obj < 0) return;
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    unsigned kind = take(c) % 4;
    hsize_t len = kind == 3 ? take(c) % 4 + 1 : 1;
    hid_t space = kind == 3 ? H5Screate_simple(1, &len, NULL) : H5Screate(H5S_SCALAR);
    if (kind == 2) {
        char text[17] = {0};
        size_t n = take(c) % 17;
        for (size_t i = 0; i < n; i++) text[i] = (char)take(c);
        hid_t type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, n ? n : 1);
        hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, type, text), H5Aclose(a);
        H5Tclose(type);
    } else {
        long long ints[4];
        double x = edge_float(c);
        for (hsize_t i = 0; i < len; i++) ints[i] = edge_int(c);
        hid_t type = kind == 1 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_LLONG;
        hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, type, kind == 1 ? (const void *)&x : (const void *)ints), H5Aclose(a);
    }
    H5Sclose(space);
    H5Oclose(obj);
}

static void delete_attribute(hid_t f, const char *path, const char *name)
{
    hid_t obj = H5Oopen(f, path, H5P_DEFAULT);
    if (obj < 0) return;
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    H5Oclose(obj);
}

/* The edits, in the child process: 0 when the file could not be opened or closed. */
static int edit_file(const char *path, const uint8_t *ops, size_t n, const char *const *extra_paths,
                     const char *const *extra_attrs)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return 0;
    names nm = {0};
    H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, on_object, &nm, H5O_INFO_BASIC);
    nm.n_file_paths = nm.n_paths;
    for (int i = 0; extra_paths && extra_paths[i]; i++) add_name(nm.paths, &nm.n_paths, extra_paths[i]);
    for (int i = 0; extra_attrs && extra_attrs[i]; i++) add_name(nm.attrs, &nm.n_attrs, extra_attrs[i]);
    cursor c = {ops, n};
    while (c.n) {
        switch (take(&c) % 6) {
        case 0: { /* delete an object (not the root) */
            const char *p = pick(nm.paths + 1, nm.n_file_paths - 1, &c);
            if (strcmp(p, "/") && H5Lexists(f, p, H5P_DEFAULT) > 0) H5Ldelete(f, p, H5P_DEFAULT);
            break;
        }
        case 1:
            replace_dataset(f, pick(nm.paths + 1, nm.n_paths - 1, &c), &c);
            break;
        case 2:
            poke_element(f, pick(nm.paths, nm.n_file_paths, &c), &c);
            break;
        case 3: {
            const char *obj = pick(nm.paths, nm.n_file_paths, &c);
            set_attribute(f, obj, pick(nm.attrs, nm.n_attrs, &c), &c);
            break;
        }
        case 4: {
            const char *obj = pick(nm.paths, nm.n_file_paths, &c);
            delete_attribute(f, obj, pick(nm.attrs, nm.n_attrs, &c));
            break;
        }
        case 5: { /* one object copied over another (tensors swapped, a layer duplicated) */
            const char *from = pick(nm.paths + 1, nm.n_file_paths - 1, &c), *to = pick(nm.paths + 1, nm.n_paths - 1, &c);
            if (!strcmp(from, "/") || !strcmp(to, "/") || !strcmp(from, to) || !strncmp(to, from, strlen(from))) break;
            if (H5Lexists(f, to, H5P_DEFAULT) > 0) H5Ldelete(f, to, H5P_DEFAULT);
            hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
            H5Pset_create_intermediate_group(lcpl, 1);
            H5Ocopy(f, from, f, to, H5P_DEFAULT, lcpl);
            H5Pclose(lcpl);
            break;
        }
        }
    }
    free_names(&nm);
    return H5Fclose(f) >= 0;
}

/* In a child process: HDF5 1.10.8 fails to close the file after some edit sequences (its metadata
 * cache cannot flush), and a file it cannot close stays open, and broken, in the process for good.
 * Whatever the child left on disk is the input then. */
void h5edit_apply(const char *path, const uint8_t *ops, size_t n, const char *const *extra_paths,
                  const char *const *extra_attrs)
{
    fflush(NULL);
    pid_t child = fork();
    if (child < 0) sl_fatal("h5edit: cannot fork to edit %s: %s", path, strerror(errno));
    if (child == 0) _exit(edit_file(path, ops, n, extra_paths, extra_attrs) ? 0 : 1); /* no exit handlers */
    int status;
    pid_t got;
    while ((got = waitpid(child, &status, 0)) < 0 && errno == EINTR) {} /* libFuzzer's -timeout alarm */
    if (got < 0 && errno != ECHILD) sl_fatal("h5edit: waiting for the edit of %s failed: %s", path, strerror(errno));
    if (got == child && WIFSIGNALED(status)) fprintf(stderr, "h5edit: the edit of %s ended on signal %d\n", path, WTERMSIG(status));
}

const uint8_t *h5edit_base(const char *name, void (*make)(void *path), size_t *size)
{
    char file[128];
    snprintf(file, sizeof file, "base-%s.h5", name);
    char *path = strdup(fuzz_scratch_file(file, "", 0));
    if (!fuzz_try(make, path)) {
        fprintf(stderr, "fuzz: cannot make the valid %s file: %s\n", name, fuzz_outcome());
        exit(1);
    }
    const uint8_t *bytes = fuzz_read_file(path, size);
    free(path);
    return bytes;
}
