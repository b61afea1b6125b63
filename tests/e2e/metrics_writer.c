/* Driver for test_metrics_live.py: appends ROWS rows to metrics.h5 at PATH, DELAY seconds apart,
 * with values the test recomputes: step 5*(i+1), loss 1/(i+1), lr 1e-3*i, grad_norm i*i,
 * tokens_per_s 100+i, and an extra series "seen" = i. */
#include <stdlib.h>
#include <time.h>

#include "metrics.h"
#include "runtime.h"

int main(int argc, char **argv)
{
    rt_init_serial("metrics_writer");
    if (argc != 4) sl_fatal("usage: metrics_writer PATH ROWS DELAY_S");
    int rows = atoi(argv[2]);
    double delay = atof(argv[3]);
    struct timespec pause = {.tv_sec = (time_t)delay, .tv_nsec = (long)((delay - (time_t)delay) * 1e9)};
    sl_metrics m;
    metrics_open(&m, argv[1], -1);
    for (int i = 0; i < rows; i++) {
        sl_metric v[] = {{"loss", NULL, 1.0 / (i + 1)}, {"lr", NULL, 1e-3 * i}, {"grad_norm", NULL, (double)i * i},
                         {"tokens_per_s", NULL, 100.0 + i}, {"seen", "rows", i}};
        metrics_append(&m, 5 * (i + 1), v, 5);
        nanosleep(&pause, NULL);
    }
    metrics_close(&m);
    return 0;
}
