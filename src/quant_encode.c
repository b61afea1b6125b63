/* quant_encode: the host reference quantizer (block absmax, the exact offset sum, encoding).
 * Rounding rules found against bitsandbytes' golden vectors (see README "Quantized formats"):
 * v = x / absmax in float32; the code is the nearest table entry, ties to the lower value, decided
 * by comparing v with the exact midpoints of adjacent sorted entries; FP4 takes the sign from v < 0
 * and uses 0.583333f rather than 7/12 between 0.5 and 2/3. All-zero blocks encode as code 0.0. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* A table sorted ascending, as decision thresholds: code = map[number of thresholds below v]. */
typedef struct {
    int nmid;
    double mid[255];
    /* mid rounded down to float: for a float a, a > mid exactly when a > fmid (no float lies in
     * (fmid, mid]), so the 4-bit codes count float thresholds without branches, many at a time */
    float fmid[255];
    uint8_t map[256];
    int fp4_sign; /* FP4: encode |v| against the magnitudes and add 8 for negative v */
} encoder;

static void set_mid(encoder *e, int i, double mid)
{
    e->mid[i] = mid;
    float f = (float)mid;
    e->fmid[i] = (double)f > mid ? nextafterf(f, -INFINITY) : f;
}

static void encoder_init(encoder *e, const float *sorted, const uint8_t *map, int len)
{
    e->nmid = len - 1;
    for (int i = 0; i < len - 1; i++) set_mid(e, i, ((double)sorted[i] + sorted[i + 1]) / 2);
    memcpy(e->map, map, (size_t)len);
}

static const encoder *encoder_for(quant_type t)
{
    static encoder enc[4];
    static int done;
    if (!done) {
        uint8_t ident[256];
        for (int i = 0; i < 256; i++) ident[i] = (uint8_t)i;
        encoder_init(&enc[QUANT_NF4], QUANT_NF4_CODE, ident, 16);
        encoder_init(&enc[QUANT_INT8], quant_dynamic_code(), ident, 256);
        const float *fp4 = quant_fp4_code();
        static const uint8_t by_size[8] = {0, 1, 6, 7, 4, 5, 2, 3};
        float mag[8];
        for (int i = 0; i < 8; i++) mag[i] = fp4[by_size[i]];
        encoder_init(&enc[QUANT_FP4], mag, by_size, 8);
        set_mid(&enc[QUANT_FP4], 5, 0.583333f); /* bitsandbytes' threshold: golden v = 0.58333319 -> 2/3 */
        enc[QUANT_FP4].fp4_sign = 1;
        done = 1;
    }
    return &enc[t];
}

static uint8_t encode_one(const encoder *e, float v)
{
    float a = e->fp4_sign ? fabsf(v) : v;
    int lo = 0, hi = e->nmid; /* count thresholds below a by bisection */
    while (lo < hi) {
        int m = (lo + hi) / 2;
        if ((double)a > e->mid[m]) lo = m + 1;
        else hi = m;
    }
    return (uint8_t)(e->map[lo] + (e->fp4_sign && v < 0 ? 8 : 0));
}

static float scaled(float x, float absmax) { return absmax > 0 ? x / absmax : 0.0f; }

enum { MAX_4BIT_BLOCKSIZE = 256 }; /* quant_format_parse allows 64, 128 and 256 */

/* The 4-bit codes of len elements of one block, as encode_one gives them, a vector at a time. */
static void encode_nibbles(const encoder *e, const float *x, int64_t len, float absmax, uint8_t *c)
{
    int nmid = e->nmid, fp4 = e->fp4_sign;
    const float *t = e->fmid;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
        float v = scaled(x[i], absmax), a = fp4 ? fabsf(v) : v;
        int below = 0;
        for (int k = 0; k < nmid; k++) below += a > t[k];
        c[i] = (uint8_t)below;
    }
    for (int64_t i = 0; i < len; i++) c[i] = (uint8_t)(e->map[c[i]] + (fp4 && scaled(x[i], absmax) < 0 ? 8 : 0));
}

void quant_block_absmax(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                        float *absmax)
{
    int64_t bs = f->blocksize, elems = quant_block_elems(f, n, b0, b1);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < b1 - b0; b++) {
        float m = 0.0f;
        for (int64_t i = b * bs; i < (b + 1) * bs && i < elems; i++) m = fmaxf(m, fabsf(x[i]));
        absmax[b] = m;
    }
}

void quant_sum_add(quant_sum *s, const float *absmax, int64_t count)
{
    for (int64_t k = 0; k < count; k++) {
        float a = absmax[k];
        if (!(a >= 0.0f) || isinf(a)) sl_fatal("quant_sum_add: block absmax %g is not finite and non-negative", a);
        uint32_t bits;
        memcpy(&bits, &a, sizeof bits);
        uint32_t e = bits >> 23, mant = bits & 0x7fffffu;
        /* bins are binary exponents: mantissa * 2^(max(e,1) - 150), exact in int64 */
        s->v[1 + (e ? e - 1 : 0)] += e ? (int64_t)(mant | 0x800000u) : (int64_t)mant;
    }
    s->v[0] += count;
}

/* Carry the bins into single bits, then round the top 24 bits to nearest even. */
static float exact_sum_to_float(const quant_sum *s)
{
    enum { NBITS = QUANT_SUM_LEN + 64 };
    uint8_t bit[NBITS] = {0};
    int64_t carry = 0;
    int top = -1;
    for (int p = 0; p < NBITS; p++) {
        carry += p < QUANT_SUM_LEN - 1 ? s->v[1 + p] : 0;
        bit[p] = (uint8_t)(carry & 1);
        carry >>= 1;
        if (bit[p]) top = p;
    }
    if (top < 0) return 0.0f;
    int low = top - 23 > 0 ? top - 23 : 0; /* bit p weighs 2^(p + 1 - 150) */
    int64_t m = 0;
    for (int p = top; p >= low; p--) m = m * 2 + bit[p];
    int sticky = 0;
    for (int p = low - 2; p >= 0; p--) sticky |= bit[p];
    if (low > 0 && bit[low - 1] && (sticky || (m & 1))) m++;
    return (float)ldexp((double)m, low + 1 - 150);
}

float quant_sum_offset(const quant_sum *s)
{
    if (s->v[0] <= 0) sl_fatal("quant_sum_offset: no blocks were summed");
    return exact_sum_to_float(s) * (1.0f / (float)s->v[0]);
}

static void encode_codes(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                         const float *absmax, uint8_t *codes)
{
    const encoder *e = encoder_for(f->type);
    int64_t bs = f->blocksize, elems = quant_block_elems(f, n, b0, b1);
    if (f->type == QUANT_INT8) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < elems; i++) codes[i] = encode_one(e, scaled(x[i], absmax[i / bs]));
        return;
    }
    int64_t nb = b1 - b0;
    if (bs > MAX_4BIT_BLOCKSIZE) sl_fatal("internal error: 4-bit blocksize %lld above %d", (long long)bs, MAX_4BIT_BLOCKSIZE);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) { /* blocks hold an even number of elements but the last */
        int64_t i0 = b * bs, len = elems - i0 < bs ? elems - i0 : bs;
        uint8_t c[MAX_4BIT_BLOCKSIZE + 1];
        encode_nibbles(e, x + i0, len, absmax[b], c);
        c[len] = 0;
        for (int64_t j = 0; j < (len + 1) / 2; j++) codes[i0 / 2 + j] = (uint8_t)(c[2 * j] << 4 | c[2 * j + 1]);
    }
}

/* Double quantization: centre the absmax values on the offset and encode them with the dynamic
 * code, one nested absmax per group of QUANT_NESTED_BLOCKS blocks. */
static void encode_absmax(const float *absmax, int64_t count, float offset, uint8_t *u8, float *nested)
{
    const encoder *e = encoder_for(QUANT_INT8);
    int64_t groups = (count + QUANT_NESTED_BLOCKS - 1) / QUANT_NESTED_BLOCKS;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        int64_t k0 = g * QUANT_NESTED_BLOCKS, k1 = k0 + QUANT_NESTED_BLOCKS < count ? k0 + QUANT_NESTED_BLOCKS : count;
        float m = 0.0f;
        for (int64_t k = k0; k < k1; k++) m = fmaxf(m, fabsf(absmax[k] - offset));
        nested[g] = m;
        for (int64_t k = k0; k < k1; k++) u8[k] = encode_one(e, scaled(absmax[k] - offset, m));
    }
}

void quant_encode(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                  const float *absmax, float offset, quant_view *out)
{
    if (f->double_quant && b0 % QUANT_NESTED_BLOCKS)
        sl_fatal("quant_encode: with double quantization a block range must start a group of %d blocks "
                 "(expected b0 %% %d == 0, found b0 = %lld)", QUANT_NESTED_BLOCKS, QUANT_NESTED_BLOCKS, (long long)b0);
    encode_codes(f, x, n, b0, b1, absmax, out->codes);
    if (f->double_quant) {
        encode_absmax(absmax, b1 - b0, offset, out->absmax_u8, out->nested_absmax);
        out->offset = offset;
    } else {
        memcpy(out->absmax, absmax, (size_t)(b1 - b0) * sizeof *absmax);
    }
}

void quant_tensor(const quant_format *f, const float *x, int64_t n, quant_view *out)
{
    int64_t nb = quant_nblocks(f, n);
    float *absmax = sl_malloc((size_t)nb * sizeof *absmax, "block absmax");
    quant_block_absmax(f, x, n, 0, nb, absmax);
    float offset = 0.0f;
    if (f->double_quant) {
        quant_sum s = {{0}};
        quant_sum_add(&s, absmax, nb);
        offset = quant_sum_offset(&s);
    }
    quant_encode(f, x, n, 0, nb, absmax, offset, out);
    free(absmax);
}
