/* outdir: the run lock of OUT and the state a previous run left there. */
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

typedef struct {
    char host[256], job[64];
    long pid, restart; /* restart: SLURM_RESTART_COUNT, how often the job was requeued */
} lock_owner;

static char lock_path[4200];
static int lock_fd = -1;

static void this_owner(lock_owner *o)
{
    if (gethostname(o->host, sizeof o->host) != 0) snprintf(o->host, sizeof o->host, "unknown");
    o->host[sizeof o->host - 1] = 0;
    o->pid = (long)getpid();
    const char *job = getenv("SLURM_JOB_ID");
    snprintf(o->job, sizeof o->job, "%s", job && *job ? job : "none");
    const char *restart = getenv("SLURM_RESTART_COUNT");
    o->restart = restart ? atol(restart) : 0;
}

static void read_owner(int fd, lock_owner *o)
{
    char buf[512];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    *o = (lock_owner){.host = "unknown", .job = "none", .pid = 0, .restart = 0};
    sscanf(buf, "host=%255s pid=%ld slurm_job=%63s slurm_restart=%ld", o->host, &o->pid, o->job, &o->restart);
}

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

enum { LOCK_LIVE, LOCK_STALE_REMOVED, LOCK_GONE };

/* A zombie (exited, not yet reaped: containers whose init does not reap) runs no more either. */
static int pid_alive(long pid)
{
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
    char path[64], stat_line[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(stat_line, 1, sizeof stat_line - 1, f);
    fclose(f);
    stat_line[n] = 0;
    const char *state = strrchr(stat_line, ')');
    return !(state && state[1] == ' ' && state[2] == 'Z');
}

/* Whether the lock file's holder is gone, when its flock is not held: on this host, the flock was
 * free (the holder keeps it while it runs) or, where flock does not work, its pid no longer runs;
 * or it was an earlier run of this requeued Slurm job (Slurm runs one at a time; the node may be
 * another one now). */
static int holder_gone(const lock_owner *me, const lock_owner *holder, int got_flock)
{
    if (holder->pid <= 0) return 0; /* being written, or not a lock of ours */
    if (strcmp(me->job, "none") != 0 && !strcmp(holder->job, me->job) && holder->restart < me->restart) return 1;
    return !strcmp(holder->host, me->host) && (got_flock || !pid_alive(holder->pid));
}

/* Whether the lock file's holder still runs. A stale lock (flock free, holder gone) is removed
 * while its flock is held, so that two runs cannot both take it over. */
static int examine_lock(const lock_owner *me, lock_owner *holder)
{
    int fd = open(lock_path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return LOCK_GONE;
        sl_fatal("cannot open the run lock '%s': %s", lock_path, strerror(errno));
    }
    read_owner(fd, holder);
    int got_flock = flock(fd, LOCK_EX | LOCK_NB) == 0, held = !got_flock && errno == EWOULDBLOCK;
    struct stat a, b;
    if (!held && (fstat(fd, &a) != 0 || stat(lock_path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
        close(fd); /* replaced meanwhile: look again */
        return LOCK_GONE;
    }
    int dead = !held && holder_gone(me, holder, got_flock);
    if (dead) {
        log_warn("output directory '%s': taking over the stale run lock %s of pid %ld on host %s (Slurm job %s), "
                 "which is no longer running", lock_path, lock_path, holder->pid, holder->host, holder->job);
        if (unlink(lock_path) != 0) sl_fatal("cannot remove the stale run lock '%s': %s", lock_path, strerror(errno));
    }
    close(fd);
    return dead ? LOCK_STALE_REMOVED : LOCK_LIVE;
}

static int create_lock(const lock_owner *me)
{
    int fd = open(lock_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == EEXIST) return 0;
        sl_fatal("cannot create the run lock '%s': %s", lock_path, strerror(errno));
    }
    /* flock, so that a crash frees the lock; errors other than contention mean no flock here */
    if (flock(fd, LOCK_EX) != 0 && errno != ENOLCK && errno != EINVAL && errno != EOPNOTSUPP)
        sl_fatal("cannot lock '%s': %s", lock_path, strerror(errno));
    char text[512];
    int n = snprintf(text, sizeof text, "host=%s\npid=%ld\nslurm_job=%s\nslurm_restart=%ld\n", me->host, me->pid,
                     me->job, me->restart);
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0)
        sl_fatal("cannot write the run lock '%s': %s", lock_path, strerror(errno));
    lock_fd = fd;
    atexit(outdir_release);
    return 1;
}

static void take_lock(const char *out)
{
    lock_owner me, holder;
    this_owner(&me);
    snprintf(lock_path, sizeof lock_path, "%s/" OUTDIR_LOCK_NAME, out);
    for (int attempt = 0; attempt < 4; attempt++) {
        if (create_lock(&me)) return;
        if (examine_lock(&me, &holder) != LOCK_LIVE) continue;
        sl_fatal("output directory '%s' is in use by another run: host %s, pid %ld, Slurm job %s (lock file %s); "
                 "wait for it to end or use another --out%s", out, holder.host, holder.pid, holder.job, lock_path,
                 strcmp(holder.host, me.host) ? " (it runs on another host: if it has ended, remove the lock file)"
                                              : "");
    }
    sl_fatal("cannot take the run lock '%s': other runs keep taking it", lock_path);
}

static void claim(void *arg)
{
    const sl_config *cfg = arg;
    take_lock(cfg->out);
    char msg[4096];
    if (!rt_try(outdir_check_previous, arg, msg, sizeof msg)) {
        outdir_release();
        sl_fatal("%s", msg);
    }
}

void outdir_claim(const sl_config *cfg)
{
    char msg[4096] = "";
    int ok = RT.rank != 0 || rt_try(claim, (void *)cfg, msg, sizeof msg);
    rt_agree(ok, "%s", msg);
    if (cfg->overwrite && RT.rank == 0) remove_previous(cfg->out);
}

void outdir_release(void)
{
    if (lock_fd < 0) return;
    unlink(lock_path);
    close(lock_fd);
    lock_fd = -1;
}
