/* partition: each rank computes every cut it needs (its own start and the next rank's) from the
 * same files, so no communication is needed and the cuts agree. */
#include "partition.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime.h"

static int blank(const char *s, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* The first boundary at or after offset pos of file i, as a stream offset. */
static int64_t boundary_in_file(const input_range *r, int i, int64_t pos, doc_align align)
{
    if (pos == 0) return r->base[i];
    int64_t next = r->base[i] + r->size[i];
    if (align == ALIGN_FILE) return next;
    FILE *f = fopen(r->files[i], "rb");
    if (!f || fseeko(f, pos, SEEK_SET) != 0) sl_fatal("cannot read input file '%s': %s", r->files[i], strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f); /* the rest of the line holding pos (or, by chance, all of it) */
    int64_t at = n > 0 ? pos + n : -1;
    while (align == ALIGN_PARAGRAPH && at >= 0) {
        n = getline(&line, &cap, f);
        at = n > 0 ? at + n : -1;
        if (n > 0 && blank(line, n)) break;
    }
    free(line);
    fclose(f);
    return at >= 0 && at < r->size[i] ? r->base[i] + at : next;
}

static int64_t boundary(const input_range *r, int64_t stream_pos, doc_align align)
{
    for (int i = 0; i < r->n_files; i++)
        if (stream_pos < r->base[i] + r->size[i]) return boundary_in_file(r, i, stream_pos - r->base[i], align);
    return r->total;
}

void input_range_plan(input_range *r, const char **files, int n, doc_align align, const char *option)
{
    memset(r, 0, sizeof *r);
    r->files = files, r->n_files = n;
    MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &r->world);
    r->base = sl_calloc((size_t)n + 1, sizeof *r->base, "input sizes");
    r->size = sl_calloc((size_t)n + 1, sizeof *r->size, "input sizes");
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0) sl_fatal("option %s: cannot open '%s': %s", option, files[i], strerror(errno));
        r->base[i] = r->total, r->size[i] = st.st_size;
        r->total += st.st_size;
    }
    int64_t lo = r->total / r->world * r->rank + r->total % r->world * r->rank / r->world;
    int64_t hi = r->rank + 1 == r->world ? r->total : r->total / r->world * (r->rank + 1) + r->total % r->world * (r->rank + 1) / r->world;
    r->start = r->rank == 0 ? 0 : boundary(r, lo, align);
    r->end = r->rank + 1 == r->world ? r->total : boundary(r, hi, align);
    if (r->end < r->start) r->end = r->start;
}

int input_range_part(const input_range *r, int i, doc_align align, int64_t *from, int64_t *to)
{
    int64_t b = r->base[i], e = b + r->size[i];
    if (align == ALIGN_FILE) {
        /* a file is its start's; empty files at the very end are the last rank's */
        int mine = (b >= r->start && b < r->end) || (b == r->total && r->rank + 1 == r->world);
        *from = 0, *to = r->size[i];
        return mine;
    }
    *from = (r->start > b ? r->start : b) - b;
    *to = (r->end < e ? r->end : e) - b;
    return *from < *to;
}

void input_range_free(input_range *r)
{
    free(r->base), free(r->size);
    memset(r, 0, sizeof *r);
}
