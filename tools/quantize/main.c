/* shardlora-quantize: copy a model file with the seven projection weights of every decoder layer
 * quantized (NF4, FP4 or INT8 blockwise, groups laid out as in src/quant_store.h); every other
 * object and attribute is copied as stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "modelcfg.h"
#include "quant_store.h"
#include "runtime.h"
#include "synth.h"

static const char *USAGE =
    "usage: shardlora-quantize IN.h5 OUT.h5 --quant nf4|fp4|int8 [--double-quant] [--blocksize N]\n"
    "  --quant         the format of the quantized projection weights\n"
    "  --double-quant  quantize the block absmax values to 8 bits too (nf4 and fp4)\n"
    "  --blocksize N   elements per block: 64 (default), 128 or 256 for nf4/fp4; 64, 256 or 4096\n"
    "                  (default) for int8\n";

typedef struct {
    const char *in, *out, *type;
    int double_quant, blocksize;
} options;

static int blocksize_arg(const char *v)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x <= 0 || x > 1 << 20) sl_usage_error("option --blocksize: expected a positive integer, found '%s'", v);
    return (int)x;
}

static quant_format parse(int argc, char **argv, options *o)
{
    *o = (options){0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(USAGE, stdout); exit(0); }
        if (!strcmp(a, "--double-quant")) { o->double_quant = 1; continue; }
        if (a[0] != '-') {
            if (o->out) sl_usage_error("unexpected argument '%s'\n%s", a, USAGE);
            *(o->in ? &o->out : &o->in) = a;
            continue;
        }
        if (!v) sl_usage_error("option %s needs a value\n%s", a, USAGE);
        i++;
        if (!strcmp(a, "--quant")) o->type = v;
        else if (!strcmp(a, "--blocksize")) o->blocksize = blocksize_arg(v);
        else sl_usage_error("unknown option '%s'\n%s", a, USAGE);
    }
    if (!o->out) sl_usage_error("expected an input and an output model file\n%s", USAGE);
    if (!o->type) sl_usage_error("option --quant is required (nf4, fp4 or int8)\n%s", USAGE);
    quant_format f;
    const char *problem = quant_format_make(o->type, o->double_quant, o->blocksize, &f);
    if (problem) {
        char given[32] = "";
        if (o->blocksize) snprintf(given, sizeof given, " --blocksize %d", o->blocksize);
        sl_usage_error("options --quant %s%s%s: %s", o->type, o->double_quant ? " --double-quant" : "", given, problem);
    }
    return f;
}

/* Removes the partial output when the tool stops with an error (sl_fatal exits). */
static char *partial_to_remove;
static void remove_partial(void)
{
    if (partial_to_remove) remove(partial_to_remove);
}

/* The input's linear weights, which must be plain 2-D datasets of the configured shapes. */
static sl_tensor_spec *linear_weights(hid_t in, int *count)
{
    if (h5_has_attr(in, "/", "quantization")) {
        char *q = h5_attr_string(in, "/", "quantization");
        sl_fatal("%s is already quantized (root attribute quantization = '%s'); quantize the original model file",
                 h5_name(in), q);
    }
    sl_model_config cfg;
    modelcfg_read(in, &cfg);
    int n = modelcfg_tensor_count(&cfg), k = 0;
    sl_tensor_spec *t = sl_malloc(sizeof *t * (size_t)n, "tensor table");
    modelcfg_tensors(&cfg, t, n);
    for (int i = 0; i < n; i++) {
        if (t[i].kind != TENSOR_LINEAR) continue;
        if (h5_is_group(in, t[i].path))
            sl_fatal("%s: %s is a group, not a dataset: the file is already quantized; quantize the original "
                     "model file", h5_name(in), t[i].path);
        h5_expect_shape(in, t[i].path, 2, t[i].dims);
        t[k++] = t[i];
    }
    *count = k;
    return t;
}

typedef struct {
    hid_t out;
    quant_format fmt;
    const sl_tensor_spec *linear;
    int n_linear, quantized, copied;
} copy_state;

/* sl_fatal must not exit from inside an HDF5 iteration (HDF5 then crashes as it shuts down): each
 * callback runs its work under rt_try and stops the walk with the message kept here. */
static char walk_error[4096];

typedef struct {
    hid_t loc, dst;
    const char *name;
} attr_arg;

static void copy_one_attr(void *arg)
{
    const attr_arg *c = arg;
    hid_t a = H5Aopen(c->loc, c->name, H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
    size_t bytes = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(s);
    void *buf = sl_calloc(1, bytes + 1, c->name);
    hid_t b = H5Acreate2(c->dst, c->name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, t, buf) < 0 || b < 0 || H5Awrite(b, t, buf) < 0)
        sl_fatal("cannot copy attribute '%s'", c->name);
    if (H5Tdetect_class(t, H5T_VLEN) > 0 || H5Tis_variable_str(t) > 0) H5Dvlen_reclaim(t, s, H5P_DEFAULT, buf);
    free(buf);
    H5Aclose(b), H5Aclose(a), H5Tclose(t), H5Sclose(s);
}

static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *ainfo, void *dst_obj)
{
    (void)ainfo;
    attr_arg c = {.loc = loc, .dst = *(hid_t *)dst_obj, .name = name};
    return rt_try(copy_one_attr, &c, walk_error, sizeof walk_error) ? 0 : -1;
}

static void copy_group(hid_t in, const char *name, copy_state *st)
{
    char path[1024];
    snprintf(path, sizeof path, "/%s", strcmp(name, ".") ? name : "");
    h5_make_groups(st->out, path);
    hid_t src = H5Oopen(in, name, H5P_DEFAULT), dst = H5Oopen(st->out, path, H5P_DEFAULT);
    walk_error[0] = 0;
    if (H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &dst) < 0)
        sl_fatal("%s: cannot copy the attributes of %s%s%s", h5_name(in), path, walk_error[0] ? ": " : "", walk_error);
    H5Oclose(src), H5Oclose(dst);
}

static void quantize_weight(hid_t in, const sl_tensor_spec *spec, copy_state *st)
{
    h5_shape s = h5_shape_of(in, spec->path);
    float *x = sl_malloc((size_t)s.n * sizeof *x, spec->path);
    h5_read(in, spec->path, SL_F32, x);
    quant_store_quantize(st->out, spec->path, &st->fmt, spec->dims, sl_dtype_name(s.dtype), x);
    free(x);
    st->quantized++;
}

typedef struct {
    hid_t in;
    const char *name;
    const H5O_info_t *info;
    copy_state *st;
} object_arg;

static void copy_one_object(void *arg)
{
    const object_arg *o = arg;
    copy_state *st = o->st;
    if (o->info->type == H5O_TYPE_GROUP) {
        copy_group(o->in, o->name, st);
        return;
    }
    for (int i = 0; i < st->n_linear; i++)
        if (strcmp(st->linear[i].path + 1, o->name) == 0) {
            quantize_weight(o->in, &st->linear[i], st);
            return;
        }
    if (H5Ocopy(o->in, o->name, st->out, o->name, H5P_DEFAULT, H5P_DEFAULT) < 0)
        sl_fatal("%s: cannot copy /%s to %s", h5_name(o->in), o->name, h5_name(st->out));
    st->copied++;
}

/* H5Ovisit calls groups before their members, so every parent exists when a member is copied. */
static herr_t copy_object(hid_t in, const char *name, const H5O_info_t *info, void *st)
{
    object_arg o = {.in = in, .name = name, .info = info, .st = st};
    return rt_try(copy_one_object, &o, walk_error, sizeof walk_error) ? 0 : -1;
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-quantize");
    options o;
    copy_state st = {.fmt = parse(argc, argv, &o)};
    hid_t in = h5_open(o.in, "model", 0, MPI_COMM_NULL);
    synth_refuse(in, "shardlora-quantize");
    sl_tensor_spec *linear = linear_weights(in, &st.n_linear);
    st.linear = linear;
    char *partial = sl_malloc(strlen(o.out) + 9, "path");
    sprintf(partial, "%s.partial", o.out);
    partial_to_remove = partial;
    atexit(remove_partial);
    st.out = h5_create(partial, "quantized model", MPI_COMM_NULL);
    walk_error[0] = 0;
    if (H5Ovisit(in, H5_INDEX_NAME, H5_ITER_INC, copy_object, &st) < 0) {
        if (walk_error[0]) sl_fatal("%s", walk_error);
        sl_fatal("%s: cannot walk the file's objects (damaged file?)", o.in);
    }
    char name[32];
    h5_set_attr_string(st.out, "/", "quantization", quant_format_name(&st.fmt, name, sizeof name));
    h5_close(st.out);
    h5_close(in);
    if (rename(partial, o.out) != 0) sl_fatal("cannot rename %s to %s (is the directory writable?)", partial, o.out);
    partial_to_remove = NULL;
    log_info("quantized %d projection weights to %s, copied %d other datasets; wrote %s", st.quantized, name,
             st.copied, o.out);
    free(partial);
    free(linear);
    rt_finalize();
    return 0;
}
