/* qpool: a pre-quantized file loaded for a backend off the host goes through staging buffers in
 * runs of blocks (read_stored_staged) and must end as the host path's blocks, byte for byte: here a
 * stand-in backend whose "device" is host memory and whose asynchronous copies are memcpy, with
 * buffers small enough that every member takes several runs, for 1-4 simulated ranks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "h5io.h"
#include "qpool.h"
#include "quant_store.h"
#include "runtime.h"

extern const sl_backend backend_cpu;

static void *off_alloc(size_t bytes, const char *what) { return sl_malloc(bytes + 1, what); }
static const void *off_mirror(void *buf, const void *host, size_t bytes) { return memcpy(buf, host, bytes); }
static int64_t off_copy_async(void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
    return 1;
}
static void off_wait(int64_t ticket) { (void)ticket; }

/* Two members, neither a multiple of the blocksize or of a 256-block group, and a third small one. */
static const int64_t DIMS[3][2] = {{6, 12345}, {5, 9001}, {3, 100}};
static const char *const PATHS[3] = {"/w/a", "/w/b", "/w/c"};
static const char *const FORMATS[] = {"nf4-dq-bs64", "fp4-bs64", "int8-bs256", "nf4-bs128"};

static void write_file(const char *path, const quant_format *f)
{
    hid_t file = h5_create(path, "test file", MPI_COMM_NULL);
    uint64_t s = 7;
    for (int t = 0; t < 3; t++) {
        int64_t n = DIMS[t][0] * DIMS[t][1];
        float *x = sl_malloc((size_t)n * sizeof *x, "weights");
        for (int64_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(s >> 11) * 0x1.0p-52 - 0.5) * (i % 501 == 0 ? 9.0f : 1.0f);
        }
        quant_store_quantize(file, PATHS[t], f, DIMS[t], "float32", x);
        free(x);
    }
    h5_close(file);
}

static void load(qpool *q, const char *path, const quant_format *f, size_t staging_bytes)
{
    memset(q, 0, sizeof *q);
    for (int t = 0; t < 3; t++) qpool_add(q, PATHS[t], 2, DIMS[t]);
    qpool_plan(q, f);
    hid_t file = h5_open(path, "test file", 0, MPI_COMM_NULL);
    staging st = staging_open(staging_bytes);
    qpool_load(q, file, &st);
    staging_close(&st);
    h5_close(file);
}

static void staged_equals_host(void **state)
{
    (void)state;
    sl_backend off = backend_cpu;
    off.host_memory = 0;
    off.alloc = off.mirror_alloc = off.host_alloc = off_alloc;
    off.mirror = off_mirror;
    off.copy_async = off_copy_async;
    off.wait_copy = off.host_wait_copy = off_wait;
    for (size_t k = 0; k < sizeof FORMATS / sizeof FORMATS[0]; k++) {
        quant_format f;
        assert_null(quant_format_parse(FORMATS[k], &f));
        char path[512];
        snprintf(path, sizeof path, "%s/qpool_staged_%zu.h5", getenv("TEST_TMP") ? getenv("TEST_TMP") : ".", k);
        write_file(path, &f);
        for (int world = 1; world <= 4; world++)
            for (int rank = 0; rank < world; rank++) {
                RT.world = world, RT.rank = rank;
                qpool host, staged;
                BE = &backend_cpu;
                load(&host, path, &f, STAGING_BYTES);
                BE = &off;
                /* 9 KB: a few hundred blocks per run, so each member takes several */
                load(&staged, path, &f, 9000);
                size_t bytes[3] = {(size_t)host.shard_blocks * (size_t)host.code_stride,
                                   (size_t)host.shard_blocks * (f.double_quant ? 1 : sizeof(float)),
                                   f.double_quant ? (size_t)host.shard_blocks / 256 * sizeof(float) : 0};
                for (int i = 0; i < 3; i++) {
                    if (!bytes[i]) continue;
                    if (memcmp(host.shard_dev[i], staged.shard_dev[i], bytes[i]) != 0)
                        fail_msg("%s, rank %d of %d: block array %d differs between the staged and host loads",
                                 FORMATS[k], rank, world, i);
                }
                for (int t = 0; t < 3; t++) assert_true(host.members[t].dq_offset == staged.members[t].dq_offset);
                assert_null(staged.codes); /* no host copy */
                qpool_free(&staged);
                BE = &backend_cpu;
                qpool_free(&host);
            }
        RT.world = 1, RT.rank = 0;
        remove(path);
    }
}

int main(void)
{
    rt_init_serial("test_qpool_staged");
    const struct CMUnitTest tests[] = {cmocka_unit_test(staged_equals_host)};
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
