/* safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
 * data_offsets}, "__metadata__": {...}}, then the raw little-endian data area. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "runtime.h"

static const struct { const char *name; int size; sl_dtype dtype; } ST_DTYPES[] = {
    {"F32", 4, SL_F32}, {"F16", 2, SL_F16}, {"BF16", 2, SL_BF16}, {"F64", 8, SL_DTYPE_OTHER},
    {"I64", 8, SL_DTYPE_OTHER}, {"U64", 8, SL_DTYPE_OTHER}, {"I32", 4, SL_DTYPE_OTHER},
    {"U32", 4, SL_DTYPE_OTHER}, {"I16", 2, SL_DTYPE_OTHER}, {"U16", 2, SL_DTYPE_OTHER},
    {"I8", 1, SL_DTYPE_OTHER}, {"U8", 1, SL_DTYPE_OTHER}, {"BOOL", 1, SL_DTYPE_OTHER},
    {"F8_E4M3", 1, SL_DTYPE_OTHER}, {"F8_E5M2", 1, SL_DTYPE_OTHER},
};
#define N_ST_DTYPES (int)(sizeof ST_DTYPES / sizeof ST_DTYPES[0])

static uint64_t read_header_length(const st_file *st)
{
    unsigned char b[8];
    if (st->file_size < 8 || fileio_pread(st->fd, b, 8, 0) != 0)
        sl_fatal("%s: file is %lld bytes, shorter than the 8-byte header length of a safetensors file",
                 st->path, (long long)st->file_size);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
    if (len > (uint64_t)st->file_size - 8)
        sl_fatal("%s: header length %llu exceeds file size %lld (truncated or not a safetensors file)",
                 st->path, (unsigned long long)len, (long long)st->file_size);
    return len;
}

static void parse_header(st_file *st, uint64_t len)
{
    char *text = sl_malloc(len + 1, st->path);
    int rc = fileio_pread(st->fd, text, len, 8);
    if (rc) sl_fatal("%s: cannot read the %llu-byte header: %s", st->path, (unsigned long long)len, fileio_strerror(rc));
    text[len] = 0;
    st->header = cJSON_ParseWithLength(text, len);
    free(text);
    if (!st->header || !cJSON_IsObject(st->header))
        sl_fatal("%s: the %llu-byte header is not a valid JSON object (damaged or not a safetensors file)",
                 st->path, (unsigned long long)len);
}

/* A count or offset: a whole number in [0, 2^63), tested as a double before converting (a larger one
 * does not fit an int64_t). */
static int64_t json_count(const st_file *st, const char *tensor, const char *field, const cJSON *v)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 0x1p63) ||
        v->valuedouble != floor(v->valuedouble))
        sl_fatal("%s: tensor %s: %s must hold non-negative integers below 2^63", st->path, tensor, field);
    return (int64_t)v->valuedouble;
}

static int dtype_index(const char *name)
{
    for (int i = 0; i < N_ST_DTYPES; i++)
        if (strcmp(name, ST_DTYPES[i].name) == 0) return i;
    return -1;
}

static void parse_shape(const st_file *st, const char *name, const cJSON *shape, st_tensor *t)
{
    if (!cJSON_IsArray(shape)) sl_fatal("%s: tensor %s: 'shape' is missing or not an array", st->path, name);
    t->ndims = cJSON_GetArraySize(shape);
    if (t->ndims > ST_MAXDIMS)
        sl_fatal("%s: tensor %s has %d dimensions (at most %d supported)", st->path, name, t->ndims, ST_MAXDIMS);
    t->n = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        t->dims[d] = json_count(st, name, "shape", v);
        if (t->dims[d] > 0 && t->n > INT64_MAX / t->dims[d])
            sl_fatal("%s: tensor %s: shape dimension %d (%lld) makes more than 2^63 elements (damaged header)",
                     st->path, name, d, (long long)t->dims[d]);
        t->n *= t->dims[d];
    }
}

/* Fill t from one header entry, checking everything against the file. */
static void parse_entry(const st_file *st, const cJSON *e, st_tensor *t)
{
    const char *name = e->string;
    memset(t, 0, sizeof *t);
    t->name = name;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dtype)) sl_fatal("%s: tensor %s: 'dtype' is missing or not a string", st->path, name);
    int di = dtype_index(dtype->valuestring);
    if (di < 0) sl_fatal("%s: tensor %s: unknown dtype '%s'", st->path, name, dtype->valuestring);
    t->dtype_name = ST_DTYPES[di].name;
    t->dtype = ST_DTYPES[di].dtype;
    parse_shape(st, name, cJSON_GetObjectItemCaseSensitive(e, "shape"), t);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        sl_fatal("%s: tensor %s: 'data_offsets' is missing or not a pair [begin, end]", st->path, name);
    int64_t begin = json_count(st, name, "data_offsets", off->child);
    int64_t end = json_count(st, name, "data_offsets", off->child->next);
    int64_t area = st->file_size - st->data_start;
    if (begin > end || end > area)
        sl_fatal("%s: tensor %s: data_offsets [%lld, %lld] lie outside the data area of %lld bytes",
                 st->path, name, (long long)begin, (long long)end, (long long)area);
    t->offset = st->data_start + begin;
    t->nbytes = end - begin;
    const int size = ST_DTYPES[di].size;
    if (t->n > INT64_MAX / size)
        sl_fatal("%s: tensor %s: %lld elements of %s are more than 2^63 bytes (damaged header)", st->path, name,
                 (long long)t->n, t->dtype_name);
    if (t->nbytes != t->n * size)
        sl_fatal("%s: tensor %s: data_offsets span %lld bytes, expected %lld (%lld elements of %s)", st->path,
                 name, (long long)t->nbytes, (long long)(t->n * size), (long long)t->n, t->dtype_name);
}

void st_open(st_file *st, const char *path)
{
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    st->fd = open(path, O_RDONLY);
    if (st->fd < 0) sl_fatal("cannot open safetensors file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(st->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        sl_fatal("safetensors file %s is not a regular file (expected the file itself)", path);
    st->file_size = (int64_t)sb.st_size;
    uint64_t len = read_header_length(st);
    st->data_start = 8 + (int64_t)len;
    parse_header(st, len);
    st_tensor t;
    for (const cJSON *e = st->header->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        if (!cJSON_IsObject(e)) sl_fatal("%s: header entry %s is not an object", path, e->string);
        parse_entry(st, e, &t);
        st->n_tensors++;
    }
}

void st_close(st_file *st)
{
    if (st->path && st->fd >= 0) close(st->fd); /* unopened when st_open stopped at an error caught by rt_try */
    cJSON_Delete(st->header);
    free(st->path);
    memset(st, 0, sizeof *st);
}

int st_find(const st_file *st, const char *name, st_tensor *t)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(st->header, name);
    if (!e || strcmp(name, "__metadata__") == 0) return 0;
    parse_entry(st, e, t);
    return 1;
}

void st_read(const st_file *st, const st_tensor *t, void *buf)
{
    int rc = fileio_pread_threads(st->fd, buf, (size_t)t->nbytes, t->offset);
    if (rc)
        sl_fatal("%s: tensor %s: cannot read %lld bytes at offset %lld: %s", st->path, t->name, (long long)t->nbytes,
                 (long long)t->offset, fileio_strerror(rc));
}

int st_read_range(const st_file *st, const st_tensor *t, int64_t at, int64_t len, void *buf)
{
    return fileio_pread(st->fd, buf, (size_t)len, t->offset + at);
}
