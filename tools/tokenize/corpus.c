/* corpus: spill files, and the collective write of /tokens, /doc_offsets, /loss_mask and /labels
 * with the dataset attributes. Every rank makes the same HDF5 calls in the same order (writing an
 * empty range when it has nothing left), and the file is created through MPI-IO even on one rank,
 * so 1, 2 and 4 ranks write the same bytes. */
#include "corpus.h"

#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5io.h"
#include "runtime.h"

#define CHUNK (1 << 22) /* elements per collective write and per spill read */

static FILE *spill_file(const char *out, const char *what)
{
    char path[4200];
    snprintf(path, sizeof path, "%s.spill-%s-XXXXXX", out, what);
    int fd = mkstemp(path);
    if (fd < 0) sl_fatal("cannot create a spill file beside output '%s' (%s): %s", out, path, strerror(errno));
    unlink(path);
    FILE *f = fdopen(fd, "w+b");
    if (!f) sl_fatal("cannot open spill file %s: %s", path, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    return f;
}

void corpus_init(corpus *c, int64_t max_docs, int32_t bos_id, int32_t eos_id, const char *out)
{
    memset(c, 0, sizeof *c);
    c->max_docs = max_docs;
    c->bos_id = bos_id, c->eos_id = eos_id;
    c->max_label = -1;
    c->tokens = spill_file(out, "tokens");
    c->mask = spill_file(out, "mask");
    c->docs = spill_file(out, "docs");
}

int corpus_full(const corpus *c) { return c->max_docs > 0 && c->n_docs >= c->max_docs; }

static void spill(FILE *f, const void *p, size_t size, size_t n)
{
    if (n && fwrite(p, size, n, f) != n) sl_fatal("writing a spill file failed (disk full?): %s", strerror(errno));
}

static void fit_scratch(corpus *c, int64_t n)
{
    if (n <= c->cap_scratch) return;
    c->cap_scratch = 2 * n;
    c->scratch = realloc(c->scratch, (size_t)c->cap_scratch * sizeof *c->scratch);
    c->scratch_mask = realloc(c->scratch_mask, (size_t)c->cap_scratch);
    if (!c->scratch || !c->scratch_mask) sl_fatal("out of memory for a document of %lld tokens", (long long)n);
}

void corpus_add(corpus *c, const int32_t *ids, int64_t n, const uint8_t *mask, int32_t label)
{
    fit_scratch(c, n + 2);
    int64_t k = 0;
    if (c->bos_id >= 0) c->scratch[k] = c->bos_id, c->scratch_mask[k++] = 0;
    if (n > 0) { /* an empty document may come with no ids array at all */
        memcpy(c->scratch + k, ids, (size_t)n * sizeof *ids);
        if (mask) memcpy(c->scratch_mask + k, mask, (size_t)n);
        else memset(c->scratch_mask + k, 1, (size_t)n);
    }
    k += n;
    if (c->eos_id >= 0) c->scratch[k] = c->eos_id, c->scratch_mask[k++] = 1;
    spill(c->tokens, c->scratch, sizeof *c->scratch, (size_t)k);
    spill(c->mask, c->scratch_mask, 1, (size_t)k);
    spill(c->docs, &k, sizeof k, 1);
    spill(c->docs, &label, sizeof label, 1);
    c->n_tokens += k, c->n_docs++;
    if (mask) c->has_mask = 1;
    if (label >= 0) c->has_labels = 1;
    else c->lacks_labels = 1;
    if (label > c->max_label) c->max_label = label;
}

static int64_t exscan(int64_t v)
{
    int64_t before = 0;
    MPI_Exscan(&v, &before, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank == 0 ? 0 : before;
}

static int64_t allreduce(int64_t v, MPI_Op op)
{
    int64_t r;
    MPI_Allreduce(&v, &r, 1, MPI_INT64_T, op, MPI_COMM_WORLD);
    return r;
}

static void read_spill(FILE *f, void *p, size_t size, size_t n)
{
    if (fread(p, size, n, f) != n) sl_fatal("reading back a spill file failed: %s", ferror(f) ? strerror(errno) : "it ended early");
}

/* A source of a rank's elements for one dataset, produced chunk by chunk. */
typedef struct {
    FILE *f;          /* tokens or mask spill */
    corpus *c;        /* doc_offsets and labels read the docs spill */
    int64_t offset;   /* doc_offsets: the running token offset */
    int leading_zero; /* doc_offsets on rank 0: the first entry */
    int labels;
} source;

static void fill(source *s, void *buf, size_t elem, int64_t n)
{
    if (s->f) return read_spill(s->f, buf, elem, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (s->leading_zero) {
            ((int64_t *)buf)[i] = 0;
            s->leading_zero = 0;
            continue;
        }
        int64_t len;
        int32_t label;
        read_spill(s->c->docs, &len, sizeof len, 1);
        read_spill(s->c->docs, &label, sizeof label, 1);
        s->offset += len;
        if (s->labels) ((int32_t *)buf)[i] = label;
        else ((int64_t *)buf)[i] = s->offset;
    }
}

static void write_collective(hid_t f, const char *path, sl_dtype t, size_t elem, int64_t start, int64_t count, source *s)
{
    int64_t rounds = allreduce((count + CHUNK - 1) / CHUNK, MPI_MAX), done = 0;
    void *buf = sl_malloc((size_t)CHUNK * elem, "dataset chunk");
    for (int64_t r = 0; r < rounds; r++) {
        int64_t n = count - done < CHUNK ? count - done : CHUNK;
        if (n > 0) fill(s, buf, elem, n);
        h5_write_range(f, path, t, n > 0 ? start + done : 0, n, buf); /* an empty range may lie past the end */
        done += n;
    }
    free(buf);
}

/* Of this rank's documents, those within --max-docs over all ranks, and their tokens. */
static int64_t kept_tokens(corpus *c, int64_t keep)
{
    rewind(c->docs);
    int64_t total = 0;
    for (int64_t d = 0; d < keep; d++) {
        int64_t len;
        int32_t label;
        read_spill(c->docs, &len, sizeof len, 1);
        read_spill(c->docs, &label, sizeof label, 1);
        total += len;
    }
    return total;
}

static void write_attrs(hid_t f, const corpus_meta *m, int has_labels, int64_t num_labels)
{
    h5_set_attr_string(f, "/", "shardlora_kind", "dataset");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_int(f, "/", "vocab_size", m->vocab_size);
    h5_set_attr_int(f, "/", "bos_id", m->bos_id);
    h5_set_attr_int(f, "/", "eos_id", m->eos_id);
    h5_set_attr_int(f, "/", "pad_id", m->pad_id);
    h5_set_attr_string(f, "/", "tokenizer", m->tokenizer);
    h5_set_attr_string(f, "/", "source", m->source);
    if (has_labels) h5_set_attr_int(f, "/", "num_labels", num_labels);
}

int64_t corpus_write(corpus *c, const char *path, const corpus_meta *meta, int64_t *total_tokens)
{
    fflush(c->tokens), fflush(c->mask), fflush(c->docs);
    int64_t doc_start = exscan(c->n_docs);
    int64_t keep = c->n_docs;
    if (c->max_docs > 0) keep = doc_start >= c->max_docs ? 0 : keep < c->max_docs - doc_start ? keep : c->max_docs - doc_start;
    int64_t n_tok = kept_tokens(c, keep), tok_start = exscan(n_tok);
    int64_t docs = allreduce(keep, MPI_SUM), tokens = allreduce(n_tok, MPI_SUM);
    int has_mask = (int)allreduce(c->has_mask, MPI_MAX), has_labels = (int)allreduce(c->has_labels, MPI_MAX);
    int lacks_labels = (int)allreduce(c->lacks_labels, MPI_MAX);
    int64_t num_labels = allreduce(c->max_label, MPI_MAX) + 1;
    if (docs == 0) rt_fail_all("no documents found in the inputs (expected at least one; are they empty?)");
    if (has_labels && lacks_labels)
        rt_fail_all("some records have a \"label\" and others do not (expected labels on every line or on none)");
    hid_t f = h5_create(path, "output dataset", MPI_COMM_WORLD);
    int64_t d1 = docs + 1;
    h5_create_dataset(f, "/tokens", SL_I32, 1, &tokens);
    h5_create_dataset(f, "/doc_offsets", SL_I64, 1, &d1);
    if (has_mask) h5_create_dataset(f, "/loss_mask", SL_U8, 1, &tokens);
    if (has_labels) h5_create_dataset(f, "/labels", SL_I32, 1, &docs);
    rewind(c->tokens), rewind(c->mask), rewind(c->docs);
    write_collective(f, "/tokens", SL_I32, 4, tok_start, n_tok, &(source){.f = c->tokens});
    if (has_mask) write_collective(f, "/loss_mask", SL_U8, 1, tok_start, n_tok, &(source){.f = c->mask});
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int zero = rank == 0; /* rank 0 writes entry 0; the others the ends of their documents */
    write_collective(f, "/doc_offsets", SL_I64, 8, doc_start + !zero, keep + zero,
                     &(source){.c = c, .offset = tok_start, .leading_zero = zero});
    if (has_labels) {
        rewind(c->docs);
        write_collective(f, "/labels", SL_I32, 4, doc_start, keep, &(source){.c = c, .labels = 1});
    }
    write_attrs(f, meta, has_labels, num_labels);
    h5_close(f);
    *total_tokens = tokens;
    return docs;
}

void corpus_free(corpus *c)
{
    fclose(c->tokens), fclose(c->mask), fclose(c->docs);
    free(c->scratch), free(c->scratch_mask);
    memset(c, 0, sizeof *c);
}
