/* harness: errors caught around the code under test, what they leave behind, and the scratch files
 * inputs go through. */
#include "harness.h"

#include <fcntl.h>
#include <hdf5.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5io.h"
#include "runtime.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_HAVE_LSAN 1
#endif
#endif

static char scratch[256];
static char outcome[4096 + 16] = "accepted";
static int errors_this_input, skip_leak_checks;

void fuzz_skip_leak_checks(void) { skip_leak_checks = 1; }

void fuzz_start_mpi(const char *program)
{
    static int started;
    if (started++) return;
    int argc = 0;
    char **argv = NULL;
    rt_init(&argc, &argv, program);
    fuzz_skip_leak_checks();
}

/* ---- what an interrupted call still holds ----
 * Under the sanitizers, allocator hooks record the heap blocks allocated while a call runs and drop
 * those it frees; after an sl_fatal the rest are marked for the leak checker to ignore, as the real
 * program's exit would have reclaimed them. The streams it opened are closed at the end of the
 * input, after the target's own clean-up (a FILE and its buffer are some 5 KB, which a million
 * errors would otherwise pile up): fopen and fclose are wrapped to know them, this build's own (the
 * sanitizers' interceptors give way to these). */
#ifdef FUZZ_HAVE_LSAN
#include <dlfcn.h>
#include <sanitizer/allocator_interface.h>
#include <sanitizer/lsan_interface.h>

enum { HELD_SLOTS = 1 << 20, HELD_MAX = HELD_SLOTS / 2, MAX_STREAMS = 64 };
static const void *held[HELD_SLOTS]; /* open addressing; TOMBSTONE marks a freed block's slot */
#define TOMBSTONE ((const void *)1)
static uint32_t used[HELD_MAX]; /* the slots filled since track_start, to clear only those */
static atomic_flag held_lock = ATOMIC_FLAG_INIT;
static int tracking, n_used;
static atomic_llong live_blocks; /* mallocs minus frees, all the time */
static FILE *streams[MAX_STREAMS]; /* opened during a call, until fclose'd */
static int n_streams, n_call_streams;

static size_t slot_of(const volatile void *p) { return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 44; }

static void on_malloc(const volatile void *p, size_t size)
{
    if (p) atomic_fetch_add(&live_blocks, 1);
    if (!tracking || !p) return;
    while (atomic_flag_test_and_set(&held_lock)) {}
    if (n_used < HELD_MAX) { /* past that, blocks go unrecorded (and may be reported) */
        size_t s = slot_of(p) & (HELD_SLOTS - 1);
        while (held[s] && held[s] != TOMBSTONE) s = (s + 1) & (HELD_SLOTS - 1);
        if (!held[s]) used[n_used++] = (uint32_t)s;
        held[s] = (const void *)p;
    }
    atomic_flag_clear(&held_lock);
}

static void on_free(const volatile void *p)
{
    if (p) atomic_fetch_sub(&live_blocks, 1);
    if (!tracking || !p) return;
    while (atomic_flag_test_and_set(&held_lock)) {}
    for (size_t s = slot_of(p) & (HELD_SLOTS - 1); held[s]; s = (s + 1) & (HELD_SLOTS - 1))
        if (held[s] == p) {
            held[s] = TOMBSTONE;
            break;
        }
    atomic_flag_clear(&held_lock);
}

static void install_hooks(void)
{
    static int installed;
    if (!installed) __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    installed = 1;
}

static void track_start(void)
{
    install_hooks();
    n_call_streams = n_streams;
    tracking = 1;
}

/* forgive: the call was interrupted; its streams stay listed for close_streams */
static void track_stop(int forgive)
{
    tracking = 0;
    for (int i = 0; i < n_used; i++) {
        const void *p = held[used[i]];
        if (forgive && p != TOMBSTONE) __lsan_ignore_object(p);
        held[used[i]] = NULL;
    }
    n_used = 0;
    if (!forgive) n_streams = n_call_streams;
}

FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*real_fopen)(const char *, const char *);
    if (!real_fopen) real_fopen = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
    FILE *f = real_fopen(path, mode);
    if (f && tracking && n_streams < MAX_STREAMS) streams[n_streams++] = f;
    return f;
}

int fclose(FILE *f)
{
    static int (*real_fclose)(FILE *);
    if (!real_fclose) real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    for (int i = 0; i < n_streams; i++)
        if (streams[i] == f) {
            streams[i] = streams[--n_streams];
            break;
        }
    return real_fclose(f);
}

static void close_streams(void)
{
    while (n_streams > 0) fclose(streams[n_streams - 1]);
}

/* An input that met no error and ends with more heap blocks than it began with: checked for leaks
 * (not the first, which also makes the target's fixed state: valid files, a tokenizer, MPI). */
static long long blocks_now(void) { return atomic_load(&live_blocks); }

static void check_leaks(long long before)
{
    static int inputs;
    if (inputs++ && !skip_leak_checks && !errors_this_input && blocks_now() > before &&
        __lsan_do_recoverable_leak_check()) {
        fprintf(stderr, "fuzz: the input above leaked (it met no error)\n");
        abort();
    }
}
#else
static void install_hooks(void) {}
static void track_start(void) {}
static void track_stop(int forgive) {}
static void close_streams(void) {}
static long long blocks_now(void) { return 0; }
static void check_leaks(long long before) {}
#endif

/* HDF5 files an interrupted call left open, with their objects: closed, as the real program's exit
 * would. */
static void close_hdf5_leftovers(void)
{
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE);
    if (n <= 0) return;
    hid_t *files = malloc((size_t)n * sizeof *files);
    n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_FILE, (size_t)n, files);
    for (ssize_t i = 0; i < n; i++) h5_close_all(files[i]);
    free(files);
}

/* Descriptors an interrupted call opened (not through fopen): closed at the end of the input, or a
 * target runs out of them after about a thousand errors. */
enum { WATCHED_FDS = 1024 };
static unsigned char fd_open_before[WATCHED_FDS], fd_to_close[WATCHED_FDS];

static void note_open_fds(void)
{
    for (int fd = 0; fd < WATCHED_FDS; fd++) fd_open_before[fd] = fcntl(fd, F_GETFD) != -1;
}

static void mark_new_fds(void)
{
    for (int fd = 3; fd < WATCHED_FDS; fd++)
        if (!fd_open_before[fd] && fcntl(fd, F_GETFD) != -1) fd_to_close[fd] = 1;
}

static void close_marked_fds(void)
{
    for (int fd = 3; fd < WATCHED_FDS; fd++)
        if (fd_to_close[fd]) close(fd), fd_to_close[fd] = 0;
}

int fuzz_input(void (*fn)(const uint8_t *data, size_t size), const uint8_t *data, size_t size)
{
    install_hooks();
    errors_this_input = 0;
    long long before = blocks_now();
    fn(data, size);
    if (errors_this_input) close_streams(), close_marked_fds();
    check_leaks(before);
    return 0;
}

/* outcome = prefix + msg, the scratch directory replaced by INPUT. */
static void set_outcome(const char *prefix, const char *msg)
{
    size_t n = (size_t)snprintf(outcome, sizeof outcome, "%s", prefix), len = strlen(scratch);
    while (*msg && n + 6 < sizeof outcome) {
        if (len && !strncmp(msg, scratch, len)) {
            n += (size_t)snprintf(outcome + n, sizeof outcome - n, "INPUT");
            msg += len;
        } else {
            outcome[n++] = *msg++;
        }
    }
    outcome[n] = 0;
}

int fuzz_try(void (*fn)(void *), void *arg)
{
    char msg[4096];
    note_open_fds();
    track_start();
    int ok = rt_try(fn, arg, msg, sizeof msg);
    track_stop(!ok);
    if (!ok) close_hdf5_leftovers(), mark_new_fds(), errors_this_input++;
    set_outcome(ok ? "accepted" : "rejected: ", ok ? "" : msg);
    return ok;
}

const char *fuzz_outcome(void) { return outcome; }

void fuzz_accepted_as(const char *what)
{
    if (!strncmp(outcome, "accepted", 8)) set_outcome("accepted: ", what);
}

static void remove_scratch(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", scratch);
}

const char *fuzz_scratch_dir(void)
{
    if (scratch[0]) return scratch;
    const char *dir = getenv("FUZZ_SCRATCH_DIR"); /* run.sh's, removed after each fuzzer */
    if (!dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/shardlora-fuzz-%ld", dir, (long)getpid());
    if (mkdir(scratch, 0700) != 0) sl_fatal("cannot create the fuzz scratch directory %s", scratch);
    atexit(remove_scratch);
    return scratch;
}

const char *fuzz_scratch_file(const char *name, const void *data, size_t size)
{
    static char paths[4][512]; /* a target may hold a few at once */
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", fuzz_scratch_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        sl_fatal("cannot write the fuzz scratch file %s", path);
    return path;
}

uint8_t *fuzz_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *size = (size_t)n;
    return buf;
}
