/* Quantization against bitsandbytes' golden vectors (shared/quant/bnb_golden.h5): tables, encoding
 * (whole tensor and split among 1-4 simulated ranks) and decoding bit for bit, plus round-trip error
 * bounds on fresh Gaussian weights. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "quant.h"
#include "runtime.h"

static hid_t golden;
static const char *const SHAPES[] = {"w_64x512", "w_odd_300x77"};
static const char *const FORMATS[] = {"nf4-bs64", "nf4-bs128", "nf4-bs256", "nf4-dq-bs64", "nf4-dq-bs128",
                                      "nf4-dq-bs256", "fp4-bs64", "fp4-bs128", "fp4-bs256", "fp4-dq-bs64",
                                      "fp4-dq-bs128", "fp4-dq-bs256", "int8-bs64", "int8-bs256", "int8-bs4096"};
#define NFORMATS (int)(sizeof FORMATS / sizeof FORMATS[0])

/* One golden group read into memory, and buffers of the same sizes for our results. */
typedef struct {
    quant_format f;
    int64_t n, nb, ngroups;
    char group[128];
    float *x, *dequant;
    quant_view q;
} case_t;

static void *read_all(const char *group, const char *name, sl_dtype t, int64_t count)
{
    char path[192];
    snprintf(path, sizeof path, "%s/%s", group, name);
    h5_shape s = h5_shape_of(golden, path);
    if (s.n != count) fail_msg("%s has %lld elements, expected %lld", path, (long long)s.n, (long long)count);
    void *buf = sl_malloc((size_t)count * sl_dtype_size(t), path);
    h5_read(golden, path, t, buf);
    return buf;
}

static quant_view alloc_view(const quant_format *f, int64_t n)
{
    int64_t nb = quant_nblocks(f, n);
    quant_view v = {.codes = calloc((size_t)quant_code_bytes(f, n, 0, nb), 1),
                    .absmax = calloc((size_t)nb, sizeof(float)), .absmax_u8 = calloc((size_t)nb, 1),
                    .nested_absmax = calloc((size_t)quant_nested_count(f, 0, nb) + 1, sizeof(float))};
    return v;
}

static void free_view(quant_view *v)
{
    free(v->codes), free(v->absmax), free(v->absmax_u8), free(v->nested_absmax);
}

static case_t load_case(const char *shape, const char *dtype, const char *fmt)
{
    case_t c = {0};
    assert_null(quant_format_parse(fmt, &c.f));
    char base[64];
    snprintf(base, sizeof base, "/%s/%s", shape, dtype);
    if (c.f.type == QUANT_INT8) snprintf(c.group, sizeof c.group, "%s/int8_dynamic_bs%d", base, c.f.blocksize);
    else snprintf(c.group, sizeof c.group, "%s/%s_bs%d_%s", base, quant_type_name(c.f.type), c.f.blocksize,
                  c.f.double_quant ? "dq" : "nodq");
    char in[96];
    snprintf(in, sizeof in, "%s/input_f32", base);
    c.n = h5_shape_of(golden, in).n;
    c.nb = quant_nblocks(&c.f, c.n);
    c.ngroups = quant_nested_count(&c.f, 0, c.nb);
    c.x = read_all(base, "input_f32", SL_F32, c.n);
    c.dequant = read_all(c.group, "dequant_f32", SL_F32, c.n);
    c.q.codes = read_all(c.group, c.f.type == QUANT_INT8 ? "codes" : "packed", SL_U8, quant_code_bytes(&c.f, c.n, 0, c.nb));
    if (c.f.double_quant) {
        c.q.absmax_u8 = read_all(c.group, "absmax", SL_U8, c.nb);
        c.q.nested_absmax = read_all(c.group, "nested_absmax", SL_F32, c.ngroups);
        c.q.offset = (float)h5_attr_double(golden, c.group, "offset");
    } else {
        c.q.absmax = read_all(c.group, "absmax", SL_F32, c.nb);
    }
    return c;
}

static void free_case(case_t *c)
{
    free(c->x), free(c->dequant);
    free_view(&c->q);
}

static void assert_bytes(const void *got, const void *want, size_t bytes, const char *what, const char *group)
{
    if (memcmp(got, want, bytes) == 0) return;
    size_t i = 0;
    while (((const uint8_t *)got)[i] == ((const uint8_t *)want)[i]) i++;
    fail_msg("%s %s differs from bitsandbytes at byte %zu of %zu", group, what, i, bytes);
}

/* Our encoding of blocks [0, nb) (already in v) must equal the golden bytes. */
static void assert_same_encoding(const case_t *c, const quant_view *v)
{
    assert_bytes(v->codes, c->q.codes, (size_t)quant_code_bytes(&c->f, c->n, 0, c->nb), "codes", c->group);
    if (!c->f.double_quant) {
        assert_bytes(v->absmax, c->q.absmax, (size_t)c->nb * 4, "absmax", c->group);
        return;
    }
    assert_bytes(v->absmax_u8, c->q.absmax_u8, (size_t)c->nb, "absmax u8", c->group);
    assert_bytes(v->nested_absmax, c->q.nested_absmax, (size_t)c->ngroups * 4, "nested absmax", c->group);
}

static void test_code_tables(void **state)
{
    float g[256];
    h5_read(golden, "/nf4_code", SL_F32, g);
    assert_bytes(QUANT_NF4_CODE, g, sizeof(float) * 16, "table", "/nf4_code");
    h5_read(golden, "/fp4_code", SL_F32, g);
    assert_bytes(quant_fp4_code(), g, sizeof(float) * 16, "table", "/fp4_code");
    h5_read(golden, "/dynamic_code_signed", SL_F32, g);
    assert_bytes(quant_dynamic_code(), g, sizeof(float) * 256, "table", "/dynamic_code_signed");
}

/* Phases 1 and 3 for blocks [b0, b1), written where the whole tensor's view keeps them. */
static void absmax_range(const case_t *c, int64_t b0, int64_t b1, float *absmax)
{
    quant_block_absmax(&c->f, c->x + b0 * c->f.blocksize, c->n, b0, b1, absmax + b0);
}

static void encode_range(const case_t *c, int64_t b0, int64_t b1, const float *absmax, float offset, quant_view *v)
{
    quant_view at = {.codes = v->codes + quant_code_bytes(&c->f, c->n, 0, b0), .absmax = v->absmax + b0,
                     .absmax_u8 = v->absmax_u8 + b0, .nested_absmax = v->nested_absmax + b0 / QUANT_NESTED_BLOCKS};
    quant_encode(&c->f, c->x + b0 * c->f.blocksize, c->n, b0, b1, absmax + b0, offset, &at);
}

/* Our offset is float32(exact sum) * (1/count). bitsandbytes' torch.mean on the GPU sums in its own
 * tree order, so ours may differ from it by an ulp or two. Returns the offset to encode with: ours
 * when they agree (then the test is end to end), else bitsandbytes' (then it tests the encoding). */
static float offset_to_use(const case_t *c, float ours, int *exact)
{
    float want = c->q.offset;
    double ulps = fabs((double)ours - want) / (nextafterf(want, INFINITY) - want);
    if (ulps > 2) fail_msg("%s offset %.9g differs from bitsandbytes' %.9g by %.0f ulps", c->group, ours, want, ulps);
    *exact += ours == want;
    return ulps == 0 ? ours : want;
}

/* Quantize with the blocks split among `ranks` simulated ranks (whole 256-block groups with double
 * quantization), partial offset sums combined as an integer all-reduce would, in reverse order. */
static void encode_sharded(const case_t *c, int ranks, quant_view *v, int *exact)
{
    int64_t unit = c->f.double_quant ? QUANT_NESTED_BLOCKS : 1, units = (c->nb + unit - 1) / unit;
    float *absmax = sl_malloc((size_t)c->nb * sizeof *absmax, "absmax");
    quant_sum total = {{0}};
    int64_t b[5];
    for (int r = 0; r <= ranks; r++) b[r] = r * units / ranks * unit < c->nb ? r * units / ranks * unit : c->nb;
    for (int r = ranks - 1; r >= 0; r--) {
        quant_sum part = {{0}};
        absmax_range(c, b[r], b[r + 1], absmax);
        quant_sum_add(&part, absmax + b[r], b[r + 1] - b[r]);
        for (int i = 0; i < QUANT_SUM_LEN; i++) total.v[i] += part.v[i];
    }
    float offset = c->f.double_quant ? offset_to_use(c, quant_sum_offset(&total), exact) : 0.0f;
    for (int r = 0; r < ranks; r++) encode_range(c, b[r], b[r + 1], absmax, offset, v);
    free(absmax);
}

static void test_golden_encode(void **state)
{
    int checked = 0, exact = 0;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < NFORMATS; k++)
            for (int ranks = 1; ranks <= 4; ranks++) {
                case_t c = load_case(SHAPES[s], "f32", FORMATS[k]);
                quant_view v = alloc_view(&c.f, c.n);
                encode_sharded(&c, ranks, &v, &exact);
                assert_same_encoding(&c, &v);
                checked += c.f.double_quant;
                free_view(&v);
                free_case(&c);
            }
    printf("# offsets equal to bitsandbytes' in %d of %d double-quantized encodings\n", exact, checked);
    assert_true(exact >= checked * 2 / 3); /* measured: 8 of 12 groups (32 of 48), 1-2 ulps off otherwise */
}

/* quant_tensor (one rank) agrees with the phases, and bf16-rounded inputs encode NF4 and INT8 exactly
 * too. FP4's bf16 groups are left out: their values land on exact midpoints, where bitsandbytes'
 * fast-math reciprocal of absmax (one ulp off on the GPU) decides 1-10 codes a group. */
static void test_golden_whole_tensor(void **state)
{
    const char *const dtypes[] = {"f32", "bf16"};
    for (int s = 0; s < 2; s++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < NFORMATS; k++) {
                case_t c = load_case(SHAPES[s], dtypes[d], FORMATS[k]);
                if (d == 0 || c.f.type != QUANT_FP4) {
                    quant_view v = alloc_view(&c.f, c.n);
                    quant_tensor(&c.f, c.x, c.n, &v);
                    if (!c.f.double_quant || v.offset == c.q.offset) assert_same_encoding(&c, &v);
                    else assert_bytes(v.codes, c.q.codes, (size_t)quant_code_bytes(&c.f, c.n, 0, c.nb), "codes", c.group);
                    free_view(&v);
                }
                free_case(&c);
            }
}

/* The backend kernel k_dequant reproduces bitsandbytes' dequantization bit for bit (-0 included). */
static void test_golden_decode(void **state)
{
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < NFORMATS; k++) {
            case_t c = load_case(SHAPES[s], "f32", FORMATS[k]);
            float *out = sl_malloc((size_t)c.n * sizeof *out, "dequant");
            k_quant_blocks k = quant_kernel_blocks(&c.f, &c.q);
            k_dequant(out, &k, c.n);
            assert_bytes(out, c.dequant, (size_t)c.n * 4, "dequant_f32", c.group);
            free(out);
            free_case(&c);
        }
}

/* Round trip on fresh N(0, 1) weights (fixed seed): relative RMS error against bounds about 1.25x
 * what was measured (see ROUNDTRIP); a wrong code, nibble or scale gives errors near 1. */
static double gaussian(uint64_t *state)
{
    double u[2];
    for (int k = 0; k < 2; k++) {
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        u[k] = ((z ^ (z >> 31)) >> 11) * 0x1.0p-53 + 0x1.0p-54;
    }
    return sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]);
}

static const struct { const char *format; double measured; } ROUNDTRIP[] = {
    {"nf4-bs64", 0.09187}, {"nf4-dq-bs64", 0.09191}, {"nf4-bs256", 0.09854}, {"fp4-bs64", 0.12224},
    {"fp4-dq-bs128", 0.12872}, {"int8-bs64", 0.00951}, {"int8-bs4096", 0.01317},
};

static void test_roundtrip_error(void **state)
{
    const int64_t n = 65536 + 77; /* a partial last block */
    float *x = sl_malloc(n * sizeof *x, "x"), *y = sl_malloc(n * sizeof *y, "y");
    uint64_t seed = 1234;
    for (int64_t i = 0; i < n; i++) x[i] = (float)gaussian(&seed);
    for (size_t k = 0; k < sizeof ROUNDTRIP / sizeof ROUNDTRIP[0]; k++) {
        quant_format f;
        assert_null(quant_format_parse(ROUNDTRIP[k].format, &f));
        quant_view v = alloc_view(&f, n);
        quant_tensor(&f, x, n, &v);
        quant_dequant(&f, &v, n, 0, quant_nblocks(&f, n), y);
        double se = 0, ss = 0;
        for (int64_t i = 0; i < n; i++) se += (double)(y[i] - x[i]) * (y[i] - x[i]), ss += (double)x[i] * x[i];
        double rel = sqrt(se / ss);
        printf("# %-14s relative RMS error %.5f (bound %.5f)\n", ROUNDTRIP[k].format, rel, 1.25 * ROUNDTRIP[k].measured);
        assert_true(rel <= 1.25 * ROUNDTRIP[k].measured);
        free_view(&v);
    }
    free(x), free(y);
}

int main(void)
{
    rt_init_serial("test_quant");
    char path[4096];
    const char *shared = getenv("SHARDLORA_SHARED");
    snprintf(path, sizeof path, "%s/quant/bnb_golden.h5", shared ? shared : "../shared");
    golden = h5_open(path, "golden vectors", 0, MPI_COMM_NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_tables),
        cmocka_unit_test(test_golden_encode),
        cmocka_unit_test(test_golden_whole_tensor),
        cmocka_unit_test(test_golden_decode),
        cmocka_unit_test(test_roundtrip_error),
    };
    test_filter_from_env();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h5_close(golden);
    return rc;
}
