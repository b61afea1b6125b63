/* The adapter as a safetensors file (src/safetensors_write.h): float32 tensors in name order,
 * streamed one at a time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "runtime.h"
#include "safetensors_write.h"

static void write_bytes(FILE *out, const void *buf, size_t n, const char *path)
{
    if (n && fwrite(buf, 1, n, out) != n) sl_fatal("cannot write %s: %s (disk full?)", path, strerror(errno));
}

void safetensors_write(const export_adapter *a, FILE *out, const char *path)
{
    st_entry *entries = sl_calloc((size_t)a->n_tensors + 1, sizeof *entries, "safetensors header");
    for (int i = 0; i < a->n_tensors; i++) {
        const export_tensor *t = &a->tensors[i];
        entries[i] = (st_entry){.name = t->name, .dtype = SL_F32, .ndims = t->ndims};
        memcpy(entries[i].dims, t->dims, sizeof t->dims);
    }
    size_t len;
    char *header = st_header(entries, a->n_tensors, &len, NULL);
    write_bytes(out, header, len, path);
    free(header);
    free(entries);
    for (int i = 0; i < a->n_tensors; i++) {
        const export_tensor *t = &a->tensors[i];
        float *buf = sl_malloc((size_t)t->n * sizeof(float), t->h5_path);
        export_tensor_read(a, t, buf);
        write_bytes(out, buf, (size_t)t->n * sizeof(float), path);
        free(buf);
    }
}
