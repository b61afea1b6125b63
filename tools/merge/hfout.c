/* The merged model as a Hugging Face checkpoint: the tensors cut into shards of at most
 * --max-shard-size bytes in file order (a larger tensor alone in its shard), each shard's header
 * and offsets planned alike on every rank, so each rank writes its own tensors straight to their
 * place (pwrite) and the files are the same for any rank count. Shards are written as NAME.partial
 * and renamed once every rank has flushed its part. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "merge.h"
#include "runtime.h"
#include "safetensors_write.h"

typedef struct {
    char name[64], path[4096], partial[4112];
    int64_t bytes; /* the whole file */
    int fd;
} hf_shard;

struct merge_hf {
    const merge_inputs *in;
    int n_shards;
    hf_shard *shards;
    int *shard_of;      /* per tensor of in->tensors: its shard, or -1 when the checkpoint has no such tensor */
    int64_t *offset_of; /* per tensor: where its data starts in its shard */
    int64_t data_bytes;
};

static int64_t tensor_bytes(const merge_tensor *t, sl_dtype dtype)
{
    const int64_t n = t->spec.ndims == 2 ? t->spec.dims[0] * t->spec.dims[1] : t->spec.dims[0];
    return n * (int64_t)sl_dtype_size(dtype);
}

/* Shard of each tensor: a new shard when the next tensor would take the current one past the limit. */
static void plan_shards(merge_hf *h)
{
    const merge_inputs *in = h->in;
    int64_t filled = 0;
    for (int i = 0; i < in->n_tensors; i++) {
        h->shard_of[i] = -1;
        if (!in->tensors[i].hf_name[0]) continue;
        int64_t bytes = tensor_bytes(&in->tensors[i], in->o->dtype);
        if (h->n_shards == 0 || (filled > 0 && filled + bytes > in->o->max_shard_bytes)) h->n_shards++, filled = 0;
        h->shard_of[i] = h->n_shards - 1;
        filled += bytes;
        h->data_bytes += bytes;
    }
}

/* The header of shard s; fills offset_of of its tensors. */
static char *shard_header(merge_hf *h, int s, size_t *len)
{
    const merge_inputs *in = h->in;
    st_entry *e = sl_calloc((size_t)in->n_tensors, sizeof *e, "safetensors header");
    int *which = sl_calloc((size_t)in->n_tensors, sizeof *which, "safetensors header");
    int n = 0;
    for (int i = 0; i < in->n_tensors; i++) {
        const merge_tensor *t = &in->tensors[i];
        if (h->shard_of[i] != s) continue;
        e[n] = (st_entry){.name = t->hf_name, .dtype = in->o->dtype, .ndims = t->spec.ndims};
        memcpy(e[n].dims, t->spec.dims, sizeof t->spec.dims);
        which[n++] = i;
    }
    int64_t *offsets = sl_calloc((size_t)n + 1, sizeof *offsets, "safetensors header");
    char *header = st_header(e, n, len, offsets);
    h->shards[s].bytes = (int64_t)*len;
    for (int k = 0; k < n; k++) {
        h->offset_of[which[k]] = (int64_t)*len + offsets[k];
        h->shards[s].bytes += st_entry_bytes(&e[k]);
    }
    free(offsets), free(which), free(e);
    return header;
}

static void write_all(int fd, const void *buf, size_t n, int64_t at, const char *path)
{
    const char *p = buf;
    while (n) {
        ssize_t put = pwrite(fd, p, n, (off_t)at);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) sl_fatal("cannot write %s: %s (disk full?)", path, put < 0 ? strerror(errno) : "no progress");
        p += put, at += put, n -= (size_t)put;
    }
}

/* Rank 0: the shard file with its header, at its full size, for every rank to fill in. */
static void create_shard(const hf_shard *sh, const char *header, size_t len)
{
    int fd = open(sh->partial, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) sl_fatal("cannot create %s: %s", sh->partial, strerror(errno));
    write_all(fd, header, len, 0, sh->partial);
    if (ftruncate(fd, (off_t)sh->bytes) != 0) sl_fatal("cannot size %s to %lld bytes: %s", sh->partial, (long long)sh->bytes, strerror(errno));
    if (close(fd) != 0) sl_fatal("cannot write %s: %s", sh->partial, strerror(errno));
}

merge_hf *hfout_open(const merge_inputs *in)
{
    const char *dir = in->o->hf_dir;
    merge_hf *h = sl_calloc(1, sizeof *h, "checkpoint");
    h->in = in;
    h->shard_of = sl_calloc((size_t)in->n_tensors, sizeof *h->shard_of, "checkpoint");
    h->offset_of = sl_calloc((size_t)in->n_tensors, sizeof *h->offset_of, "checkpoint");
    if (RT.rank == 0) rt_make_directory(dir);
    plan_shards(h);
    h->shards = sl_calloc((size_t)h->n_shards, sizeof *h->shards, "checkpoint");
    for (int s = 0; s < h->n_shards; s++) {
        hf_shard *sh = &h->shards[s];
        if (h->n_shards == 1) snprintf(sh->name, sizeof sh->name, "model.safetensors");
        else snprintf(sh->name, sizeof sh->name, "model-%05d-of-%05d.safetensors", s + 1, h->n_shards);
        snprintf(sh->path, sizeof sh->path, "%s/%s", dir, sh->name);
        snprintf(sh->partial, sizeof sh->partial, "%s.partial", sh->path);
        size_t len;
        char *header = shard_header(h, s, &len);
        if (RT.rank == 0) {
            merge_remove_on_error(sh->partial);
            create_shard(sh, header, len);
        }
        free(header);
    }
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    for (int s = 0; s < h->n_shards; s++) {
        h->shards[s].fd = open(h->shards[s].partial, O_WRONLY);
        if (h->shards[s].fd < 0) sl_fatal("cannot open %s: %s", h->shards[s].partial, strerror(errno));
    }
    return h;
}

void hfout_write(merge_hf *h, const merge_tensor *t, const float *x)
{
    const int i = (int)(t - h->in->tensors), s = h->shard_of[i];
    if (s < 0) return;
    const sl_dtype dtype = h->in->o->dtype;
    const int64_t bytes = tensor_bytes(t, dtype);
    uint16_t *narrow = NULL;
    if (dtype != SL_F32) {
        narrow = sl_malloc((size_t)bytes, t->spec.path);
        sl_from_f32(narrow, x, dtype, (size_t)(bytes / 2));
    }
    write_all(h->shards[s].fd, narrow ? (const void *)narrow : x, (size_t)bytes, h->offset_of[i], h->shards[s].partial);
    free(narrow);
}

/* Rank 0: text into DIR/name through a temporary file. */
static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4096], partial[4112];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(partial, sizeof partial, "%s.partial", path);
    merge_remove_on_error(partial);
    FILE *f = fopen(partial, "w");
    if (!f) sl_fatal("cannot create %s: %s", partial, strerror(errno));
    if (fputs(text, f) == EOF || fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
        sl_fatal("cannot write %s: %s (disk full?)", partial, strerror(errno));
    if (rename(partial, path) != 0) sl_fatal("cannot rename %s to %s: %s", partial, path, strerror(errno));
}

/* model.safetensors.index.json: the total data size and the shard of every tensor. */
static char *index_text(const merge_hf *h)
{
    cJSON *j = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(j, "metadata");
    char total[32];
    snprintf(total, sizeof total, "%lld", (long long)h->data_bytes);
    cJSON_AddItemToObject(meta, "total_size", cJSON_CreateRaw(total));
    cJSON *map = cJSON_AddObjectToObject(j, "weight_map");
    for (int i = 0; i < h->in->n_tensors; i++)
        if (h->shard_of[i] >= 0) cJSON_AddStringToObject(map, h->in->tensors[i].hf_name, h->shards[h->shard_of[i]].name);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) sl_fatal("out of memory writing model.safetensors.index.json");
    return text;
}

int hfout_finish(merge_hf *h)
{
    for (int s = 0; s < h->n_shards; s++)
        if (fsync(h->shards[s].fd) != 0 || close(h->shards[s].fd) != 0)
            sl_fatal("cannot write %s: %s (disk full?)", h->shards[s].partial, strerror(errno));
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const int n = h->n_shards;
    if (RT.rank == 0) {
        for (int s = 0; s < n; s++)
            if (rename(h->shards[s].partial, h->shards[s].path) != 0)
                sl_fatal("cannot rename %s to %s: %s", h->shards[s].partial, h->shards[s].path, strerror(errno));
        if (n > 1) {
            char *index = index_text(h);
            write_text(h->in->o->hf_dir, "model.safetensors.index.json", index);
            free(index);
        }
        char *config = config_json_text(h->in);
        write_text(h->in->o->hf_dir, "config.json", config);
        free(config);
    }
    free(h->shards), free(h->shard_of), free(h->offset_of), free(h);
    return n;
}
