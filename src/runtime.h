/* runtime: MPI start-up, rank identity, local rank and device binding, logging, fatal errors.
 * Every other room reports problems through sl_fatal / rt_agree, so that no rank hangs. */
#ifndef SL_RUNTIME_H
#define SL_RUNTIME_H

#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#ifdef __cplusplus
#define noreturn [[noreturn]] /* the CUDA backend (C++) reports through sl_fatal too */
#else
#include <stdnoreturn.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int rank, world;            /* position in MPI_COMM_WORLD */
    int local_rank, local_size; /* position among the ranks of this node */
    int mpi;                    /* 1 when MPI was initialised by rt_init (tools run without it) */
    const char *program;        /* name used in log prefixes */
} sl_runtime;

extern sl_runtime RT;

/* Initialise MPI and find the local rank (MPI_COMM_TYPE_SHARED, else SLURM_LOCALID). */
void rt_init(int *argc, char ***argv, const char *program);
/* Serial programs (the tools): no MPI, rank 0 of 1. */
void rt_init_serial(const char *program);
void rt_finalize(void);

/* Normal output: rank 0 only, to stdout. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Any rank, to stderr, prefixed with the rank. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An error found by one rank alone: print it with the rank and end every rank (MPI_Abort). */
noreturn void sl_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void sl_vfatal(const char *fmt, va_list ap);
/* A command-line error of a tool: print it and exit with status 2, as shardlora does for its options. */
noreturn void sl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Collective: every rank passes whether its check held. If any failed, each failing rank prints
 * its message, and all ranks finalize and exit with status 1. Call it before any collective that
 * depends on the checked input, so an error is never a hang. */
void rt_agree(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Collective: an error every rank found alike. Rank 0 prints it; all ranks exit with status 1. */
noreturn void rt_fail_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The build's version (git describe), stored in every output file. */
const char *sl_version(void);

/* Wall-clock seconds (monotonic). */
double rt_now(void);

#define MPI_CHECK(call)                                                                        \
    do {                                                                                       \
        int mpi_rc_ = (call);                                                                  \
        if (mpi_rc_ != MPI_SUCCESS) rt_mpi_failed(mpi_rc_, #call, __FILE__, __LINE__);         \
    } while (0)
noreturn void rt_mpi_failed(int rc, const char *call, const char *file, int line);

/* Allocation that cannot return NULL: a failure is fatal and says how much was asked for. */
void *sl_malloc(size_t bytes, const char *what);
void *sl_calloc(size_t n, size_t size, const char *what);
void *sl_realloc(void *p, size_t bytes, const char *what);
/* Inputs are opened only when they are regular files (a FIFO would block the opening rank
 * forever): fatal naming the option, the path and what it is; a missing path passes, for the
 * open that follows to report. */
void rt_expect_regular_file(const char *option, const char *path);
/* mkdir -p of an output directory, which must end up a writable directory (fatal otherwise,
 * naming it and why). */
void rt_make_directory(const char *dir);

/* Run fn on the calling rank with sl_fatal caught: returns 1 when it completed, else 0 with the
 * error message in msg. For trying inputs that may be damaged (checkpoints) without ending the run. */
int rt_try(void (*fn)(void *), void *arg, char *msg, size_t len);

/* Inside rt_try: record the error and jump back to it. Outside: return, for the caller to report
 * it. Every path that ends the process on an error calls it first (sl_fatal, sl_usage_error,
 * rt_agree, rt_fail_all, rt_rank0_checks, the option parser's usage errors), so the fuzz targets
 * can run them in one process; a normal run never calls those under rt_try. */
void rt_trap_error(const char *fmt, va_list ap);

/* Run checks on rank 0 alone (collective): an sl_fatal raised inside fn is caught, printed once
 * by rank 0, and every rank exits with status 1 without an abort. Use it to validate inputs that
 * every rank would find equally bad (options, file structure) before any collective I/O. */
void rt_rank0_checks(void (*fn)(void *), void *arg);
#ifdef __cplusplus
}
#endif

#endif
