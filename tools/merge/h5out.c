/* The merged model as a shardlora model file: every rank creates the same datasets (collective
 * metadata), then each writes the tensors it merged; the layout depends only on the tensor
 * table, never on the rank count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "merge.h"
#include "runtime.h"

struct merge_h5 {
    hid_t file;
    char *partial, *final;
    sl_dtype dtype;
};

/* The base's root attributes that still describe the merged model; the adapter and the merge are
 * recorded beside them. */
static void write_root(hid_t f, const merge_inputs *in)
{
    h5_set_attr_string(f, "/", "shardlora_kind", "model");
    h5_set_attr_int(f, "/", "format_version", 1);
    h5_set_attr_string(f, "/", "source", in->o->model);
    h5_set_attr_string(f, "/", "source_format", "merge");
    char *name = h5_has_attr(in->model, "/", "model_name") ? h5_attr_string(in->model, "/", "model_name")
                                                          : strdup(in->o->model);
    h5_set_attr_string(f, "/", "model_name", name);
    free(name);
    h5_set_attr_string(f, "/", "adapter", in->o->adapter);
    h5_set_attr_string(f, "/", "task", in->info.task);
    h5_set_attr_int(f, "/", "num_labels", in->info.num_labels);
    h5_set_attr_string(f, "/", "shardlora_version", sl_version());
}

merge_h5 *h5out_open(const merge_inputs *in)
{
    merge_h5 *h = sl_calloc(1, sizeof *h, "model file");
    h->final = strdup(in->o->out);
    h->partial = sl_malloc(strlen(in->o->out) + 9, "path");
    sprintf(h->partial, "%s.partial", in->o->out);
    h->dtype = in->o->dtype;
    if (RT.rank == 0) merge_remove_on_error(h->partial);
    h->file = h5_create(h->partial, "merged model", MPI_COMM_WORLD);
    write_root(h->file, in);
    modelcfg_write(h->file, &in->cfg);
    for (int i = 0; i < in->n_tensors; i++)
        h5_create_dataset(h->file, in->tensors[i].spec.path, h->dtype, in->tensors[i].spec.ndims, in->tensors[i].spec.dims);
    return h;
}

void h5out_write(merge_h5 *h, const merge_tensor *t, int mine, const float *x)
{
    int64_t n = t->spec.ndims == 2 ? t->spec.dims[0] * t->spec.dims[1] : t->spec.dims[0];
    h5_write_range(h->file, t->spec.path, SL_F32, 0, mine ? n : 0, x);
}

void h5out_finish(merge_h5 *h)
{
    h5_close(h->file);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    if (RT.rank == 0 && rename(h->partial, h->final) != 0)
        sl_fatal("cannot rename %s to %s (is the directory writable?)", h->partial, h->final);
    free(h->partial), free(h->final), free(h);
}
