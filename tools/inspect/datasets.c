/* The dataset listing: every dataset reached by hard links from the root, with its shape,
 * element type and stored size. */
#include <inttypes.h>
#include <stdio.h>

#include "h5io.h"
#include "inspect.h"
#include "runtime.h"

const char *human_bytes(int64_t bytes, char *buf)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    snprintf(buf, 32, u ? "%.2f %s" : "%.0f %s", v, units[u]);
    return buf;
}

/* Types shardlora does not use are named by their HDF5 class and size. */
static void describe_type(hid_t d, sl_dtype t, char *buf, size_t len)
{
    if (t != SL_DTYPE_OTHER) {
        snprintf(buf, len, "%s", sl_dtype_name(t));
        return;
    }
    hid_t type = H5Dget_type(d);
    static const char *classes[] = {"integer", "float", "time", "string", "bitfield", "opaque",
                                    "compound", "reference", "enum", "vlen", "array"};
    H5T_class_t c = H5Tget_class(type);
    const char *name = c >= 0 && c < (int)(sizeof classes / sizeof *classes) ? classes[c] : "unknown";
    snprintf(buf, len, "%s (%zu bytes)", name, H5Tget_size(type));
    H5Tclose(type);
}

static void format_shape(const h5_shape *sh, char *buf, size_t len)
{
    if (sh->ndims == 0) {
        snprintf(buf, len, "scalar");
        return;
    }
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < sh->ndims && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%" PRId64, i ? ", " : "", sh->dims[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

static herr_t visit(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(group, name, H5P_DEFAULT);
    if (o < 0 || H5Iget_type(o) != H5I_DATASET) {
        if (o >= 0) H5Oclose(o);
        return 0;
    }
    char path[1024], shape[256], type[64], size[32];
    snprintf(path, sizeof path, "/%s", name);
    h5_shape sh = h5_shape_of(group, path);
    format_shape(&sh, shape, sizeof shape);
    describe_type(o, sh.dtype, type, sizeof type);
    int64_t stored = (int64_t)H5Dget_storage_size(o);
    printf("  %-48s %-20s %-12s %s\n", path, shape, type, human_bytes(stored, size));
    inspect_totals *t = data;
    t->datasets++, t->elements += sh.n, t->stored_bytes += stored;
    H5Oclose(o);
    return 0;
}

inspect_totals print_datasets(hid_t file)
{
    inspect_totals t = {0, 0, 0};
    printf("datasets:\n  %-48s %-20s %-12s %s\n", "path", "shape", "dtype", "stored");
    if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit, &t) < 0)
        sl_fatal("%s: cannot walk the groups of the file (damaged file?)", h5_name(file));
    return t;
}
