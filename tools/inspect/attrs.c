/* Attribute values as text: numbers and strings, scalars and short arrays; anything else by its
 * HDF5 class, so the summary never fails on an unusual attribute. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "inspect.h"
#include "runtime.h"

#define SHOW_MAX 16 /* values printed from an array attribute before "..." */

typedef union { double d; int64_t i; uint64_t u; } number;

static void print_numbers(hid_t a, hid_t type, int64_t n)
{
    int is_int = H5Tget_class(type) == H5T_INTEGER;
    int is_unsigned = is_int && H5Tget_sign(type) == H5T_SGN_NONE;
    hid_t mem = !is_int ? H5T_NATIVE_DOUBLE : is_unsigned ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64;
    number *v = sl_malloc((size_t)n * sizeof *v, "attribute values");
    if (H5Aread(a, mem, v) < 0) n = 0, printf("(unreadable)");
    for (int64_t k = 0; k < n && k < SHOW_MAX; k++) {
        printf("%s", k ? ", " : n > 1 ? "[" : "");
        if (!is_int) printf("%.9g", v[k].d);
        else if (is_unsigned) printf("%" PRIu64, v[k].u);
        else printf("%" PRId64, v[k].i);
    }
    if (n > SHOW_MAX) printf(", ... (%" PRId64 " values)", n);
    if (n > 1) printf("]");
    free(v);
}

static void print_strings(hid_t a, hid_t type, int64_t n)
{
    int vlen = H5Tis_variable_str(type) > 0;
    size_t size = vlen ? sizeof(char *) : H5Tget_size(type);
    char *buf = sl_calloc((size_t)n, size, "attribute strings");
    hid_t mem = H5Tcopy(type);
    int ok = H5Aread(a, mem, buf) >= 0;
    if (!ok) printf("(unreadable)");
    for (int64_t k = 0; ok && k < n && k < SHOW_MAX; k++) {
        const char *s = vlen ? ((char **)buf)[k] : buf + k * size;
        size_t len = vlen ? (s ? strlen(s) : 0) : strnlen(s, size); /* fixed-size: NUL optional */
        printf("%s\"%.*s\"", k ? ", " : "", (int)len, s ? s : "");
    }
    if (n > SHOW_MAX) printf(", ... (%" PRId64 " strings)", n);
    if (ok && vlen) {
        hid_t space = H5Aget_space(a);
        H5Dvlen_reclaim(mem, space, H5P_DEFAULT, buf);
        H5Sclose(space);
    }
    H5Tclose(mem);
    free(buf);
}

static herr_t print_one(hid_t loc, const char *name, const H5A_info_t *info, void *unused)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    int64_t n = H5Sget_simple_extent_npoints(space);
    printf("  %s = ", name);
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
    case H5T_FLOAT: print_numbers(a, type, n); break;
    case H5T_STRING: print_strings(a, type, n); break;
    default: printf("(HDF5 type class %d, %" PRId64 " values)", (int)H5Tget_class(type), n); break;
    }
    printf("\n");
    H5Sclose(space);
    H5Tclose(type);
    H5Aclose(a);
    return 0;
}

void print_attributes(hid_t file, const char *obj)
{
    hid_t o = H5Oopen(file, obj, H5P_DEFAULT);
    if (o < 0) sl_fatal("%s: cannot open %s to read its attributes", h5_name(file), obj);
    printf("attributes of %s:\n", obj);
    H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, NULL, print_one, NULL);
    H5Oclose(o);
}
