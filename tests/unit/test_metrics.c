/* metrics.h5: rows appended and read back, a series that appears late (NaN before), attributes,
 * and a resume that drops the rows after the checkpoint's step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "metrics.h"
#include "runtime.h"

#define PATH "metrics.h5"

/* Rows for steps 10, 20, ..., 10 * n; "extra" from the third row on. */
static void append_rows(sl_metrics *m, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        sl_metric v[] = {{"loss", NULL, 3.0 - 0.1 * i}, {"lr", NULL, 1e-4 * i}, {"grad_norm", NULL, 0.5 + i},
                         {"tokens_per_s", NULL, 1000.0 + i}, {"extra", "widgets", 7.0 * i}};
        metrics_append(m, 10 * (i + 1), v, i >= 2 ? 5 : 4);
    }
}

static void read_series(hid_t f, const char *name, sl_dtype t, int64_t want_rows, void *buf)
{
    char path[64];
    snprintf(path, sizeof path, "/metrics/%s", name);
    assert_int_equal(h5_shape_of(f, path).n, want_rows);
    h5_read(f, path, t, buf);
}

static void check_rows(int64_t rows)
{
    hid_t f = h5_open(PATH, "metrics", 0, MPI_COMM_NULL);
    int64_t step[64];
    double loss[64], extra[64];
    read_series(f, "step", SL_I64, rows, step);
    read_series(f, "loss", SL_F64, rows, loss);
    read_series(f, "extra", SL_F64, rows, extra);
    for (int i = 0; i < rows; i++) {
        assert_int_equal(step[i], 10 * (i + 1));
        assert_true(loss[i] == 3.0 - 0.1 * i);
        if (i < 2) assert_true(isnan(extra[i]));
        else assert_true(extra[i] == 7.0 * i);
    }
    h5_close(f);
}

static void test_append_and_attributes(void **state)
{
    sl_metrics m;
    metrics_open(&m, PATH, -1);
    append_rows(&m, 0, 6);
    metrics_close(&m);
    check_rows(6);
    hid_t f = h5_open(PATH, "metrics", 0, MPI_COMM_NULL);
    char *kind = h5_attr_string(f, "/", "shardlora_kind"), *units = h5_attr_string(f, "/metrics/extra", "units");
    assert_string_equal(kind, "metrics");
    assert_string_equal(units, "widgets");
    assert_int_equal(h5_attr_int(f, "/", "format_version"), 1);
    const char *names[] = {"step", "loss", "lr", "grad_norm", "tokens_per_s"};
    for (int i = 0; i < 5; i++) {
        char path[64];
        snprintf(path, sizeof path, "/metrics/%s", names[i]);
        assert_true(h5_has_attr(f, path, "units"));
    }
    free(kind), free(units);
    h5_close(f);
}

static void test_resume_truncates(void **state)
{
    sl_metrics m;
    metrics_open(&m, PATH, -1);
    append_rows(&m, 0, 6);
    metrics_close(&m);
    metrics_open(&m, PATH, 35); /* checkpoint at step 35: rows of steps 40, 50, 60 go */
    assert_int_equal(m.rows, 3);
    metrics_close(&m);
    check_rows(3);
    metrics_open(&m, PATH, 35);
    append_rows(&m, 3, 4); /* the restarted run logs steps 40..70 again */
    metrics_close(&m);
    check_rows(7);
    metrics_open(&m, PATH, -1); /* a fresh run starts a fresh file */
    metrics_close(&m);
    hid_t f = h5_open(PATH, "metrics", 0, MPI_COMM_NULL);
    assert_int_equal(h5_shape_of(f, "/metrics/step").n, 0);
    assert_false(h5_has(f, "/metrics/extra"));
    h5_close(f);
}

static void test_resume_without_file_creates_it(void **state)
{
    remove("fresh.h5");
    sl_metrics m;
    metrics_open(&m, "fresh.h5", 100);
    sl_metric v = {"loss", NULL, 1.5};
    metrics_append(&m, 101, &v, 1);
    metrics_close(&m);
    hid_t f = h5_open("fresh.h5", "metrics", 0, MPI_COMM_NULL);
    double lr;
    h5_read(f, "/metrics/lr", SL_F64, &lr);
    assert_true(isnan(lr));
    h5_close(f);
}

int main(void)
{
    rt_init_serial("test_metrics");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_attributes),
        cmocka_unit_test(test_resume_truncates),
        cmocka_unit_test(test_resume_without_file_creates_it),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
