/* fileio: positioned reads and writes that finish (short transfers and EINTR retried) or say why,
 * and a byte range read with pread on every OpenMP thread. None of them ends the program, so they
 * can run inside parallel regions; callers turn the returned code into their own message. */
#ifndef SL_FILEIO_H
#define SL_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* 0, an errno, or FILEIO_EOF when the file ends before the range does. */
#define FILEIO_EOF (-1)
int fileio_pread(int fd, void *dst, size_t len, int64_t off);
int fileio_pwrite(int fd, const void *src, size_t len, int64_t off);
/* fileio_pread of [off, off + len) in pieces spread over the threads (the page-cache copy and the
 * page faults of a fresh dst are taken by all of them); 0 or one failure's code. */
int fileio_pread_threads(int fd, void *dst, size_t len, int64_t off);
/* The message for a code of the functions above. */
const char *fileio_strerror(int code);

#endif
