/* Fuzz target: the checkpoint checks of shardlora train --resume=auto (src/checkpoint.c: the probe of
 * each candidate under rt_try, the model signature and the options against this run
 * (src/resume.c), the datasets and their checksums) on edited copies (h5edit.h) of a valid
 * checkpoint that checkpoint_save writes for a tiny model. It runs as one MPI rank. A damaged
 * checkpoint is skipped with a warning, a mismatch of the run is an error; either way the checks
 * must leave no file open. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "backend.h"
#include "checkpoint.h"
#include "comm.h"
#include "h5edit.h"
#include "harness.h"
#include "runtime.h"
#include "tiny_files.h"

typedef struct {
    sl_config cfg;
    sl_model m;
    float *roles[CKPT_ROLES];
    char checkpoint[600];
} run;

static run R;

/* What train_run does up to its resume, for a tiny model and rank-2 adapters on every projection. */
static void start_run(void *arg)
{
    char model[600], data[600], out[600], *argv[] = {"shardlora", "train", model, data, out, "--lora-r=2",
                                                     "--seq-len=8", "--micro-batch=1", "--resume=auto"};
    snprintf(model, sizeof model, "--model=%s", fuzz_scratch_file("model.h5", "", 0));
    tiny_model_write(model + 8, NULL);
    snprintf(data, sizeof data, "--data=%s", fuzz_scratch_file("data.h5", "", 0));
    tiny_dataset_write(data + 7, 0);
    snprintf(out, sizeof out, "--out=%s/run", fuzz_scratch_dir());
    if (mkdir(out + 6, 0755) != 0) sl_fatal("cannot create %s", out + 6);
    config_parse(&R.cfg, sizeof argv / sizeof *argv, argv);
    BE = &backend_cpu;
    comm_setup("mpi", R.cfg.comm_timeout, NULL);
    quant_format none = {QUANT_NONE, 0, 0};
    model_load(&R.m, R.cfg.model, &none, model_keep_of(R.cfg.shard));
    unsigned targets;
    lora_parse_targets(R.cfg.lora_targets, &targets);
    static sl_lora lora;
    lora_setup(&lora, R.cfg.lora_r, R.cfg.lora_alpha, R.cfg.lora_dropout, R.cfg.rslora, targets);
    model_add_trainable(&R.m, &lora, 0);
    int64_t n = model_trainable_shard_numel(&R.m);
    for (int r = 0; r < CKPT_ROLES; r++) {
        R.roles[r] = calloc((size_t)n, sizeof(float));
        for (int64_t i = 0; i < n; i++) R.roles[r][i] = (float)((i * 5 + r) % 11) / 16;
    }
    model_bind_trainable(&R.m, R.roles[0], R.roles[0], NULL);
    checkpoint_save(&R.m, R.roles, &R.cfg, "none", (ckpt_meta){.step = 3, .tokens_seen = 96});
    snprintf(R.checkpoint, sizeof R.checkpoint, "%s/checkpoints/step_00000003.h5", R.cfg.out);
}

static void make_checkpoint(void *path)
{
    fuzz_start_mpi("fuzz-checkpoint"); /* no leak checks: this target checks that no HDF5 object is left open */
    start_run(NULL);
    if (rename(R.checkpoint, path) != 0) sl_fatal("cannot move %s to %s", R.checkpoint, (const char *)path);
}

static void resume(void *resumed)
{
    ckpt_meta meta;
    *(int *)resumed = checkpoint_resume(&R.m, R.roles, &R.cfg, &meta);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    static const uint8_t *base;
    static size_t base_size;
    static const char *const extra_attrs[] = {"checksum", "step", "lora_r", "model_signature", NULL};
    if (!base) base = h5edit_base("checkpoint", make_checkpoint, &base_size);
    FILE *f = fopen(R.checkpoint, "wb");
    if (!f || fwrite(base, 1, base_size, f) != base_size || fclose(f) != 0) sl_fatal("cannot write %s", R.checkpoint);
    h5edit_apply(R.checkpoint, data, size, NULL, extra_attrs);
    int resumed = 0;
    if (fuzz_try(resume, &resumed)) fuzz_accepted_as(resumed ? "resumed" : "skipped as damaged");
    ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_objects > 0) {
        fprintf(stderr, "fuzz_h5checkpoint: %zd HDF5 objects left open after %s\n", open_objects, fuzz_outcome());
        __builtin_trap();
    }
}

FUZZ_TARGET(fuzz_one)
