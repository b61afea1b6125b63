/* model: validation and sharded loading of a model file. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "runtime.h"

void model_validate(const char *path)
{
    hid_t f = h5_open(path, "model", 0, MPI_COMM_NULL);
    sl_model_config cfg;
    modelcfg_read(f, &cfg);
    int n = modelcfg_tensor_count(&cfg);
    sl_tensor_spec *t = sl_malloc(sizeof *t * (size_t)n, "tensor table");
    modelcfg_tensors(&cfg, t, n);
    for (int i = 0; i < n; i++) {
        if (h5_is_group(f, t[i].path))
            sl_fatal("%s: %s is a pre-quantized group; loading pre-quantized models needs the QLoRA base (not built yet)",
                     path, t[i].path);
        h5_shape sh = h5_expect_shape(f, t[i].path, t[i].ndims, t[i].dims);
        if (!sl_dtype_is_float(sh.dtype))
            sl_fatal("%s: dataset %s has type %s (expected float32, float16 or bfloat16)", path, t[i].path,
                     sl_dtype_name(sh.dtype));
    }
    free(t);
    h5_close(f);
}

static void plan_units(sl_model *m, int keep_gathered)
{
    const int L = m->cfg.num_layers;
    m->n_units = L + 2;
    m->units = sl_calloc((size_t)m->n_units, sizeof *m->units, "units");
    int ids[FSDP_MAX_MEMBERS], n_head = 0;
    /* tensors are in file order: embedding, each layer's, final norm, lm_head */
    int i = 0;
    ids[0] = i++;
    fsdp_unit_init(&m->units[0], "embedding", m->tensors, ids, 1);
    for (int l = 0; l < L; l++) {
        int n = 0;
        while (i < m->n_tensors && m->tensors[i].layer == l) ids[n++] = i++;
        char name[32];
        snprintf(name, sizeof name, "layer %d", l);
        fsdp_unit_init(&m->units[1 + l], name, m->tensors, ids, n);
    }
    while (i < m->n_tensors) ids[n_head++] = i++;
    fsdp_unit_init(&m->units[L + 1], "head", m->tensors, ids, n_head);
    for (int u = 0; u < m->n_units; u++) m->units[u].keep_gathered = keep_gathered;
}

void model_load(sl_model *m, const char *path, int keep_gathered)
{
    memset(m, 0, sizeof *m);
    hid_t f = h5_open(path, "model", 0, MPI_COMM_WORLD);
    modelcfg_read(f, &m->cfg);
    m->n_tensors = modelcfg_tensor_count(&m->cfg);
    m->tensors = sl_malloc(sizeof *m->tensors * (size_t)m->n_tensors, "tensor table");
    modelcfg_tensors(&m->cfg, m->tensors, m->n_tensors);
    plan_units(m, keep_gathered);
    int64_t before = h5_bytes_read();
    for (int u = 0; u < m->n_units; u++) fsdp_unit_load(&m->units[u], f, m->tensors);
    m->bytes_read = h5_bytes_read() - before;
    h5_close(f);
}

void model_free(sl_model *m)
{
    for (int u = 0; u < m->n_units; u++) fsdp_unit_free(&m->units[u]);
    free(m->units);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}
