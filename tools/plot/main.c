/* shardlora-plot METRICS.h5 OUT.png: loss, learning rate and throughput against the optimizer step,
 * three stacked panels drawn by gnuplot (run through a pipe, the data inline as datablocks). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5io.h"
#include "runtime.h"

static const char USAGE[] =
    "usage: shardlora-plot METRICS.h5 OUT.png\n"
    "Draws the training loss, the learning rate and the throughput (tokens/s) against the step from\n"
    "OUT/metrics.h5 of shardlora train (it may still be running) into a PNG, using gnuplot.\n";

static const struct { const char *series, *title; } PANELS[] = {
    {"loss", "loss"}, {"lr", "learning rate"}, {"tokens_per_s", "throughput"}};
#define N_PANELS (int)(sizeof PANELS / sizeof PANELS[0])

typedef struct {
    int64_t rows, *step;
    double *values[N_PANELS];
    char *units[N_PANELS];
} metrics_table;

static char temp_png[4096];

static void remove_temporary(void)
{
    if (temp_png[0]) unlink(temp_png);
}

static int gnuplot_on_path(void)
{
    const char *path = getenv("PATH");
    char *dirs = strdup(path ? path : "/usr/bin:/bin"), *save = NULL, exe[4096];
    int found = 0;
    for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        snprintf(exe, sizeof exe, "%s/gnuplot", *d ? d : ".");
        found = access(exe, X_OK) == 0;
    }
    free(dirs);
    return found;
}

static void read_metrics(const char *path, metrics_table *t)
{
    hid_t f = h5_open(path, "metrics", 0, MPI_COMM_NULL);
    char *kind = h5_has_attr(f, "/", "shardlora_kind") ? h5_attr_string(f, "/", "shardlora_kind") : strdup("none");
    if (strcmp(kind, "metrics") != 0)
        sl_fatal("%s: not a metrics file (root attribute shardlora_kind is '%s'; expected 'metrics' as in "
                 "OUT/metrics.h5 of shardlora train)", path, kind);
    free(kind);
    int64_t any_length[1] = {-1};
    t->rows = h5_expect_shape(f, "/metrics/step", 1, any_length).n;
    t->step = sl_malloc((size_t)(t->rows ? t->rows : 1) * sizeof *t->step, "/metrics/step");
    h5_read(f, "/metrics/step", SL_I64, t->step);
    for (int p = 0; p < N_PANELS; p++) {
        char ds[128];
        snprintf(ds, sizeof ds, "/metrics/%s", PANELS[p].series);
        int64_t rows[1] = {t->rows}; /* every series has one row per step */
        h5_expect_shape(f, ds, 1, rows);
        t->values[p] = sl_malloc((size_t)(t->rows ? t->rows : 1) * sizeof(double), ds);
        h5_read(f, ds, SL_F64, t->values[p]);
        t->units[p] = h5_has_attr(f, ds, "units") ? h5_attr_string(f, ds, "units") : strdup("");
    }
    h5_close(f);
}

/* A gnuplot single-quoted string: a quote is written twice. */
static void put_quoted(FILE *g, const char *s)
{
    fputc('\'', g);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', g);
        fputc(*s, g);
    }
    fputc('\'', g);
}

typedef struct {
    int64_t points;
    double min, max;
} series_range;

/* The series as a datablock $dP, rows without a value (NaN) left out. */
static series_range write_datablock(FILE *g, const metrics_table *t, int p)
{
    series_range r = {0, INFINITY, -INFINITY};
    fprintf(g, "$d%d << EOD\n", p);
    for (int64_t i = 0; i < t->rows; i++) {
        double v = t->values[p][i];
        if (!isfinite(v)) continue;
        fprintf(g, "%lld %.17g\n", (long long)t->step[i], v);
        r.points++, r.min = fmin(r.min, v), r.max = fmax(r.max, v);
    }
    fprintf(g, "EOD\n");
    return r;
}

static void write_panel(FILE *g, const metrics_table *t, int p, series_range r)
{
    fprintf(g, "set title '%s' noenhanced\nset ylabel ", PANELS[p].title);
    put_quoted(g, strcmp(t->units[p], "1") && t->units[p][0] ? t->units[p] : PANELS[p].series);
    fprintf(g, " noenhanced\n");
    if (r.points == 0) { /* an empty panel says so rather than failing the whole plot */
        fprintf(g, "set label 1 'no values' at graph 0.5, 0.5 center\nset yrange [0:1]\nplot 2 notitle\n"
                   "unset label 1\nset autoscale y\n");
        return;
    }
    if (r.min == r.max) { /* a constant series (a fixed learning rate) gets a range around it */
        double pad = r.min != 0 ? fabs(r.min) * 0.1 : 1;
        fprintf(g, "set yrange [%.17g:%.17g]\n", r.min - pad, r.max + pad);
    }
    fprintf(g, "plot $d%d using 1:2 with %s lc rgb '#1f5fa8' notitle\nset autoscale y\n", p,
            r.points > 60 ? "lines lw 1.5" : "linespoints lw 1.5 pt 7 ps 0.5");
}

static void plot(const char *metrics_path, const metrics_table *t, const char *png)
{
    FILE *g = popen("gnuplot", "w");
    if (!g) sl_fatal("cannot start gnuplot: %s", strerror(errno));
    series_range ranges[N_PANELS];
    for (int p = 0; p < N_PANELS; p++) ranges[p] = write_datablock(g, t, p);
    fprintf(g, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
               "  set terminal pngcairo size 900,1000 font 'sans,10'\n"
               "} else {\n  set terminal png size 900,1000\n}\n"
               "set output ");
    put_quoted(g, temp_png);
    fprintf(g, "\nset multiplot layout %d,1 title ", N_PANELS);
    put_quoted(g, metrics_path);
    fprintf(g, " noenhanced\nset grid\nset xlabel 'step'\nset format y '%%g'\nset lmargin 12\n");
    if (t->rows > 1 && t->step[t->rows - 1] > t->step[0]) /* the panels share one step axis */
        fprintf(g, "set xrange [%lld:%lld]\n", (long long)t->step[0], (long long)t->step[t->rows - 1]);
    for (int p = 0; p < N_PANELS; p++) write_panel(g, t, p, ranges[p]);
    fprintf(g, "unset multiplot\nset output\n");
    int status = pclose(g);
    if (status != 0)
        sl_fatal("gnuplot failed (status %d) drawing %s; its messages are above", status, png);
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-plot");
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) fputs(USAGE, stdout), exit(0);
    if (argc != 3) {
        fputs(USAGE, stderr);
        sl_usage_error("expected a metrics file and an output PNG, found %d arguments", argc - 1);
    }
    const char *metrics_path = argv[1], *png = argv[2];
    metrics_table t;
    read_metrics(metrics_path, &t);
    if (!gnuplot_on_path()) sl_fatal("gnuplot not found: install it with apt-get install gnuplot-nox");

    /* Drawn under a temporary name beside OUT.png and renamed, so OUT.png is never half written. */
    snprintf(temp_png, sizeof temp_png, "%s.tmpXXXXXX", png);
    int fd = mkstemp(temp_png);
    if (fd < 0) {
        temp_png[0] = 0;
        sl_fatal("cannot create %s: %s", png, strerror(errno));
    }
    close(fd);
    atexit(remove_temporary);
    plot(metrics_path, &t, png);
    struct stat st;
    if (stat(temp_png, &st) != 0 || st.st_size == 0) sl_fatal("gnuplot wrote no image for %s", png);
    chmod(temp_png, 0644);
    if (rename(temp_png, png) != 0) sl_fatal("cannot rename %s to %s: %s", temp_png, png, strerror(errno));
    temp_png[0] = 0;
    log_info("plotted %lld steps of %s to %s", (long long)t.rows, metrics_path, png);
    for (int p = 0; p < N_PANELS; p++) free(t.values[p]), free(t.units[p]);
    free(t.step);
    rt_finalize();
    return 0;
}
