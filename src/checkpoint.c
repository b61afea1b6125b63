/* checkpoint: collective save, verified load (any rank count), retention and the choice of the
 * checkpoint to resume from. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "adapter.h"
#include "comm.h"
#include "h5io.h"
#include "resume.h"
#include "runtime.h"

static const char *const ROLE_PREFIX[CKPT_ROLES] = {"", "/optim/exp_avg", "/optim/exp_avg_sq"};

/* What a checkpoint's model must be to resume from it: architecture and every shape. */
static void model_signature(const sl_model_config *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s hidden=%d intermediate=%d layers=%d heads=%d kv_heads=%d head_dim=%d vocab=%d",
             c->architecture, c->hidden_size, c->intermediate_size, c->num_layers, c->num_heads, c->num_kv_heads,
             c->head_dim, c->vocab_size);
}

/* Shard of role r of unit u inside the flat role buffer. */
static float *unit_shard(const sl_model *m, float *flat, int u)
{
    for (int i = 0; i < u; i++) flat += m->units[i].train.shard_numel;
    return flat;
}

static int n_datasets(const sl_model *m)
{
    int n = 0;
    for (int u = 0; u < m->n_units; u++) n += m->units[u].train.n_members;
    return n * CKPT_ROLES;
}

/* Collective: the checksum of every dataset of the checkpoint, in (role, unit, member) order. */
static uint64_t *checksums(const sl_model *m, float *const roles[CKPT_ROLES])
{
    uint64_t *sums = sl_calloc((size_t)n_datasets(m) + 1, sizeof *sums, "checksums"), *at = sums;
    for (int r = 0; r < CKPT_ROLES; r++)
        for (int u = 0; u < m->n_units; u++) {
            fsdp_pool_checksums(&m->units[u].train, unit_shard(m, roles[r], u), at);
            at += m->units[u].train.n_members;
        }
    comm_allreduce_sum_i64((int64_t *)sums, n_datasets(m)); /* wraps modulo 2^64, like the sums */
    return sums;
}

static void checkpoint_dir(const sl_config *cfg, char *buf, size_t len) { snprintf(buf, len, "%s/checkpoints", cfg->out); }

static void prune(const sl_config *cfg)
{
    if (RT.rank != 0 || cfg->ckpt_keep <= 0) return;
    char dir[4096], path[4400];
    checkpoint_dir(cfg, dir, sizeof dir);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    for (int i = 0, kept = 0; i < n; i++) {
        const char *name = list[n - 1 - i]->d_name; /* newest first: names sort by step */
        size_t len = strlen(name);
        if (!strncmp(name, "step_", 5) && len > 3 && !strcmp(name + len - 3, ".h5") && ++kept > cfg->ckpt_keep) {
            snprintf(path, sizeof path, "%s/%s", dir, name);
            remove(path);
        }
    }
    for (int i = 0; i < n; i++) free(list[i]);
    if (n >= 0) free(list);
}

/* Collective: the disk must hold the checkpoint before the collective write starts. A write that
 * runs out of space part-way leaves the ranks in different HDF5 collectives, which hangs the job;
 * an agreed error before it stops every rank with the previous checkpoints intact. */
static void check_space(const sl_model *m, const char *dir)
{
    int64_t data = 0, datasets = 0;
    for (int u = 0; u < m->n_units; u++) {
        data += CKPT_ROLES * m->units[u].train.numel * (int64_t)sizeof(float);
        datasets += CKPT_ROLES * m->units[u].train.n_members;
    }
    /* headers and attributes measured at about 1.4 KiB a dataset, plus the options and the root */
    const double need = (double)data + 1536.0 * (double)datasets + 32768.0;
    struct statvfs fs;
    double avail = RT.rank == 0 && statvfs(dir, &fs) == 0 ? (double)fs.f_bavail * (double)fs.f_frsize : need;
    rt_agree(avail >= need, "disk full: a checkpoint in '%s' needs about %.1f MiB and %.1f MiB are free "
             "(free space, or keep fewer with --ckpt-keep)", dir, need / 1048576.0, avail / 1048576.0);
}

void checkpoint_save(const sl_model *m, float *const roles[CKPT_ROLES], const sl_config *cfg, const char *quant,
                     ckpt_meta meta)
{
    char dir[4096], tmp[4500], final[4400], path[256];
    checkpoint_dir(cfg, dir, sizeof dir);
    int made = RT.rank != 0 || mkdir(dir, 0755) == 0 || errno == EEXIST;
    rt_agree(made, "cannot create checkpoint directory '%s': %s", dir, strerror(errno));
    check_space(m, dir);
    snprintf(final, sizeof final, "%s/step_%08lld.h5", dir, (long long)meta.step);
    snprintf(tmp, sizeof tmp, "%s.partial", final);
    hid_t f = h5_create(tmp, "checkpoint", MPI_COMM_WORLD);
    adapter_write_attributes(f, m, cfg, "checkpoint");
    h5_set_attr_int(f, "/", "step", meta.step);
    h5_set_attr_double(f, "/", "tokens_seen", meta.tokens_seen);
    h5_set_attr_int(f, "/", "seed", cfg->seed);
    h5_set_attr_int(f, "/", "world_size", RT.world);
    h5_set_attr_string(f, "/", "quantization", quant);
    char signature[256];
    model_signature(&m->cfg, signature, sizeof signature);
    h5_set_attr_string(f, "/", "model_signature", signature);
    uint64_t *sums = checksums(m, roles), *at = sums;
    for (int r = 0; r < CKPT_ROLES; r++)
        for (int u = 0; u < m->n_units; u++) {
            const fsdp_pool *p = &m->units[u].train;
            for (int i = 0; i < p->n_members; i++) {
                snprintf(path, sizeof path, "%s%s", ROLE_PREFIX[r], p->members[i].path);
                h5_create_dataset(f, path, SL_F32, p->members[i].ndims, p->members[i].dims);
                h5_set_attr_int(f, path, "checksum", (int64_t)*at++);
            }
            fsdp_pool_write_at(p, f, ROLE_PREFIX[r], unit_shard(m, roles[r], u));
        }
    free(sums);
    config_write(cfg, f, "/shardlora/options");
    h5_close(f);
    int renamed = 1;
    if (RT.rank == 0) {
        renamed = rename(tmp, final) == 0;
        int fd = open(dir, O_RDONLY); /* make the rename durable before older checkpoints go */
        if (fd >= 0) fsync(fd), close(fd);
    }
    rt_agree(renamed, "cannot rename checkpoint '%s' to '%s': %s", tmp, final, strerror(errno));
    prune(cfg);
    log_info("checkpoint: wrote %s", final);
}

typedef struct {
    const sl_model *m;
    const char *path;
    hid_t f; /* the candidate while a probe has it open: try_probe closes it when the probe fails */
} probe_arg;

/* A candidate's identity (calling rank): a damaged or partial file fails here. */
static void probe(void *arg)
{
    probe_arg *a = arg;
    hid_t f = a->f = h5_open(a->path, "checkpoint", 0, MPI_COMM_NULL);
    char kind[64], *stored = h5_attr_string(f, "/", "shardlora_kind");
    snprintf(kind, sizeof kind, "%s", stored);
    free(stored);
    if (strcmp(kind, "checkpoint") != 0) sl_fatal("%s: not a checkpoint (shardlora_kind is '%s')", a->path, kind);
    h5_attr_int(f, "/", "step");
    h5_attr_int(f, "/", "lora_r");
    free(h5_attr_string(f, "/", "quantization"));
    free(h5_attr_string(f, "/", "task"));
    free(h5_attr_string(f, "/", "model_signature"));
    if (!h5_is_group(f, "/shardlora/options")) sl_fatal("%s: group /shardlora/options (the run's options) is missing", a->path);
    h5_close(f);
    a->f = -1;
}

/* A candidate's datasets, once its options are known to match: missing ones mean damage. */
static void probe_datasets(void *arg)
{
    probe_arg *a = arg;
    hid_t f = a->f = h5_open(a->path, "checkpoint", 0, MPI_COMM_NULL);
    char path[256];
    for (int r = 0; r < CKPT_ROLES; r++)
        for (int u = 0; u < a->m->n_units; u++) {
            const fsdp_pool *p = &a->m->units[u].train;
            for (int i = 0; i < p->n_members; i++) {
                snprintf(path, sizeof path, "%s%s", ROLE_PREFIX[r], p->members[i].path);
                if (!h5_has(f, path))
                    sl_fatal("%s: dataset %s is missing (a checkpoint of another LoRA shape or task?)", a->path, path);
                h5_expect_shape(f, path, p->members[i].ndims, p->members[i].dims);
                h5_attr_int(f, path, "checksum");
            }
        }
    h5_close(f);
    a->f = -1;
}

/* A probe under rt_try: a damaged candidate is skipped, so what the failed probe had open is
 * closed here (the run goes on past any number of them). */
static int try_probe(void (*fn)(void *), probe_arg *a, char *why, size_t len)
{
    int ok = rt_try(fn, a, why, len);
    if (!ok && a->f >= 0) h5_close_all(a->f);
    a->f = -1;
    return ok;
}

typedef struct {
    const probe_arg *probe;
    const sl_config *cfg;
} compat_arg;

/* What must match the checkpoint: the model's shapes, and the options (resume.c). */
static void check_compatible(void *arg)
{
    const compat_arg *c = arg;
    const char *path = c->probe->path;
    hid_t f = h5_open(path, "checkpoint", 0, MPI_COMM_NULL);
    char signature[256];
    model_signature(&c->probe->m->cfg, signature, sizeof signature);
    char *then = h5_attr_string(f, "/", "model_signature");
    if (strcmp(then, signature) != 0)
        sl_fatal("%s: the checkpoint was made with a different model: %s, but this run has %s (it must match to resume)",
                 path, then, signature);
    free(then);
    resume_check_options(f, path, c->cfg, h5_attr_int(f, "/", "step"));
    h5_close(f);
}

/* Collective: load a candidate and verify every checksum; returns 1, or 0 with why set. */
static int load_verified(sl_model *m, float *const roles[CKPT_ROLES], const char *path, ckpt_meta *meta, char *why,
                         size_t len)
{
    hid_t f = h5_open(path, "checkpoint", 0, MPI_COMM_WORLD);
    for (int r = 0; r < CKPT_ROLES; r++)
        for (int u = 0; u < m->n_units; u++)
            fsdp_pool_read_at(&m->units[u].train, f, ROLE_PREFIX[r], unit_shard(m, roles[r], u));
    uint64_t *sums = checksums(m, roles), *at = sums;
    char dset[256];
    int ok = 1;
    for (int r = 0; r < CKPT_ROLES && ok; r++)
        for (int u = 0; u < m->n_units && ok; u++)
            for (int i = 0; i < m->units[u].train.n_members && ok; i++, at++) {
                snprintf(dset, sizeof dset, "%s%s", ROLE_PREFIX[r], m->units[u].train.members[i].path);
                if ((uint64_t)h5_attr_int(f, dset, "checksum") != *at) {
                    ok = 0;
                    snprintf(why, len, "checksum mismatch in dataset %s", dset);
                }
            }
    meta->step = h5_attr_int(f, "/", "step");
    meta->tokens_seen = h5_attr_double(f, "/", "tokens_seen");
    free(sums);
    h5_close(f);
    return ok;
}

/* Rank 0 lists the candidates (newest first) and every rank receives them. */
static int candidates(const sl_config *cfg, char (**out)[4096])
{
    int n = 0;
    char (*list)[4096] = NULL;
    if (RT.rank == 0) {
        if (strcmp(cfg->resume, "auto") != 0) {
            list = sl_calloc(1, sizeof *list, "checkpoint list");
            snprintf(list[0], sizeof list[0], "%s", cfg->resume);
            n = 1;
        } else {
            char dir[3800]; /* leaves room for the file name in a list entry */
            checkpoint_dir(cfg, dir, sizeof dir);
            struct dirent **ents;
            int k = scandir(dir, &ents, NULL, alphasort);
            list = sl_calloc((size_t)(k > 0 ? k : 1), sizeof *list, "checkpoint list");
            for (int i = k - 1; i >= 0; i--) {
                const char *name = ents[i]->d_name;
                size_t len = strlen(name);
                if (!strncmp(name, "step_", 5) && len > 3 && !strcmp(name + len - 3, ".h5"))
                    snprintf(list[n++], sizeof list[0], "%s/%s", dir, name);
                free(ents[i]);
            }
            if (k >= 0) free(ents);
        }
    }
    MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (RT.rank != 0) list = sl_calloc((size_t)(n > 0 ? n : 1), sizeof *list, "checkpoint list");
    if (n > 0) MPI_CHECK(MPI_Bcast(list, n * 4096, MPI_CHAR, 0, MPI_COMM_WORLD));
    *out = list;
    return n;
}

int checkpoint_resume(sl_model *m, float *const roles[CKPT_ROLES], const sl_config *cfg, ckpt_meta *meta)
{
    char (*list)[4096], why[4096] = "";
    int n = candidates(cfg, &list), explicit = strcmp(cfg->resume, "auto") != 0;
    for (int i = 0; i < n; i++) {
        probe_arg pa = {.m = m, .path = list[i], .f = -1};
        int ok = RT.rank != 0 || try_probe(probe, &pa, why, sizeof why);
        MPI_CHECK(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
        if (ok) {
            compat_arg ca = {.probe = &pa, .cfg = cfg};
            rt_rank0_checks(check_compatible, &ca); /* a mismatch is the user's to fix: fatal */
            ok = RT.rank != 0 || try_probe(probe_datasets, &pa, why, sizeof why);
            MPI_CHECK(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
        }
        if (ok) ok = load_verified(m, roles, list[i], meta, why, sizeof why);
        if (ok) {
            log_info("resume: from %s (step %lld)", list[i], (long long)meta->step);
            free(list);
            return 1;
        }
        if (explicit) rt_fail_all("cannot resume from %s: %s", list[i], why);
        if (RT.rank == 0) log_warn("skipping checkpoint %s: %s", list[i], why);
    }
    free(list);
    if (explicit) rt_fail_all("cannot resume: no checkpoint given");
    log_info("resume: no valid checkpoint in %s/checkpoints; starting from step 0", cfg->out);
    return 0;
}
