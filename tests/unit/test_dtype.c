/* dtype: sl_first_nonfinite finds exactly the first NaN or Inf of each float type, on 1 and on
 * several threads, inside and outside a parallel region. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "runtime.h"

enum { N = 1000003 }; /* odd, and many scan spans per thread */

static const sl_dtype TYPES[] = {SL_F32, SL_F64, SL_F16, SL_BF16};

/* n finite values of type t (small, both signs, zeros, the type's largest finite value). */
static void *finite_values(sl_dtype t, int64_t n)
{
    char *buf = malloc((size_t)n * sl_dtype_size(t));
    for (int64_t i = 0; i < n; i++) {
        float v = i % 7 == 0 ? 0.0f : (float)((i % 13) - 6) * 0.37f;
        if (i == 5) v = t == SL_F16 ? 65504.0f : 3.0e38f;
        if (t == SL_F32) ((float *)buf)[i] = v;
        else if (t == SL_F64) ((double *)buf)[i] = i == 5 ? 1.7e308 : v;
        else ((uint16_t *)buf)[i] = t == SL_F16 ? sl_f32_to_f16(v) : sl_f32_to_bf16(v);
    }
    return buf;
}

static void set_value(void *buf, sl_dtype t, int64_t i, double v)
{
    if (t == SL_F32) ((float *)buf)[i] = (float)v;
    else if (t == SL_F64) ((double *)buf)[i] = v;
    else ((uint16_t *)buf)[i] = t == SL_F16 ? sl_f32_to_f16((float)v) : sl_f32_to_bf16((float)v);
}

static void test_first_nonfinite(void **state)
{
    (void)state;
    const int64_t places[][2] = {{-1, -1}, {0, -1}, {N - 1, -1}, {4095, 4096}, {777777, 12}, {500000, 900000}};
    for (size_t k = 0; k < sizeof TYPES / sizeof *TYPES; k++)
        for (int threads = 1; threads <= 3; threads += 2)
            for (size_t p = 0; p < sizeof places / sizeof *places; p++) {
                sl_dtype t = TYPES[k];
                void *x = finite_values(t, N);
                int64_t want = -1;
                for (int j = 0; j < 2; j++) {
                    int64_t at = places[p][j];
                    if (at < 0) continue;
                    set_value(x, t, at, j ? INFINITY : -NAN);
                    if (want < 0 || at < want) want = at;
                }
                omp_set_num_threads(threads);
                assert_int_equal(sl_first_nonfinite(x, t, N), want);
                int64_t inside = -2;
#pragma omp parallel num_threads(2)
                if (omp_get_thread_num() == 1) inside = sl_first_nonfinite(x, t, N);
                assert_int_equal(inside, want);
                free(x);
            }
    assert_int_equal(sl_first_nonfinite(NULL, SL_F32, 0), -1);
}

int main(void)
{
    rt_init_serial("test_dtype");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_first_nonfinite)};
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
