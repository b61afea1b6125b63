/* The counter-based normals that shardlora-init draws: Philox4x32-10 against Random123's known
 * answers, every range of the stream the same values, each value the Box-Muller pair its rule
 * names, and the values standard normal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static void test_philox_known_answers(void **state)
{
    (void)state;
    /* Random123 1.14, tests/kat_vectors: counter, key, result */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        rng_philox4x32(kat[i], kat[i] + 4, out);
        assert_memory_equal(out, kat[i] + 6, sizeof out);
    }
}

enum { N = 5000 };

static void test_normals_any_range(void **state)
{
    (void)state;
    static float whole[N], parts[N];
    rng_normals(7, 42, 0, N, whole);
    const int64_t cuts[] = {0, 1, 300, 1029, 1030, 2048, 4999, N}; /* inside groups and on their edges */
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof *cuts; c++)
        rng_normals(7, 42, (uint64_t)cuts[c], cuts[c + 1] - cuts[c], parts + cuts[c]);
    assert_memory_equal(whole, parts, sizeof whole);
    rng_normals(7, 42, 1234, 0, parts); /* an empty range writes nothing */
    assert_memory_equal(whole, parts, sizeof whole);
    rng_normals(7, 43, 0, N, parts); /* another stream, another seed: other values */
    assert_memory_not_equal(whole, parts, sizeof whole);
    rng_normals(8, 42, 0, N, parts);
    assert_memory_not_equal(whole, parts, sizeof whole);
}

/* Number i as rng.h describes it, in double: within float rounding and the polynomials' error. */
static double described(uint64_t seed, uint64_t stream, uint64_t i)
{
    const uint64_t L = RNG_NORMAL_LANES, g = i / (4 * L), s = i % (4 * L) / L, c = g * L + i % L;
    const uint32_t counter[4] = {(uint32_t)c, (uint32_t)(c >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t x[4];
    rng_philox4x32(counter, key, x);
    const uint32_t a = x[s / 2 * 2], b = x[s / 2 * 2 + 1];
    double r = sqrt(-2.0 * log(((a >> 1) + 0.5) * 0x1p-31)), t = 2.0 * M_PI * (b >> 8) * 0x1p-24;
    return s % 2 ? r * sin(t) : r * cos(t);
}

static void test_normals_follow_the_rule(void **state)
{
    (void)state;
    const uint64_t seed = 0x123456789abull, stream = 0xfedcba9876543210ull, first = (1ull << 33) + 77;
    static float z[N];
    rng_normals(seed, stream, first, N, z);
    for (int k = 0; k < N; k++) {
        double want = described(seed, stream, first + (uint64_t)k);
        if (fabs(z[k] - want) > 4e-6 * (1.0 + fabs(want))) fail_msg("normal %d: %.9g, the rule gives %.9g", k, z[k], want);
    }
}

static void test_normals_are_standard(void **state)
{
    (void)state;
    enum { M = 1 << 22 };
    float *z = malloc(M * sizeof *z);
    assert_non_null(z);
    rng_normals(1, 2, 0, M, z);
    double s1 = 0, s2 = 0, s4 = 0, lag = 0, pair = 0, within1 = 0, top = 0;
    for (int i = 0; i < M; i++) {
        double v = z[i];
        s1 += v, s2 += v * v, s4 += v * v * v * v, within1 += fabs(v) < 1.0, top = fmax(top, fabs(v));
        if (i + 1 < M) lag += v * z[i + 1];
        if (i % (4 * RNG_NORMAL_LANES) < RNG_NORMAL_LANES) pair += v * z[i + RNG_NORMAL_LANES]; /* cos with sin */
    }
    const double n = M, mean = s1 / n, var = s2 / n, kurt = s4 / n / (var * var);
    free(z);
    /* five standard errors each */
    if (fabs(mean) > 5 / sqrt(n)) fail_msg("mean %g", mean);
    if (fabs(var - 1) > 5 * sqrt(2 / n)) fail_msg("variance %g", var);
    if (fabs(kurt - 3) > 5 * sqrt(24 / n)) fail_msg("kurtosis %g", kurt);
    if (fabs(within1 / n - 0.682689492) > 5 * sqrt(0.2166 / n)) fail_msg("P(|z| < 1) = %g", within1 / n);
    if (fabs(lag / n) > 5 / sqrt(n)) fail_msg("neighbours correlate: %g", lag / n);
    if (fabs(pair / (n / 4)) > 5 / sqrt(n / 4)) fail_msg("a pair's cosine and sine correlate: %g", pair / (n / 4));
    if (top < 4.5 || top >= 6.7) fail_msg("largest |z| %g (expected about 5 in 4M draws, below 6.7)", top);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_normals_any_range),
        cmocka_unit_test(test_normals_follow_the_rule),
        cmocka_unit_test(test_normals_are_standard),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
