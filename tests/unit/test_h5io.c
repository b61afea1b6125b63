/* h5io: bfloat16 and float16 datasets move as raw 16-bit words and are widened or narrowed in the
 * program. Every one of the 65,536 bit patterns of each reads back as the value HDF5's own
 * conversion gives (subnormals, signed zeros, infinities; NaN stays NaN), over whole datasets and
 * ranges of 1-D and 2-D ones; float32 written into them narrows to nearest even and round-trips
 * exactly; a 16-bit float of another layout is refused, naming the file and the dataset. Files
 * open read-only are read directly (pread on every thread) where the dataset allows: the values
 * equal HDF5's own reads for every type and range, and other datasets still go through HDF5; the
 * same through a group opened in place of the file. */
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

#include <omp.h>

#include "h5io.h"
#include "runtime.h"

#define NPAT 65536

static hid_t file;
static uint16_t patterns[NPAT];

/* path: name in the test's scratch directory (TEST_TMP, else here). */
static void scratch_path(char *path, size_t size, const char *name)
{
    const char *dir = getenv("TEST_TMP");
    snprintf(path, size, "%s/%s", dir ? dir : ".", name);
}

static int setup(void **state)
{
    rt_init_serial("test_h5io");
    char path[512];
    scratch_path(path, sizeof path, "h5io_words.h5");
    file = h5_create(path, "test file", MPI_COMM_NULL);
    for (int i = 0; i < NPAT; i++) patterns[i] = (uint16_t)i;
    return 0;
}

static int teardown(void **state)
{
    h5_close(file);
    return 0;
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* The value of a 16-bit pattern, computed independently of dtype.c. */
static float reference(sl_dtype t, uint16_t h)
{
    int mant_bits = t == SL_F16 ? 10 : 7, bias = t == SL_F16 ? 15 : 127;
    int e = (h >> mant_bits) & ((1 << (15 - mant_bits)) - 1), m = h & ((1 << mant_bits) - 1);
    double sign = h & 0x8000 ? -1.0 : 1.0;
    if (e == (1 << (15 - mant_bits)) - 1) return m ? copysignf(NAN, (float)sign) : (float)(sign * INFINITY);
    double v = e ? ldexp(1.0 + ldexp(m, -mant_bits), e - bias) : ldexp(m, 1 - bias - mant_bits);
    return (float)(sign * v);
}

/* Same float, or both NaN of the same sign. */
static void assert_same(float got, float want, uint16_t pattern)
{
    if (isnan(want)) {
        if (!isnan(got) || signbit(got) != signbit(want)) fail_msg("pattern 0x%04x: got %g, want NaN", pattern, got);
        return;
    }
    if (bits(got) != bits(want))
        fail_msg("pattern 0x%04x: got %a (0x%08x), want %a (0x%08x)", pattern, got, bits(got), want, bits(want));
}

/* HDF5's own conversion of the stored words to float32, the path this replaces. */
static void read_by_hdf5(const char *path, float *out)
{
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(d);
}

static void check_type(sl_dtype t, const char *name)
{
    char p1[64], p2[64], p3[64];
    snprintf(p1, sizeof p1, "/%s/all", name);
    snprintf(p2, sizeof p2, "/%s/matrix", name);
    snprintf(p3, sizeof p3, "/%s/written", name);
    int64_t n = NPAT, dims2[2] = {256, 256};
    h5_write(file, p1, t, t, 1, &n, patterns);
    h5_write(file, p2, t, t, 2, dims2, patterns);
    float *x = sl_malloc(NPAT * sizeof *x, "x"), *y = sl_malloc(NPAT * sizeof *y, "y");
    h5_read(file, p1, SL_F32, x);
    read_by_hdf5(p1, y);
    for (int i = 0; i < NPAT; i++) {
        assert_same(x[i], reference(t, patterns[i]), patterns[i]);
        assert_same(x[i], y[i], patterns[i]);
    }
    /* ranges of odd starts and lengths, crossing rows of the 2-D dataset */
    const int64_t ranges[][2] = {{0, 1}, {1, 2}, {255, 3}, {1000, 4097}, {300, 65236}, {65535, 1}, {7, 0}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        int64_t start = ranges[r][0], count = ranges[r][1];
        for (int k = 0; k < 2; k++) {
            float *part = sl_malloc((size_t)count * sizeof *part + 4, "part");
            h5_read_range(file, k ? p2 : p1, SL_F32, start, count, part);
            for (int64_t i = 0; i < count; i++) assert_same(part[i], x[start + i], patterns[start + i]);
            free(part);
        }
    }
    /* the same words when read as they are stored */
    uint16_t *w = sl_malloc(NPAT * sizeof *w, "w");
    h5_read(file, p2, t, w);
    assert_memory_equal(w, patterns, NPAT * sizeof *w);
    /* float32 written into the 16-bit dataset: exact for every non-NaN value */
    h5_create_dataset(file, p3, t, 1, &n);
    h5_write_range(file, p3, SL_F32, 0, n, x);
    h5_read(file, p3, t, w);
    for (int i = 0; i < NPAT; i++) {
        if (isnan(x[i])) assert_same(reference(t, w[i]), copysignf(NAN, x[i]), patterns[i]);
        else if (w[i] != patterns[i]) fail_msg("pattern 0x%04x written back as 0x%04x", patterns[i], w[i]);
    }
    /* narrowing rounds to nearest even, as dtype.c's conversions (and so the importers) do */
    float halfway[4];
    uint16_t want[4];
    for (int i = 0; i < 4; i++) {
        uint16_t h = (uint16_t)(t == SL_F16 ? 0x3c00 + i : 0x3f80 + i); /* 1 + i ulp */
        uint32_t u = bits(reference(t, h)) + (t == SL_F16 ? 1u << 12 : 1u << 15); /* + half an ulp */
        memcpy(&halfway[i], &u, 4);
        want[i] = t == SL_F16 ? sl_f32_to_f16(halfway[i]) : sl_f32_to_bf16(halfway[i]);
        assert_int_equal(want[i], h + (h & 1)); /* ties go to the even pattern */
    }
    h5_write_range(file, p3, SL_F32, 10, 4, halfway);
    uint16_t got[4];
    h5_read_range(file, p3, t, 10, 4, got);
    assert_memory_equal(got, want, sizeof got);
    free(x), free(y), free(w);
}

/* A dataset HDF5 cannot hand over directly: chunked, or big-endian float32. */
static void write_special(hid_t f, const char *path, int chunked, const float *x, hsize_t n)
{
    hid_t s = H5Screate_simple(1, &n, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk = 1000;
    if (chunked) H5Pset_chunk(dcpl, 1, &chunk);
    hid_t d = H5Dcreate2(f, path, chunked ? H5T_IEEE_F32LE : H5T_IEEE_F32BE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(d), H5Pclose(dcpl), H5Sclose(s);
}

/* HDF5's own read of [start, start + count) of a 1-D dataset as mtype. */
static void hdf5_range(hid_t f, const char *path, hid_t mtype, int64_t start, int64_t count, void *out)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t off = (hsize_t)start, cnt = (hsize_t)count;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    assert_true(H5Dread(d, mtype, ms, fs, H5P_DEFAULT, out) >= 0);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
}

static void hdf5_whole(hid_t f, const char *path, float *out)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(d);
}

static void test_direct_reads_match_hdf5(void **state)
{
    enum { N = 3 << 20 }; /* several 4 MiB pieces of every type */
    char path[512];
    scratch_path(path, sizeof path, "h5io_direct.h5");
    hid_t f = h5_create(path, "test file", MPI_COMM_NULL);
    float *x = sl_malloc(N * sizeof *x, "x");
    uint8_t *u8 = sl_malloc(N, "u8");
    uint16_t *w = sl_malloc(N * sizeof *w, "w");
    for (int64_t i = 0; i < N; i++)
        x[i] = (float)sin((double)i) * 3.0f, u8[i] = (uint8_t)(i * 7), w[i] = (uint16_t)(i * 40503u);
    int64_t n = N, dims2[2] = {3072, 1024};
    h5_write(f, "/f32", SL_F32, SL_F32, 1, &n, x);
    h5_write(f, "/f32_2d", SL_F32, SL_F32, 2, dims2, x);
    h5_write(f, "/u8", SL_U8, SL_U8, 1, &n, u8);
    h5_write(f, "/bf16", SL_BF16, SL_BF16, 1, &n, w);
    h5_write(f, "/f16", SL_F16, SL_F16, 2, dims2, w);
    write_special(f, "/chunked", 1, x, N);
    write_special(f, "/f32be", 0, x, N);
    h5_close(f);
    f = h5_open(path, "test file", 0, MPI_COMM_NULL);
    omp_set_num_threads(3);
    const int64_t ranges[][2] = {{0, N}, {1, N - 1}, {12345, 2 * 1048576 + 3}, {N - 5, 5}, {7, 0}, {1048575, 2}};
    float *got = sl_malloc(N * sizeof *got, "got"), *want = sl_malloc(N * sizeof *want, "want");
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        int64_t start = ranges[r][0], count = ranges[r][1], before = h5_bytes_read_direct();
        const char *floats[] = {"/f32", "/f32_2d", "/bf16", "/f16", "/chunked", "/f32be"};
        for (int k = 0; k < 6; k++) {
            int64_t direct0 = h5_bytes_read_direct();
            h5_read_range(f, floats[k], SL_F32, start, count, got);
            if (strcmp(floats[k], "/f32_2d") && strcmp(floats[k], "/f16")) hdf5_range(f, floats[k], H5T_NATIVE_FLOAT, start, count, want);
            else { /* HDF5's read of the whole 2-D dataset, then the range */
                float *all = sl_malloc(N * sizeof *all, "all");
                hdf5_whole(f, floats[k], all);
                memcpy(want, all + start, (size_t)count * sizeof *want);
                free(all);
            }
            for (int64_t i = 0; i < count; i++)
                if (bits(got[i]) != bits(want[i]) && !(isnan(got[i]) && isnan(want[i])))
                    fail_msg("%s [%lld, +%lld): element %lld is %a, HDF5 reads %a", floats[k], (long long)start,
                             (long long)count, (long long)(start + i), got[i], want[i]);
            int direct = k < 4; /* chunked and big-endian go through HDF5 */
            if (count && (h5_bytes_read_direct() > direct0) != direct)
                fail_msg("%s was %sread directly", floats[k], direct ? "not " : "");
        }
        uint8_t *g8 = (uint8_t *)got, *w8 = (uint8_t *)want;
        h5_read_range(f, "/u8", SL_U8, start, count, g8);
        hdf5_range(f, "/u8", H5T_NATIVE_UINT8, start, count, w8);
        if (count) assert_memory_equal(g8, w8, (size_t)count);
        uint16_t *g16 = (uint16_t *)got;
        h5_read_range(f, "/bf16", SL_BF16, start, count, g16);
        if (count) assert_memory_equal(g16, w + start, (size_t)count * 2);
        assert_true(count == 0 || h5_bytes_read_direct() > before);
    }
    /* a file open for writing is read through HDF5 */
    h5_close(f);
    f = h5_open(path, "test file", 1, MPI_COMM_NULL);
    int64_t direct0 = h5_bytes_read_direct();
    h5_read_range(f, "/f32", SL_F32, 5, 1000, got);
    assert_memory_equal(got, x + 5, 1000 * sizeof *got);
    assert_int_equal(h5_bytes_read_direct(), direct0);
    h5_close(f);
    omp_set_num_threads(1);
    free(x), free(u8), free(w), free(got), free(want);
}

/* Ranges of several datasets in one batch: those read directly wait for the finish, a chunked
 * one is read at once, and every value is HDF5's. */
static void test_batch(void **state)
{
    enum { N = 1 << 20 };
    char path[512];
    scratch_path(path, sizeof path, "h5io_batch.h5");
    hid_t f = h5_create(path, "test file", MPI_COMM_NULL);
    float *x = sl_malloc(N * sizeof *x, "x");
    uint8_t *u8 = sl_malloc(N, "u8");
    uint16_t *w = sl_malloc(N * sizeof *w, "w");
    for (int64_t i = 0; i < N; i++)
        x[i] = (float)cos((double)i) * 5.0f, u8[i] = (uint8_t)(i * 13 + 1), w[i] = (uint16_t)(0x3c00 + i % 4099);
    int64_t n = N;
    h5_write(f, "/f32", SL_F32, SL_F32, 1, &n, x);
    h5_write(f, "/u8", SL_U8, SL_U8, 1, &n, u8);
    h5_write(f, "/bf16", SL_BF16, SL_BF16, 1, &n, w);
    write_special(f, "/chunked", 1, x, N);
    h5_close(f);
    f = h5_open(path, "test file", 0, MPI_COMM_NULL);
    omp_set_num_threads(3);
    const int64_t start = 4097, count = N - 9000;
    float *g32 = sl_malloc(count * sizeof *g32, "g32"), *gbf = sl_malloc(count * sizeof *gbf, "gbf");
    float *gch = sl_malloc(count * sizeof *gch, "gch"), *want = sl_malloc(count * sizeof *want, "want");
    uint8_t *g8 = sl_malloc(count, "g8");
    memset(g32, 0, count * sizeof *g32), memset(g8, 0, count);
    h5_batch batch = {0};
    const int64_t direct0 = h5_bytes_read_direct();
    h5_batch_read_range(&batch, f, "/f32", SL_F32, start, count, g32);
    h5_batch_read_range(&batch, f, "/u8", SL_U8, start, count, g8);
    h5_batch_read_range(&batch, f, "/bf16", SL_F32, start, count, gbf);
    h5_batch_read_range(&batch, f, "/chunked", SL_F32, start, count, gch);
    assert_int_equal(batch.n, 3);
    assert_int_equal(h5_bytes_read_direct(), direct0);
    assert_true(g32[0] == 0.0f && g8[count - 1] == 0); /* kept, not yet read */
    assert_memory_equal(gch, x + start, count * sizeof *gch); /* chunked: read at once by HDF5 */
    h5_batch_finish(&batch);
    assert_int_equal(batch.n, 0);
    assert_int_equal(h5_bytes_read_direct() - direct0, count * (4 + 1 + 2));
    assert_memory_equal(g32, x + start, count * sizeof *g32);
    assert_memory_equal(g8, u8 + start, (size_t)count);
    hdf5_range(f, "/bf16", H5T_NATIVE_FLOAT, start, count, want);
    assert_memory_equal(gbf, want, count * sizeof *gbf);
    h5_close(f);
    omp_set_num_threads(1);
    free(x), free(u8), free(w), free(g32), free(gbf), free(gch), free(want), free(g8);
}

static void read_missing_member(void *group)
{
    float x[4];
    h5_read_range(*(hid_t *)group, "missing", SL_F32, 0, 4, x);
}

static void read_missing_attr(void *group) { h5_attr_int(*(hid_t *)group, ".", "absent"); }

/* A group open in place of the file: members by relative name, read directly from a read-only
 * file as they are from the file itself, through HDF5 when it is open for writing; messages name
 * the member by its whole path. */
static void test_group_relative(void **state)
{
    char path[512];
    scratch_path(path, sizeof path, "h5io_group.h5");
    enum { N = 5000 };
    float x[N], got[N];
    for (int i = 0; i < N; i++) x[i] = (float)cos(i * 0.37) * 2.5f;
    hid_t f = h5_create(path, "test file", MPI_COMM_NULL);
    int64_t n = N;
    h5_write(f, "/a/b/w", SL_F32, SL_F32, 1, &n, x);
    write_special(f, "/a/b/chunked", 1, x, N);
    h5_set_attr_int(f, "/a/b", "answer", 42);
    h5_close(f);
    for (int writable = 0; writable < 2; writable++) {
        f = h5_open(path, "test file", writable, MPI_COMM_NULL);
        assert_false(h5_has(f, "/a/x/w")); /* a missing parent */
        hid_t g = h5_open_group(f, "/a/b");
        assert_true(h5_has(g, "w"));
        assert_false(h5_has(g, "v"));
        assert_int_equal(h5_shape_of(g, "w").n, N);
        assert_int_equal(h5_attr_int(g, ".", "answer"), 42);
        int64_t direct0 = h5_bytes_read_direct();
        h5_read_range(g, "w", SL_F32, 7, N - 7, got);
        assert_memory_equal(got, x + 7, (N - 7) * sizeof *got);
        assert_int_equal(h5_bytes_read_direct() - direct0, writable ? 0 : (N - 7) * 4);
        h5_read_range(g, "chunked", SL_F32, 0, N, got);
        assert_memory_equal(got, x, N * sizeof *got);
        char msg[1024];
        child_error(read_missing_member, &g, msg, sizeof msg);
        assert_non_null(strstr(msg, "h5io_group.h5: dataset /a/b/missing is missing"));
        child_error(read_missing_attr, &g, msg, sizeof msg);
        assert_non_null(strstr(msg, "attribute 'absent' of /a/b is missing"));
        h5_close_group(g);
        h5_close(f);
    }
}

static void test_bf16_words(void **state) { check_type(SL_BF16, "bf16"); }
static void test_f16_words(void **state) { check_type(SL_F16, "f16"); }

/* A 16-bit float with bfloat16's field widths but another bias: classified as unsupported. */
static void write_foreign_float(const char *path)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 7, 8, 0, 7);
    H5Tset_offset(t, 0);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 100);
    hsize_t n = 16;
    h5_make_groups(file, "/foreign");
    hid_t s = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(file, path, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, patterns) >= 0);
    H5Dclose(d), H5Sclose(s), H5Tclose(t);
}

static void read_foreign(void *path)
{
    float x[16];
    h5_read(file, path, SL_F32, x);
}

static void test_foreign_layout_refused(void **state)
{
    const char *path = "/foreign/weight";
    write_foreign_float(path);
    assert_int_equal(h5_shape_of(file, path).dtype, SL_DTYPE_OTHER);
    char msg[1024];
    child_error(read_foreign, (void *)path, msg, sizeof msg);
    assert_non_null(strstr(msg, "h5io_words.h5"));
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, "bias 100"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_words),
        cmocka_unit_test(test_f16_words),
        cmocka_unit_test(test_foreign_layout_refused),
        cmocka_unit_test(test_direct_reads_match_hdf5),
        cmocka_unit_test(test_group_relative),
        cmocka_unit_test(test_batch),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}
