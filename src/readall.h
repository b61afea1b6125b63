/* readall: a whole (small) file in memory, with messages that name it. */
#ifndef SL_READALL_H
#define SL_READALL_H

#include <stddef.h>

/* A whole file in memory (NUL-terminated for convenience; *len excludes the NUL). "what" names
 * the file's role in messages. Missing or unreadable files are fatal. */
char *read_whole_file(const char *path, const char *what, size_t *len);

#endif
