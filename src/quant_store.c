/* quant_store: quantized weights as HDF5 groups (layout in quant_store.h); probe, write, block-range read. */
#include "quant_store.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "h5io.h"
#include "runtime.h"

static const char *codes_name(const quant_format *f) { return f->type == QUANT_INT8 ? "codes" : "packed"; }

static void member_path(char *buf, size_t len, const char *group, const char *name)
{
    if ((size_t)snprintf(buf, len, "%s/%s", group, name) >= len) sl_fatal("HDF5 path too long: %s/%s", group, name);
}

/* The probe and the reads look a group's members up relative to the group, opened once: from the
 * root each lookup walks the whole path (a load probes hundreds of groups). */

static noreturn void malformed(hid_t group, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static noreturn void malformed(hid_t group, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_fatal("%s: quantized weight %s: %s", h5_name(group), h5_object_name(group, "."), msg);
}

static void need_attr(hid_t group, const char *name)
{
    if (!h5_has_attr(group, ".", name))
        malformed(group, "attribute '%s' is missing (a quantized group has quant_type, blocksize, shape and dtype)",
                  name);
}

/* The member's stored shape; missing members are fatal, naming what the format needs. */
static h5_shape member_shape(hid_t group, const char *name, const char *expected)
{
    if (!h5_has(group, name)) malformed(group, "dataset '%s' is missing (expected %s)", name, expected);
    return h5_shape_of(group, name);
}

static void expected_name(char *buf, size_t len, sl_dtype t, int64_t count)
{
    snprintf(buf, len, "%s [%lld]", sl_dtype_name(t), (long long)count);
}

/* Member name, whose shape s is read, must be 1-D, of type t and count elements. */
static void expect_shape(hid_t group, const char *name, h5_shape s, sl_dtype t, int64_t count)
{
    char expected[64];
    expected_name(expected, sizeof expected, t, count);
    if (s.dtype != t || s.ndims != 1 || s.n != count)
        malformed(group, "dataset '%s' is %s with %d dimension(s) and %lld elements (expected %s)", name,
                  s.dtype == SL_DTYPE_OTHER ? "of an unsupported type" : sl_dtype_name(s.dtype), s.ndims,
                  (long long)s.n, expected);
}

static void expect_member(hid_t group, const char *name, sl_dtype t, int64_t count)
{
    char expected[64];
    expected_name(expected, sizeof expected, t, count);
    expect_shape(group, name, member_shape(group, name, expected), t, count);
}

/* Stored tables must be the built-in ones, which are what every decoder here uses. */
static void expect_table(hid_t group, const char *name, const float *want, int len)
{
    expect_member(group, name, SL_F32, len);
    float got[256];
    h5_read_range(group, name, SL_F32, 0, len, got);
    for (int i = 0; i < len; i++)
        if (memcmp(&got[i], &want[i], sizeof got[i]) != 0)
            malformed(group, "dataset '%s' entry %d is %.9g, expected %.9g (bitsandbytes' table)", name, i, got[i],
                      want[i]);
}

/* Format, shape and dtype from the attributes; double quantization from absmax being uint8, whose
 * shape is returned. */
static h5_shape read_format(hid_t group, quant_store_info *info)
{
    const char *attrs[] = {"quant_type", "blocksize", "shape", "dtype"};
    for (int i = 0; i < 4; i++) need_attr(group, attrs[i]);
    int n_dims = h5_attr_ints(group, ".", "shape", info->shape, 2);
    if (n_dims != 2 || info->shape[0] <= 0 || info->shape[1] <= 0)
        malformed(group, "attribute 'shape' must hold two positive sizes [out, in] (found %d values)", n_dims);
    info->n = info->shape[0] * info->shape[1];
    h5_shape absmax = member_shape(group, "absmax", "float32, or uint8 with double quantization");
    if (absmax.dtype != SL_F32 && absmax.dtype != SL_U8)
        malformed(group, "dataset 'absmax' must be float32 or uint8 (found %s)",
                  absmax.dtype == SL_DTYPE_OTHER ? "an unsupported type" : sl_dtype_name(absmax.dtype));
    char *type = h5_attr_string(group, ".", "quant_type");
    int64_t bs = h5_attr_int(group, ".", "blocksize");
    const char *problem = bs > 0 && bs < 1 << 20 ? quant_format_make(type, absmax.dtype == SL_U8, (int)bs, &info->fmt)
                                                 : "blocksize must be positive";
    if (problem) malformed(group, "quant_type '%s', blocksize %lld: %s", type, (long long)bs, problem);
    free(type);
    char *dtype = h5_attr_string(group, ".", "dtype");
    snprintf(info->dtype, sizeof info->dtype, "%s", dtype);
    free(dtype);
    info->nblocks = quant_nblocks(&info->fmt, info->n);
    return absmax;
}

static void check_double_quant(hid_t group, const quant_store_info *info)
{
    expect_member(group, "nested_absmax", SL_F32, quant_nested_count(&info->fmt, 0, info->nblocks));
    expect_table(group, "nested_code", quant_dynamic_code(), 256);
    if (!h5_has_attr(group, ".", "offset") || !h5_has_attr(group, ".", "nested_blocksize"))
        malformed(group, "attributes 'offset' and 'nested_blocksize' are needed with double quantization "
                  "(absmax is uint8)");
    int64_t nested_bs = h5_attr_int(group, ".", "nested_blocksize");
    if (nested_bs != QUANT_NESTED_BLOCKS)
        malformed(group, "attribute 'nested_blocksize' is %lld (expected %d)", (long long)nested_bs,
                  QUANT_NESTED_BLOCKS);
    double offset = h5_attr_double(group, ".", "offset");
    if (!isfinite(offset) || (double)(float)offset != offset)
        malformed(group, "attribute 'offset' is %.17g (expected a finite float32 value)", offset);
}

void quant_store_read_info(hid_t file, const char *path, quant_store_info *info)
{
    *info = (quant_store_info){0};
    hid_t group = h5_open_group(file, path);
    read_format(group, info);
    h5_close_group(group);
}

int quant_store_probe(hid_t file, const char *path, quant_store_info *info)
{
    if (!h5_is_group(file, path)) return 0;
    *info = (quant_store_info){0};
    hid_t group = h5_open_group(file, path);
    h5_shape absmax = read_format(group, info);
    const quant_format *f = &info->fmt;
    expect_member(group, codes_name(f), SL_U8, quant_code_bytes(f, info->n, 0, info->nblocks));
    expect_shape(group, "absmax", absmax, f->double_quant ? SL_U8 : SL_F32, info->nblocks);
    expect_table(group, "code", quant_code(f->type), quant_code_len(f->type));
    if (f->double_quant) check_double_quant(group, info);
    h5_close_group(group);
    return 1;
}

/* A member: written from data through HDF5 (fd < 0), or created for bytes written at its offset,
 * which is returned: data (a table) by rank 0 through fd now, NULL by the caller. */
static int64_t member(hid_t file, const char *path, const char *name, sl_dtype t, int64_t count, const void *data,
                      int fd)
{
    char p[1024];
    member_path(p, sizeof p, path, name);
    if (fd < 0) {
        h5_write(file, p, t, t, 1, &count, data);
        return 0;
    }
    int64_t at = h5_create_dataset_at(file, p, t, 1, &count);
    int rc = data && RT.rank == 0 ? fileio_pwrite(fd, data, (size_t)count * sl_dtype_size(t), at) : 0;
    if (rc) sl_fatal("%s: cannot write %s: %s (disk full?)", h5_name(file), p, fileio_strerror(rc));
    return at;
}

/* The group and its members: from q (fd < 0), or created empty with their offsets in at. The
 * decoding tables and the attributes but offset are written either way. */
static void make_group(hid_t file, const char *path, const quant_store_info *info, const quant_view *q, int fd,
                       quant_store_addrs *at)
{
    const quant_format *f = &info->fmt;
    int64_t nb = info->nblocks;
    h5_make_groups(file, path);
    at->codes = member(file, path, codes_name(f), SL_U8, quant_code_bytes(f, info->n, 0, nb), q ? q->codes : NULL, fd);
    member(file, path, "code", SL_F32, quant_code_len(f->type), quant_code(f->type), fd);
    if (f->double_quant) {
        at->absmax = member(file, path, "absmax", SL_U8, nb, q ? q->absmax_u8 : NULL, fd);
        at->nested_absmax = member(file, path, "nested_absmax", SL_F32, quant_nested_count(f, 0, nb),
                                   q ? q->nested_absmax : NULL, fd);
        member(file, path, "nested_code", SL_F32, 256, quant_dynamic_code(), fd);
        h5_set_attr_int(file, path, "nested_blocksize", QUANT_NESTED_BLOCKS);
    } else {
        at->absmax = member(file, path, "absmax", SL_F32, nb, q ? q->absmax : NULL, fd);
    }
    h5_set_attr_string(file, path, "quant_type", quant_type_name(f->type));
    h5_set_attr_int(file, path, "blocksize", f->blocksize);
    h5_set_attr_ints(file, path, "shape", info->shape, 2);
    h5_set_attr_string(file, path, "dtype", info->dtype);
}

void quant_store_write(hid_t file, const char *path, const quant_store_info *info, const quant_view *q)
{
    quant_store_addrs unused;
    make_group(file, path, info, q, -1, &unused);
    if (info->fmt.double_quant) quant_store_set_offset(file, path, q->offset);
}

quant_store_addrs quant_store_create(hid_t file, const char *path, const quant_store_info *info, int fd)
{
    quant_store_addrs at = {0};
    make_group(file, path, info, NULL, fd, &at);
    return at;
}

void quant_store_set_offset(hid_t file, const char *path, float offset)
{
    h5_set_attr_double(file, path, "offset", (double)offset);
}

quant_store_info quant_store_describe(const quant_format *f, const int64_t dims[2], const char *dtype)
{
    quant_store_info info = {.fmt = *f, .shape = {dims[0], dims[1]}, .n = dims[0] * dims[1]};
    info.nblocks = quant_nblocks(f, info.n);
    snprintf(info.dtype, sizeof info.dtype, "%s", dtype);
    return info;
}

void quant_store_quantize(hid_t file, const char *path, const quant_format *f, const int64_t dims[2],
                          const char *dtype, const float *x)
{
    quant_store_info info = quant_store_describe(f, dims, dtype);
    int64_t bad = sl_first_nonfinite(x, SL_F32, info.n);
    if (bad >= 0)
        sl_fatal("%s: %s: value %g at flat index %lld is not finite; only finite weights can be quantized",
                 h5_name(file), path, x[bad], (long long)bad);
    int64_t nb = info.nblocks;
    quant_view q = {.codes = sl_malloc((size_t)quant_code_bytes(f, info.n, 0, nb), path),
                    .absmax = sl_malloc((size_t)nb * sizeof(float), path),
                    .absmax_u8 = sl_malloc((size_t)nb, path),
                    .nested_absmax = sl_malloc((size_t)quant_nested_count(f, 0, nb) * sizeof(float) + 1, path)};
    quant_tensor(f, x, info.n, &q);
    quant_store_write(file, path, &info, &q);
    free(q.codes), free(q.absmax), free(q.absmax_u8), free(q.nested_absmax);
}

void quant_store_queue(h5_batch *batch, hid_t file, const char *path, const quant_store_info *info, int64_t b0,
                       int64_t b1, quant_view *q)
{
    const quant_format *f = &info->fmt;
    if (b0 < 0 || b1 < b0 || b1 > info->nblocks)
        sl_fatal("%s: quantized weight %s: blocks [%lld, %lld) requested, but it has %lld", h5_name(file), path,
                 (long long)b0, (long long)b1, (long long)info->nblocks);
    if (f->double_quant && b1 > b0 && b0 % QUANT_NESTED_BLOCKS)
        sl_fatal("%s: quantized weight %s: with double quantization a block range must start a group of %d "
                 "blocks (found b0 = %lld)", h5_name(file), path, QUANT_NESTED_BLOCKS, (long long)b0);
    int empty = b1 == b0; /* still makes every read, for collective files */
    int64_t code_start = empty ? 0 : quant_code_bytes(f, info->n, 0, b0);
    int64_t code_count = empty ? 0 : quant_code_bytes(f, info->n, b0, b1);
    hid_t group = h5_open_group(file, path);
    h5_batch_read_range(batch, group, codes_name(f), SL_U8, code_start, code_count, q->codes);
    if (!f->double_quant) {
        h5_batch_read_range(batch, group, "absmax", SL_F32, b0, b1 - b0, q->absmax);
    } else {
        h5_batch_read_range(batch, group, "absmax", SL_U8, b0, b1 - b0, q->absmax_u8);
        h5_batch_read_range(batch, group, "nested_absmax", SL_F32, b0 / QUANT_NESTED_BLOCKS,
                            quant_nested_count(f, b0, b1), q->nested_absmax);
        q->offset = (float)h5_attr_double(group, ".", "offset");
    }
    h5_close_group(group);
}

void quant_store_read(hid_t file, const char *path, const quant_store_info *info, int64_t b0, int64_t b1,
                      quant_view *q)
{
    h5_batch batch = {0};
    quant_store_queue(&batch, file, path, info, b0, b1, q);
    h5_batch_finish(&batch);
}
