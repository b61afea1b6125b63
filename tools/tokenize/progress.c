/* progress: rank 0 speaks for all (log_info), every PROGRESS_EVERY seconds. */
#include "progress.h"

#include <mpi.h>

#include "runtime.h"

#define PROGRESS_EVERY 10.0

void progress_start(progress *p, int64_t bytes_total)
{
    p->t0 = p->last = rt_now();
    p->bytes_total = bytes_total, p->bytes_done = p->checked = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &p->world);
}

void progress_add(progress *p, int64_t bytes, const corpus *c)
{
    p->bytes_done += bytes;
    if (p->bytes_done - p->checked < (1 << 20)) return; /* the clock once a MB, not once a line */
    p->checked = p->bytes_done;
    double now = rt_now();
    if (now - p->last < PROGRESS_EVERY) return;
    p->last = now;
    double mb_s = p->bytes_done / 1e6 / (now - p->t0);
    double eta = mb_s > 0 ? (p->bytes_total - p->bytes_done) / 1e6 / mb_s : 0;
    log_info("shardlora-tokenize: rank 0 of %d: %.1f of %.1f MB (%.0f%%), %lld documents, %lld tokens, %.1f MB/s "
             "per rank, ETA %.0f s", p->world, p->bytes_done / 1e6, p->bytes_total / 1e6,
             p->bytes_total ? 100.0 * p->bytes_done / p->bytes_total : 100.0, (long long)c->n_docs,
             (long long)c->n_tokens, mb_s, eta);
}
