/* metrics: extendable series in metrics.h5, reopened for every row so the file is complete and
 * closed between rows (see metrics.h for why not SWMR). */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5io.h"
#include "runtime.h"

#define GROUP "/metrics"
#define CHUNK_ROWS 1024

static const sl_metric STANDARD[] = {
    {"loss", "nats per counted target", NAN},
    {"lr", "1", NAN},
    {"grad_norm", "1 (L2 norm over all trainable parameters, before clipping)", NAN},
    {"tokens_per_s", "tokens/s", NAN},
};

/* Latest format (superblock v3) marks the file open-for-write, so a reader that arrives mid-append
 * fails cleanly instead of reading half-written metadata. No file lock: readers never block us. */
static hid_t access_plist(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    H5Pset_file_locking(fapl, 0, 1);
    return fapl;
}

static hid_t open_file(const char *path, int create)
{
    hid_t fapl = access_plist();
    hid_t f = create ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : H5Fopen(path, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0 && create) sl_fatal("cannot create metrics file '%s' (does its directory exist and is it writable?)", path);
    if (f < 0)
        sl_fatal("cannot open metrics file '%s' for appending (if a run died while writing it, "
                 "'h5clear -s %s' clears its open-for-write mark)", path, path);
    return f;
}

static void create_series(hid_t f, const char *name, sl_dtype type, const char *units, int64_t rows)
{
    char path[256];
    if (!*name || strchr(name, '/') || snprintf(path, sizeof path, GROUP "/%s", name) >= (int)sizeof path)
        sl_fatal("%s: metric name '%s' (expected a non-empty name without '/')", h5_name(f), name);
    hsize_t dims = (hsize_t)rows, max = H5S_UNLIMITED, chunk = CHUNK_ROWS;
    hid_t space = H5Screate_simple(1, &dims, &max), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    const double nan = NAN;
    if (type == SL_F64) H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &nan); /* earlier rows read as missing */
    hid_t d = H5Dcreate2(f, path, h5_type(type), space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) sl_fatal("%s: cannot create dataset %s (disk full?)", h5_name(f), path);
    H5Dclose(d), H5Pclose(dcpl), H5Sclose(space);
    h5_set_attr_string(f, path, "units", units);
}

static void create_file(sl_metrics *m)
{
    hid_t f = open_file(m->path, 1);
    h5_set_attr_string(f, "/", "shardlora_kind", "metrics");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "shardlora_version", sl_version());
    h5_make_groups(f, GROUP);
    create_series(f, "step", SL_I64, "optimizer steps", 0);
    for (size_t i = 0; i < sizeof STANDARD / sizeof STANDARD[0]; i++)
        create_series(f, STANDARD[i].name, SL_F64, STANDARD[i].units, 0);
    h5_close(f);
}

static herr_t set_length(hid_t group, const char *name, const H5L_info_t *info, void *rows)
{
    hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
    hsize_t n = *(const hsize_t *)rows;
    herr_t rc = d < 0 ? -1 : H5Dset_extent(d, &n);
    if (d >= 0) H5Dclose(d);
    return rc;
}

/* Every series to rows long: new rows are NaN, rows past the end are dropped. */
static void set_rows(hid_t f, int64_t rows)
{
    hsize_t n = (hsize_t)rows;
    if (H5Literate_by_name(f, GROUP, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, set_length, &n, H5P_DEFAULT) < 0)
        sl_fatal("%s: cannot resize the datasets of %s to %lld rows (is every member an extendable 1-D dataset?)",
                 h5_name(f), GROUP, (long long)rows);
}

/* Keep the rows up to resume_step, so a restart from that checkpoint continues a consistent series. */
static void truncate_file(sl_metrics *m, int64_t resume_step)
{
    hid_t f = open_file(m->path, 0);
    char *kind = h5_has_attr(f, "/", "shardlora_kind") ? h5_attr_string(f, "/", "shardlora_kind") : strdup("none");
    if (strcmp(kind, "metrics") != 0)
        sl_fatal("%s: shardlora_kind is '%s' (expected 'metrics'); is --out pointing at another run's files?",
                 m->path, kind);
    free(kind);
    int64_t n = h5_shape_of(f, GROUP "/step").n, keep = 0;
    int64_t *steps = sl_malloc((size_t)(n ? n : 1) * 8, "metrics steps");
    h5_read(f, GROUP "/step", SL_I64, steps);
    for (; keep < n && steps[keep] <= resume_step; keep++)
        if (keep > 0 && steps[keep] <= steps[keep - 1])
            sl_fatal("%s: %s/step is not increasing at row %lld (%lld after %lld)", m->path, GROUP,
                     (long long)keep, (long long)steps[keep], (long long)steps[keep - 1]);
    set_rows(f, keep);
    m->rows = keep;
    m->last_step = keep ? steps[keep - 1] : -1;
    free(steps);
    h5_close(f);
}

void metrics_open(sl_metrics *m, const char *path, int64_t resume_step)
{
    m->path = strdup(path);
    m->rows = 0, m->last_step = -1;
    if (resume_step >= 0 && access(path, F_OK) == 0) truncate_file(m, resume_step);
    else create_file(m);
}

/* Copy src to dst (the next version of the file is built beside it). */
static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[1 << 16];
    size_t got;
    int ok = in && out;
    while (ok && (got = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, got, out) == got;
    ok = ok && !ferror(in);
    if (out && fclose(out) != 0) ok = 0;
    if (in) fclose(in);
    if (!ok) sl_fatal("cannot copy metrics file '%s' to '%s': %s (disk full?)", src, dst, strerror(errno));
}

/* Rows are appended to a copy that then replaces the file, so a reader always sees a whole file:
 * one that opened the old version keeps reading it, consistently, while the new one appears. */
void metrics_append(sl_metrics *m, int64_t step, const sl_metric *values, int n)
{
    if (step <= m->last_step)
        sl_fatal("%s: metrics row for step %lld after step %lld (steps must increase)", m->path, (long long)step,
                 (long long)m->last_step);
    char next[4200];
    snprintf(next, sizeof next, "%s.next", m->path);
    copy_file(m->path, next);
    hid_t f = open_file(next, 0);
    char path[256];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, GROUP "/%s", values[i].name);
        if (!h5_has(f, path)) create_series(f, values[i].name, SL_F64, values[i].units, m->rows);
    }
    set_rows(f, m->rows + 1);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, GROUP "/%s", values[i].name);
        h5_write_range(f, path, SL_F64, m->rows, 1, &values[i].value);
    }
    h5_write_range(f, GROUP "/step", SL_I64, m->rows, 1, &step);
    h5_close(f);
    if (rename(next, m->path) != 0) sl_fatal("cannot replace metrics file '%s': %s", m->path, strerror(errno));
    m->rows++, m->last_step = step;
}

void metrics_close(sl_metrics *m)
{
    free(m->path);
    m->path = NULL;
}
