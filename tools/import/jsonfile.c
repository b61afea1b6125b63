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
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    text[got] = 0;
    cJSON *json = got == (size_t)size ? cJSON_ParseWithLength(text, (size_t)size) : NULL;
    const char *at = cJSON_GetErrorPtr();
    long long pos = at && at >= text && at <= text + size ? (long long)(at - text) : -1;
    free(text);
    if (got != (size_t)size) sl_fatal("%s: read error", path);
    if (!json) sl_fatal("%s: %s is not valid JSON (error near byte %lld)", path, what, pos);
    return json;
}
