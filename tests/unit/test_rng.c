/* rng_advance against taking the steps one by one, and jumps that compose: what lets
 * shardlora-init generate one seeded stream on many threads, each from its own offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include <string.h>

#include "rng.h"

static void test_advance_equals_steps(void **state)
{
    (void)state;
    const uint64_t lengths[] = {0, 1, 2, 63, 64, 65, 127, 128, 1000, 4097, 123457};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        sl_rng a, b;
        rng_seed(&a, 42 + i, i);
        b = a;
        for (uint64_t k = 0; k < lengths[i]; k++) rng_u64(&a);
        rng_advance(&b, lengths[i]);
        assert_memory_equal(a.s, b.s, sizeof a.s);
        assert_int_equal(rng_u64(&a), rng_u64(&b)); /* and the draws after agree */
    }
}

static void test_jumps_compose(void **state)
{
    (void)state;
    /* (2^33 + 12345) + (2^40 - 7) in one jump or two, and split the other way round */
    const uint64_t x = (1ull << 33) + 12345, y = (1ull << 40) - 7;
    sl_rng a, b, c;
    rng_seed(&a, 7, 3);
    b = c = a;
    rng_advance(&a, x + y);
    rng_advance(&b, x), rng_advance(&b, y);
    rng_advance(&c, y), rng_advance(&c, x);
    assert_memory_equal(a.s, b.s, sizeof a.s);
    assert_memory_equal(a.s, c.s, sizeof a.s);
    sl_rng d = a; /* a jump moves the state: not the identity */
    rng_seed(&d, 7, 3);
    assert_memory_not_equal(a.s, d.s, sizeof a.s);
}

static void test_normals_from_an_offset(void **state)
{
    (void)state;
    /* element i of a stream of normals uses draws 2i and 2i+1 (Box-Muller in rng_normal) */
    sl_rng a, b;
    rng_seed(&a, 1, 0);
    b = a;
    double want = 0;
    for (int i = 0; i <= 5000; i++) want = rng_normal(&a);
    rng_advance(&b, 2 * 5000);
    double got = rng_normal(&b);
    assert_memory_equal(&want, &got, sizeof want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advance_equals_steps),
        cmocka_unit_test(test_jumps_compose),
        cmocka_unit_test(test_normals_from_an_offset),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
