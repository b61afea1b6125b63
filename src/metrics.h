/* metrics: OUT/metrics.h5, one row per logged step, written by rank 0 alone (never collectively).
 *
 * Layout: /metrics/step (int64) and one float64 series per name (/metrics/loss, lr, grad_norm,
 * tokens_per_s always; others when first appended), all 1-D, chunked, unlimited, of equal length:
 * row i of every series belongs to step[i]; NaN where a series had no value at that step. Each
 * dataset has a `units` attribute; the root has shardlora_kind="metrics" and format_version=1.
 *
 * Readable while the job runs: every append builds the next version of the file beside it
 * (metrics.h5.next) and renames it over the old one, so h5dump, h5ls and h5py always open a whole,
 * closed file; a reader that holds the old version open keeps reading it consistently. HDF5 SWMR
 * was tried and not used: with HDF5 1.10 h5dump cannot open a SWMR-written file mid-run. In-place
 * appends without a lock let a reader that opened earlier see series of different lengths (the
 * live test caught it). The copy costs O(rows) per logged step: 4 MB at 100k rows.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stdint.h>

typedef struct {
    const char *name;  /* a dataset name under /metrics */
    const char *units; /* stored when the series is created */
    double value;
} sl_metric;

typedef struct {
    char *path;
    int64_t rows, last_step;
} sl_metrics;

/* resume_step < 0: create path afresh. resume_step >= 0: continue an existing file, dropping the
 * rows with step > resume_step (a restart from that checkpoint); create it if missing. */
void metrics_open(sl_metrics *m, const char *path, int64_t resume_step);
/* Append the row of step (greater than every step before); series not named get NaN. */
void metrics_append(sl_metrics *m, int64_t step, const sl_metric *values, int n);
void metrics_close(sl_metrics *m);

#endif
