/* watchdog: the collective in progress, seen from a thread that only reads two atomics. */
#include "watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

static _Atomic long long entered_ms; /* 0: in no collective */
static const char *_Atomic entered_what;
static double limit_s;
static int started;

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* MPI may not be called from this thread: print and end the process; mpirun then ends the job. */
static void *watch(void *unused)
{
    (void)unused;
    const struct timespec nap = {0, 500000000};
    for (;;) {
        nanosleep(&nap, NULL);
        long long since = atomic_load(&entered_ms);
        if (since && (double)(now_ms() - since) > 1000.0 * limit_s) {
            fprintf(stderr, "shardlora: rank %d: error: the %s made no progress for %.0f s (--comm-timeout): a peer rank "
                            "is stuck or gone; ending the job\n", RT.rank, atomic_load(&entered_what), limit_s);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

void watchdog_start(double timeout_s)
{
    if (started || timeout_s <= 0) return;
    limit_s = timeout_s;
    pthread_t t;
    if (pthread_create(&t, NULL, watch, NULL) != 0) sl_fatal("cannot start the collectives' watchdog thread");
    pthread_detach(t);
    started = 1;
}

void watchdog_enter(const char *what)
{
    atomic_store(&entered_what, what);
    atomic_store(&entered_ms, now_ms());
}

void watchdog_leave(void) { atomic_store(&entered_ms, 0); }
