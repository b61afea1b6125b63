/* fileio: pread/pwrite until done, and the threaded range read. */
#include "fileio.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int fileio_pread(int fd, void *dst, size_t len, int64_t off)
{
    char *p = dst;
    while (len) {
        ssize_t got = pread(fd, p, len, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return errno;
        if (got == 0) return FILEIO_EOF;
        p += got, off += got, len -= (size_t)got;
    }
    return 0;
}

int fileio_pwrite(int fd, const void *src, size_t len, int64_t off)
{
    const char *p = src;
    while (len) {
        ssize_t put = pwrite(fd, p, len, (off_t)off);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) return errno;
        if (put == 0) return ENOSPC; /* no progress: treated as a full disk */
        p += put, off += put, len -= (size_t)put;
    }
    return 0;
}

enum { THREAD_PIECE = 4 << 20 }; /* bytes per pread */

int fileio_pread_threads(int fd, void *dst, size_t len, int64_t off)
{
    const int64_t pieces = ((int64_t)len + THREAD_PIECE - 1) / THREAD_PIECE;
    int err = 0;
#pragma omp parallel for schedule(dynamic, 1) if (pieces > 1)
    for (int64_t k = 0; k < pieces; k++) {
        int64_t at = k * THREAD_PIECE, n = (int64_t)len - at < THREAD_PIECE ? (int64_t)len - at : THREAD_PIECE;
        int rc = fileio_pread(fd, (char *)dst + at, (size_t)n, off + at);
        if (rc) {
#pragma omp atomic write
            err = rc;
        }
    }
    return err;
}

const char *fileio_strerror(int code)
{
    return code == FILEIO_EOF ? "the file ends before the data does: truncated file?" : strerror(code);
}
