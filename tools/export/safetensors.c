/* safetensors writer: an 8-byte little-endian header length, a JSON header
 * {"__metadata__": {...}, name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}
 * padded with spaces to a multiple of 8, then the raw tensor data, each tensor where its offsets
 * say (relative to the end of the header). Tensors are streamed one at a time. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "runtime.h"

/* Integers as raw JSON text: cJSON's numbers are doubles, and offsets must print exactly. */
static cJSON *json_int(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return cJSON_CreateRaw(buf);
}

static cJSON *header_json(const export_adapter *a)
{
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    int64_t offset = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        const export_tensor *t = &a->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndims; d++) cJSON_AddItemToArray(shape, json_int(t->dims[d]));
        cJSON *offsets = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offsets, json_int(offset));
        offset += t->n * (int64_t)sizeof(float);
        cJSON_AddItemToArray(offsets, json_int(offset));
    }
    return h;
}

static void write_bytes(FILE *out, const void *buf, size_t n, const char *path)
{
    if (n && fwrite(buf, 1, n, out) != n) sl_fatal("cannot write %s: %s (disk full?)", path, strerror(errno));
}

void safetensors_write(const export_adapter *a, FILE *out, const char *path)
{
    cJSON *h = header_json(a);
    char *text = cJSON_PrintUnformatted(h);
    if (!text) sl_fatal("out of memory building the safetensors header of %s", path);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    uint8_t size_le[8];
    for (int i = 0; i < 8; i++) size_le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    write_bytes(out, size_le, sizeof size_le, path);
    write_bytes(out, text, len, path);
    write_bytes(out, "        ", padded - len, path);
    free(text);
    cJSON_Delete(h);
    for (int i = 0; i < a->n_tensors; i++) {
        const export_tensor *t = &a->tensors[i];
        float *buf = sl_malloc((size_t)t->n * sizeof(float), t->h5_path);
        export_tensor_read(a, t, buf);
        write_bytes(out, buf, (size_t)t->n * sizeof(float), path);
        free(buf);
    }
}
