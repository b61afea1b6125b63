/* slurm: signal flags and the job's remaining wall time. */
#include "slurm.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#ifdef SL_HAVE_SLURM
#include <slurm/slurm.h>
#endif

static volatile sig_atomic_t received;

static void on_signal(int sig)
{
    if (received) { /* the second one escalates: leave now */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    received = sig;
}

void slurm_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int slurm_signal_received(void) { return (int)received; }

double slurm_remaining_seconds(void)
{
#ifdef SL_HAVE_SLURM
    static double asked_at = -1e30, left_then = -1;
    const char *job = getenv("SLURM_JOB_ID");
    if (!job) return -1;
    double now = rt_now();
    if (now - asked_at >= 60) {
        long left = slurm_get_rem_time((uint32_t)strtoul(job, NULL, 10));
        asked_at = now;
        left_then = left >= 0 ? (double)left : -1;
    }
    return left_then < 0 ? -1 : left_then - (now - asked_at);
#else
    return -1;
#endif
}
