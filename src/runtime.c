/* runtime: MPI start-up, local rank, logging and the fatal-error path. */
#include "runtime.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "watchdog.h"

sl_runtime RT = {.rank = 0, .world = 1, .local_rank = 0, .local_size = 1, .mpi = 0,
                 .program = "shardlora"};

static void find_local_rank(void)
{
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, RT.rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &RT.local_rank));
    MPI_CHECK(MPI_Comm_size(node, &RT.local_size));
    MPI_CHECK(MPI_Comm_free(&node));
    /* Some launchers give every rank its own shared-memory domain; Slurm knows better then. */
    const char *slurm_local = getenv("SLURM_LOCALID");
    if (RT.local_size == 1 && RT.world > 1 && slurm_local) RT.local_rank = atoi(slurm_local);
}

void rt_init(int *argc, char ***argv, const char *program)
{
    RT.program = program;
    MPI_CHECK(MPI_Init(argc, argv));
    RT.mpi = 1;
    /* Errors come back to us so they can be reported with the call and the rank. */
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &RT.rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &RT.world));
    find_local_rank();
}

void rt_init_serial(const char *program) { RT.program = program; }

void rt_finalize(void)
{
    fflush(stdout);
    if (RT.mpi) MPI_Finalize();
    RT.mpi = 0;
}

void log_info(const char *fmt, ...)
{
    if (RT.rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void print_prefixed(const char *kind, const char *fmt, va_list ap)
{
    /* One write per message so lines from different ranks do not interleave mid-line. */
    char buf[4096];
    int n = RT.mpi ? snprintf(buf, sizeof buf, "%s: rank %d: %s: ", RT.program, RT.rank, kind)
                   : snprintf(buf, sizeof buf, "%s: %s: ", RT.program, kind);
    vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    size_t len = strlen(buf);
    buf[len] = '\n';
    fflush(stdout);
    fwrite(buf, 1, len + 1, stderr);
    fflush(stderr);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_prefixed("warning", fmt, ap);
    va_end(ap);
}

/* Set while rt_rank0_checks runs: sl_fatal then records the message and jumps back. */
static jmp_buf *check_trap;
static char trapped_msg[4096];

void rt_trap_error(const char *fmt, va_list ap)
{
    if (!check_trap) return;
    vsnprintf(trapped_msg, sizeof trapped_msg, fmt, ap);
    longjmp(*check_trap, 1);
}

noreturn void sl_vfatal(const char *fmt, va_list ap)
{
    rt_trap_error(fmt, ap);
    print_prefixed("error", fmt, ap);
    if (RT.mpi && RT.world > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    if (RT.mpi) MPI_Finalize();
    exit(1);
}

noreturn void sl_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vfatal(fmt, ap);
}

noreturn void sl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_trap_error(fmt, ap);
    va_end(ap);
    va_start(ap, fmt);
    print_prefixed("error", fmt, ap);
    va_end(ap);
    rt_finalize();
    exit(2);
}

/* Every rank ends cleanly (no abort), after those that speak have printed the message. */
noreturn static void end_all(int speak, const char *fmt, va_list ap)
{
    va_list trapped;
    va_copy(trapped, ap);
    rt_trap_error(fmt, trapped); /* under rt_try (the fuzz targets) the error is caught instead */
    va_end(trapped);
    if (speak) print_prefixed("error", fmt, ap);
    rt_finalize();
    exit(1);
}

void rt_agree(int ok, const char *fmt, ...)
{
    int all_ok = ok;
    if (RT.mpi) {
        watchdog_enter("agreement");
        MPI_CHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
        watchdog_leave();
    }
    if (all_ok) return;
    va_list ap;
    va_start(ap, fmt);
    end_all(!ok, fmt, ap);
}

noreturn void rt_fail_all(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    end_all(RT.rank == 0, fmt, ap);
}

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif
const char *sl_version(void) { return SL_VERSION; }

double rt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

noreturn void rt_mpi_failed(int rc, const char *call, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    sl_fatal("MPI call failed at %s:%d: %s: %s", file, line, call, msg);
}

void *sl_malloc(size_t bytes, const char *what)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) sl_fatal("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *sl_realloc(void *p, size_t bytes, const char *what)
{
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) sl_fatal("out of memory allocating %zu bytes for %s", bytes, what);
    return q;
}

void *sl_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) sl_fatal("out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void rt_expect_regular_file(const char *option, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode)) return;
    const char *kind = S_ISFIFO(st.st_mode)  ? "a FIFO (named pipe)"
                       : S_ISDIR(st.st_mode) ? "a directory"
                       : S_ISCHR(st.st_mode) ? "a character device"
                       : S_ISBLK(st.st_mode) ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a file";
    sl_fatal("option %s: '%s' is %s, not a regular file (expected the file itself)", option, path, kind);
}

void rt_make_directory(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) sl_fatal("output directory name too long: %s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            sl_fatal("cannot create output directory '%s': %s", path, strerror(errno));
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) sl_fatal("cannot create output directory '%s': a file of that name exists", dir);
    if (access(dir, W_OK) != 0) sl_fatal("output directory '%s' is not writable: %s", dir, strerror(errno));
}

static void print_error(const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    print_prefixed("error", msg, ap);
    va_end(ap);
}

static void trap_text(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_trap_error(fmt, ap);
    va_end(ap);
}

int rt_try(void (*fn)(void *), void *arg, char *msg, size_t len)
{
    jmp_buf trap, *volatile outer = check_trap;
    if (setjmp(trap) == 0) {
        check_trap = &trap;
        fn(arg);
        check_trap = outer;
        return 1;
    }
    check_trap = outer;
    if (msg != trapped_msg) snprintf(msg, len, "%s", trapped_msg);
    return 0;
}

void rt_rank0_checks(void (*fn)(void *), void *arg)
{
    int failed = 0;
    if (RT.rank == 0) failed = !rt_try(fn, arg, trapped_msg, sizeof trapped_msg);
    if (RT.mpi) MPI_CHECK(MPI_Bcast(&failed, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (!failed) return;
    if (RT.rank == 0) {
        char msg[sizeof trapped_msg];
        snprintf(msg, sizeof msg, "%s", trapped_msg);
        trap_text("%s", msg); /* inside an outer rt_try, caught there */
        print_error("%s", msg);
    }
    rt_finalize();
    exit(1);
}
