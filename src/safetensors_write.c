/* safetensors_write: header bytes of a safetensors file (format in safetensors_write.h). */
#include "safetensors_write.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; add a byte swap");

const char *st_dtype_name(sl_dtype t)
{
    switch (t) {
    case SL_F32: return "F32";
    case SL_F16: return "F16";
    case SL_BF16: return "BF16";
    default: sl_fatal("internal error: no safetensors dtype for %s", sl_dtype_name(t));
    }
}

int64_t st_entry_bytes(const st_entry *e)
{
    int64_t n = (int64_t)sl_dtype_size(e->dtype);
    for (int d = 0; d < e->ndims; d++) n *= e->dims[d];
    return n;
}

/* Integers as raw JSON text: cJSON's numbers are doubles, and offsets must print exactly. */
static cJSON *json_int(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return cJSON_CreateRaw(buf);
}

char *st_header(const st_entry *e, int n, size_t *len, int64_t *offsets)
{
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(h, e[i].name);
        cJSON_AddStringToObject(t, "dtype", st_dtype_name(e[i].dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].ndims; d++) cJSON_AddItemToArray(shape, json_int(e[i].dims[d]));
        cJSON *span = cJSON_AddArrayToObject(t, "data_offsets");
        if (offsets) offsets[i] = offset;
        cJSON_AddItemToArray(span, json_int(offset));
        offset += st_entry_bytes(&e[i]);
        cJSON_AddItemToArray(span, json_int(offset));
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) sl_fatal("out of memory building a safetensors header of %d tensors", n);
    size_t text_len = strlen(text), padded = (text_len + 7) / 8 * 8;
    char *out = sl_malloc(8 + padded, "safetensors header");
    for (int i = 0; i < 8; i++) out[i] = (char)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, text, text_len);
    memset(out + 8 + text_len, ' ', padded - text_len);
    free(text);
    *len = 8 + padded;
    return out;
}
