/* jsonfile: read a small JSON file (config.json, the safetensors index) whole and parse it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "runtime.h"

cJSON *json_read_file(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) sl_fatal("cannot open %s %s: %s", what, path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) sl_fatal("%s: cannot seek: %s", path, strerror(errno));
    long long size = (long long)ftello(f);
    rewind(f);
    char *text = sl_malloc((size_t)size + 1, path);
    if (fread(text, 1, (size_t)size, f) != (size_t)size) sl_fatal("%s: read error", path);
    fclose(f);
    text[size] = 0;
    cJSON *json = cJSON_ParseWithLength(text, (size_t)size);
    if (!json) {
        const char *at = cJSON_GetErrorPtr();
        long long pos = at && at >= text && at <= text + size ? (long long)(at - text) : -1;
        sl_fatal("%s: %s is not valid JSON (error near byte %lld)", path, what, pos);
    }
    free(text);
    return json;
}
