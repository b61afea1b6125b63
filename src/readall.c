/* readall: whole-file reads (tokenizers, the tokenize inputs), with messages that name the file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "readall.h"
#include "runtime.h"

char *read_whole_file(const char *path, const char *what, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) sl_fatal("cannot open %s file '%s': %s", what, path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) sl_fatal("cannot seek in %s file '%s' (expected a regular file)", what, path);
    long size = ftell(f);
    if (size < 0) sl_fatal("cannot find the size of %s file '%s' (expected a regular file)", what, path);
    rewind(f);
    char *buf = sl_malloc((size_t)size + 1, path);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size)
        sl_fatal("cannot read %s file '%s': expected %ld bytes, read fewer", what, path, size);
    fclose(f);
    buf[size] = '\0';
    *len = (size_t)size;
    return buf;
}
