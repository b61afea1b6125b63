/* quant_store: a quantized weight written as a group reads back, split among 1-4 simulated ranks on
 * whole blocks (whole 256-block groups with double quantization), into exactly the whole encoding;
 * the probe recognises groups and names file and path when one is malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "child_error.h" /* needs cmocka.h */
#include "filter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "quant_store.h"
#include "runtime.h"

/* 4 x 12345 elements: at bs64 772 blocks (4 DQ groups, the last partial), partial last blocks. */
static const int64_t DIMS[2] = {4, 12345};
static const char *const FORMATS[] = {"nf4-dq-bs64", "fp4-dq-bs128", "nf4-bs64", "fp4-bs256", "int8-bs256", "int8-bs64"};
#define NFORMATS (int)(sizeof FORMATS / sizeof FORMATS[0])

static hid_t file;
static float *weights;

static int setup(void **state)
{
    rt_init_serial("test_quant_store");
    const char *dir = getenv("TEST_TMP");
    char path[512];
    snprintf(path, sizeof path, "%s/quant_store.h5", dir ? dir : ".");
    file = h5_create(path, "test file", MPI_COMM_NULL);
    int64_t n = DIMS[0] * DIMS[1];
    weights = sl_malloc((size_t)n * sizeof *weights, "weights");
    uint64_t s = 42;
    for (int64_t i = 0; i < n; i++) { /* uniform in (-1, 1) with a few large outliers */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        weights[i] = (float)((double)(s >> 11) * 0x1.0p-52 - 1.0) * (i % 997 == 0 ? 8.0f : 1.0f);
    }
    return 0;
}

static int teardown(void **state)
{
    h5_close(file);
    free(weights);
    return 0;
}

static quant_view alloc_view(const quant_format *f, int64_t n)
{
    int64_t nb = quant_nblocks(f, n);
    return (quant_view){.codes = calloc((size_t)quant_code_bytes(f, n, 0, nb), 1),
                        .absmax = calloc((size_t)nb, sizeof(float)), .absmax_u8 = calloc((size_t)nb, 1),
                        .nested_absmax = calloc((size_t)quant_nested_count(f, 0, nb) + 1, sizeof(float))};
}

static void free_view(quant_view *v) { free(v->codes), free(v->absmax), free(v->absmax_u8), free(v->nested_absmax); }

/* Rank r's blocks among R ranks: a contiguous range of whole units (blocks, or 256-block groups). */
static void rank_blocks(const quant_format *f, int64_t nb, int r, int R, int64_t *b0, int64_t *b1)
{
    int64_t unit = f->double_quant ? QUANT_NESTED_BLOCKS : 1, units = (nb + unit - 1) / unit;
    *b0 = r * units / R * unit;
    *b1 = (r + 1) * units / R * unit;
    if (*b1 > nb) *b1 = nb;
    if (*b0 > nb) *b0 = nb;
}

/* Each rank reads into its own place of one whole-tensor view. */
static void read_split(const char *path, const quant_store_info *info, int R, quant_view *whole)
{
    const quant_format *f = &info->fmt;
    for (int r = 0; r < R; r++) {
        int64_t b0, b1;
        rank_blocks(f, info->nblocks, r, R, &b0, &b1);
        int empty = b1 == b0;
        quant_view part = {
            .codes = empty ? NULL : whole->codes + quant_code_bytes(f, info->n, 0, b0),
            .absmax = empty ? NULL : whole->absmax + b0,
            .absmax_u8 = empty ? NULL : whole->absmax_u8 + b0,
            .nested_absmax = empty ? NULL : whole->nested_absmax + b0 / QUANT_NESTED_BLOCKS};
        quant_store_read(file, path, info, b0, b1, &part);
        if (f->double_quant && !empty) whole->offset = part.offset;
    }
}

static void assert_same(const quant_format *f, const quant_store_info *info, const quant_view *a, const quant_view *b)
{
    int64_t nb = info->nblocks;
    assert_memory_equal(a->codes, b->codes, (size_t)quant_code_bytes(f, info->n, 0, nb));
    if (!f->double_quant) {
        assert_memory_equal(a->absmax, b->absmax, (size_t)nb * sizeof(float));
        return;
    }
    assert_memory_equal(a->absmax_u8, b->absmax_u8, (size_t)nb);
    assert_memory_equal(a->nested_absmax, b->nested_absmax, (size_t)quant_nested_count(f, 0, nb) * sizeof(float));
    assert_memory_equal(&a->offset, &b->offset, sizeof(float));
}

static void test_split_reads(void **state)
{
    for (int k = 0; k < NFORMATS; k++) {
        quant_format f;
        assert_null(quant_format_parse(FORMATS[k], &f));
        char path[64];
        snprintf(path, sizeof path, "/split/%s/weight", FORMATS[k]);
        quant_store_quantize(file, path, &f, DIMS, "f32", weights);
        quant_store_info info;
        assert_int_equal(quant_store_probe(file, path, &info), 1);
        assert_int_equal(info.nblocks, quant_nblocks(&f, DIMS[0] * DIMS[1]));
        assert_int_equal(info.shape[1], DIMS[1]);
        assert_string_equal(info.dtype, "f32");
        assert_true(info.fmt.type == f.type && info.fmt.blocksize == f.blocksize && info.fmt.double_quant == f.double_quant);
        quant_view want = alloc_view(&f, info.n);
        quant_tensor(&f, weights, info.n, &want);
        for (int R = 1; R <= 4; R++) {
            quant_view got = alloc_view(&f, info.n);
            read_split(path, &info, R, &got);
            assert_same(&f, &info, &got, &want);
            free_view(&got);
        }
        printf("# %s: %lld blocks reassembled exactly from 1-4 ranks\n", FORMATS[k], (long long)info.nblocks);
        free_view(&want);
    }
}

static void test_probe_plain(void **state)
{
    int64_t dims[2] = {2, 3};
    float x[6] = {0};
    h5_write(file, "/plain/weight", SL_F32, SL_F32, 2, dims, x);
    quant_store_info info;
    assert_int_equal(quant_store_probe(file, "/plain/weight", &info), 0);
    assert_int_equal(quant_store_probe(file, "/missing/weight", &info), 0);
}

static void probe(void *path)
{
    quant_store_info info;
    quant_store_probe(file, path, &info);
}

/* Probe in a child process; its stderr must hold every expected fragment and it must exit 1. */
static void assert_probe_fails(const char *path, const char *fragment)
{
    char msg[1024];
    child_error(probe, (void *)path, msg, sizeof msg);
    assert_non_null(strstr(msg, "quant_store.h5"));
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, fragment));
}

static void test_probe_malformed(void **state)
{
    quant_format f;
    assert_null(quant_format_parse("nf4-dq-bs64", &f));
    const char *paths[] = {"/bad/no_packed/weight", "/bad/short_absmax/weight", "/bad/type/weight", "/bad/no_offset/weight"};
    for (int i = 0; i < 4; i++) quant_store_quantize(file, paths[i], &f, DIMS, "f32", weights);
    H5Ldelete(file, "/bad/no_packed/weight/packed", H5P_DEFAULT);
    assert_probe_fails(paths[0], "dataset 'packed' is missing");
    H5Ldelete(file, "/bad/short_absmax/weight/absmax", H5P_DEFAULT);
    int64_t short_len = 10;
    uint8_t zeros[10] = {0};
    h5_write(file, "/bad/short_absmax/weight/absmax", SL_U8, SL_U8, 1, &short_len, zeros);
    assert_probe_fails(paths[1], "dataset 'absmax' is uint8 with 1 dimension(s) and 10 elements (expected uint8 [");
    h5_set_attr_string(file, paths[2], "quant_type", "nf5");
    assert_probe_fails(paths[2], "quant_type 'nf5'");
    H5Adelete_by_name(file, paths[3], "offset", H5P_DEFAULT);
    assert_probe_fails(paths[3], "'offset'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_reads),
        cmocka_unit_test(test_probe_plain),
        cmocka_unit_test(test_probe_malformed),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}
