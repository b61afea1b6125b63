/* outdir: the state a previous run left in OUT. */
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

static int is_checkpoint_name(const char *name)
{
    size_t n = strlen(name);
    return !strncmp(name, "step_", 5) && ((n > 3 && !strcmp(name + n - 3, ".h5")) ||
                                          (n > 11 && !strcmp(name + n - 11, ".h5.partial")));
}

/* The checkpoints of OUT, counted; with remove set, deleted. */
static int checkpoints(const char *out, int remove_them)
{
    char dir[4200], path[4500];
    snprintf(dir, sizeof dir, "%s/checkpoints", out);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_checkpoint_name(e->d_name)) continue;
        n++;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (remove_them && unlink(path) != 0) sl_fatal("--overwrite: cannot remove '%s': %s", path, strerror(errno));
    }
    closedir(d);
    return n;
}

static const char *const OUTPUT_FILES[] = {"metrics.h5", "adapter.h5"};

/* What of a previous run OUT holds, listed in what; returns 0 when nothing. */
static int previous_run(const char *out, char *what, size_t len)
{
    int n = checkpoints(out, 0), found = n > 0;
    size_t at = 0;
    what[0] = 0;
    if (n) at += (size_t)snprintf(what, len, "%d checkpoint%s (checkpoints/step_*.h5)", n, n == 1 ? "" : "s");
    for (size_t i = 0; i < sizeof OUTPUT_FILES / sizeof *OUTPUT_FILES && at < len; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", out, OUTPUT_FILES[i]);
        if (access(path, F_OK) != 0) continue;
        at += (size_t)snprintf(what + at, len - at, "%s%s", found ? ", " : "", OUTPUT_FILES[i]);
        found = 1;
    }
    return found;
}

void outdir_check_previous(void *arg)
{
    const sl_config *cfg = arg;
    char what[512];
    if (!cfg->resume && !cfg->overwrite && previous_run(cfg->out, what, sizeof what))
        sl_fatal("output directory '%s' holds another run's state: %s; pass --resume=auto to continue that run, "
                 "--overwrite to replace it, or another --out", cfg->out, what);
}

static void remove_previous(const char *out)
{
    char what[512], path[4200];
    if (!previous_run(out, what, sizeof what)) return;
    checkpoints(out, 1);
    for (size_t i = 0; i < sizeof OUTPUT_FILES / sizeof *OUTPUT_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", out, OUTPUT_FILES[i]);
        if (unlink(path) != 0 && errno != ENOENT) sl_fatal("--overwrite: cannot remove '%s': %s", path, strerror(errno));
    }
    log_info("train: --overwrite: removed the previous run's state from %s: %s", out, what);
}

void outdir_claim(const sl_config *cfg)
{
    char msg[4096] = "";
    int ok = RT.rank != 0 || rt_try(outdir_check_previous, (void *)cfg, msg, sizeof msg);
    rt_agree(ok, "%s", msg);
    if (cfg->overwrite && RT.rank == 0) remove_previous(cfg->out);
}
