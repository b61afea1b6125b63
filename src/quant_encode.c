/* quant_encode: the host reference quantizer (block absmax, the exact offset sum, encoding).
 * The arithmetic is bitsandbytes' CUDA kQuantizeBlockwise (csrc/kernels.cu): v = x * (1.0f / absmax)
 * in float32, never x / absmax; NF4 and FP4 compare v (FP4: |v|, the sign from v < 0) with the float
 * values of the decimal literals of dQuantizeNF4 and dQuantizeFP4, "v > literal" at each node; INT8
 * follows dQuantize<0>: a binary search over the code from pivot 127, then v against the float
 * midpoint (a + b) * 0.5f of the two candidates, which ties to whichever of them the search ended on.
 * All three become a count of thresholds below v (tests/reference/test_quant_midpoints.py checks them
 * on crafted near-midpoint inputs). All-zero blocks encode as code 0.0. */
#include "quant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "vector_clones.h"

/* Ascending float thresholds: code = map[number of thresholds t with v > t]. */
typedef struct {
    int nmid;
    float thr[255];
    uint8_t map[256];
    int fp4_sign; /* FP4: encode |v| against the magnitudes and add 8 for negative v */
} encoder;

/* dQuantizeNF4's and dQuantizeFP4's thresholds, as the decimal literals they are compiled from. */
static const float NF4_THRESHOLDS[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};
static const float FP4_THRESHOLDS[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                        0.4166667f, 0.583333f, 0.8333333f};
enum { NF4_NMID = sizeof NF4_THRESHOLDS / sizeof *NF4_THRESHOLDS, FP4_NMID = sizeof FP4_THRESHOLDS / sizeof *FP4_THRESHOLDS };

/* dQuantize<0>, step for step, for deriving and checking the INT8 thresholds at start-up. */
static int dynamic_search(const float *code, float x)
{
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f, val = code[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) lower_pivot = pivot, lower = val, pivot += i;
        else upper_pivot = pivot, upper = val, pivot -= i;
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[255];
    if (lower_pivot == 0) lower = code[0];
    if (x > val) return x > (upper + val) * 0.5f ? upper_pivot : pivot;
    return x < (lower + val) * 0.5f ? lower_pivot : pivot;
}

static void dynamic_thresholds(encoder *e)
{
    const float *c = quant_dynamic_code();
    e->nmid = 255;
    for (int k = 0; k < 255; k++) {
        float mid = (c[k] + c[k + 1]) * 0.5f;
        /* every v in (c[k], c[k+1]] takes one search path: ending on k, v > mid gives k + 1; ending
         * on k + 1, v < mid gives k, so v >= mid gives k + 1 */
        int end_lower = dynamic_search(c, mid) == k;
        e->thr[k] = end_lower ? mid : nextafterf(mid, -INFINITY);
        if (dynamic_search(c, e->thr[k]) != k || dynamic_search(c, nextafterf(e->thr[k], INFINITY)) != k + 1)
            sl_fatal("internal error: int8 threshold %d (%a) does not split codes %d and %d", k, e->thr[k], k, k + 1);
        e->map[k] = (uint8_t)k;
    }
    e->map[255] = 255;
}

static encoder ENCODERS[4];

static void make_encoders(void)
{
    encoder *nf4 = &ENCODERS[QUANT_NF4], *fp4 = &ENCODERS[QUANT_FP4];
    nf4->nmid = NF4_NMID;
    memcpy(nf4->thr, NF4_THRESHOLDS, sizeof NF4_THRESHOLDS);
    for (int i = 0; i < 16; i++) nf4->map[i] = (uint8_t)i;
    static const uint8_t by_size[8] = {0, 1, 6, 7, 4, 5, 2, 3}; /* FP4 codes by magnitude */
    fp4->nmid = FP4_NMID;
    memcpy(fp4->thr, FP4_THRESHOLDS, sizeof FP4_THRESHOLDS);
    memcpy(fp4->map, by_size, sizeof by_size);
    fp4->fp4_sign = 1;
    dynamic_thresholds(&ENCODERS[QUANT_INT8]);
}

/* Made once, also when the first calls come from several threads at a time. */
static const encoder *encoder_for(quant_type t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_encoders);
    return &ENCODERS[t];
}

static uint8_t encode_one(const encoder *e, float v)
{
    float a = e->fp4_sign ? fabsf(v) : v;
    int below = 0; /* thresholds below a, by bisection: nmid is 2^k - 1, so k steps, without branches */
    for (int step = (e->nmid + 1) / 2; step > 0; step /= 2) below += (a > e->thr[below + step - 1]) * step;
    return (uint8_t)(e->map[below] + (e->fp4_sign && v < 0 ? 8 : 0));
}

/* encode_one for INT8 over len elements of one block scaled by r: the bisection's eight steps
 * unrolled, so the loop over elements vectorises (the code is the count itself: map[k] = k). */
VECTOR_CLONES static void encode_bytes(const float *thr, const float *x, int64_t len, float r, uint8_t *codes)
{
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
        const float a = x[i] * r;
        int below = 0;
#pragma GCC unroll 8
        for (int step = 128; step > 0; step /= 2) below += (a > thr[below + step - 1]) * step;
        codes[i] = (uint8_t)below;
    }
}

/* The factor bitsandbytes scales a block by; 0 for an all-zero block (its codes are those of 0.0). */
static float block_scale(float absmax) { return absmax > 0 ? 1.0f / absmax : 0.0f; }

enum { MAX_4BIT_BLOCKSIZE = 256 }; /* quant_format_parse allows 64, 128 and 256 */

/* encode_one for a 4-bit type, with its threshold count a constant (so the count unrolls and the
 * loops over elements vectorise); map NULL: the count is the code (NF4). */
static inline __attribute__((always_inline)) int nibble(const float *t, int nmid, int fp4, const uint8_t *map,
                                                        float v)
{
    float a = fp4 ? fabsf(v) : v;
    int below = 0;
#pragma GCC unroll 16
    for (int k = 0; k < nmid; k++) below += a > t[k];
    return map ? map[below] + (fp4 && v < 0 ? 8 : 0) : below;
}

/* The packed codes of len elements of one block, the first of each pair in the high nibble. */
static inline __attribute__((always_inline)) void encode_nibbles(const float *t, int nmid, int fp4,
                                                                 const uint8_t *map, const float *x, int64_t len,
                                                                 float absmax, uint8_t *codes)
{
    const float r = block_scale(absmax);
#pragma omp simd
    for (int64_t j = 0; j < len / 2; j++)
        codes[j] = (uint8_t)(nibble(t, nmid, fp4, map, x[2 * j] * r) << 4 | nibble(t, nmid, fp4, map, x[2 * j + 1] * r));
    if (len & 1) codes[len / 2] = (uint8_t)(nibble(t, nmid, fp4, map, x[len - 1] * r) << 4);
}

VECTOR_CLONES static void encode_block_4bit(const encoder *e, const float *x, int64_t len, float absmax,
                                           uint8_t *codes)
{
    if (e->fp4_sign) encode_nibbles(e->thr, FP4_NMID, 1, e->map, x, len, absmax, codes);
    else encode_nibbles(e->thr, NF4_NMID, 0, NULL, x, len, absmax, codes);
}

/* Phase 1, exactly fmaxf(m, fabsf(x)) over the block from m = 0 (NaN skipped), on the bits: for
 * non-NaN floats |x| orders as its bits without the sign, so the loop vectorises. */
void quant_block_absmax(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                        float *absmax)
{
    int64_t bs = f->blocksize, elems = quant_block_elems(f, n, b0, b1);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < b1 - b0; b++) {
        const float *xb = x + b * bs;
        int64_t len = elems - b * bs < bs ? elems - b * bs : bs;
        int32_t m = 0;
#pragma omp simd reduction(max : m)
        for (int64_t i = 0; i < len; i++) {
            uint32_t u;
            memcpy(&u, &xb[i], sizeof u);
            int32_t a = (int32_t)(u & 0x7fffffffu);
            a = a > 0x7f800000 ? 0 : a;
            m = a > m ? a : m;
        }
        memcpy(&absmax[b], &m, sizeof m);
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

void quant_encode_codes(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                        const float *absmax, uint8_t *codes)
{
    const encoder *e = encoder_for(f->type);
    int64_t bs = f->blocksize, elems = quant_block_elems(f, n, b0, b1);
    if (f->type == QUANT_INT8) {
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < b1 - b0; b++) {
            int64_t i0 = b * bs, len = elems - i0 < bs ? elems - i0 : bs;
            encode_bytes(e->thr, x + i0, len, block_scale(absmax[b]), codes + i0);
        }
        return;
    }
    if (bs > MAX_4BIT_BLOCKSIZE) sl_fatal("internal error: 4-bit blocksize %lld above %d", (long long)bs, MAX_4BIT_BLOCKSIZE);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < b1 - b0; b++) { /* blocks hold an even number of elements but the last */
        int64_t i0 = b * bs, len = elems - i0 < bs ? elems - i0 : bs;
        encode_block_4bit(e, x + i0, len, absmax[b], codes + i0 / 2);
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
        float r = block_scale(m);
        for (int64_t k = k0; k < k1; k++) u8[k] = encode_one(e, (absmax[k] - offset) * r);
    }
}

void quant_encode_stats(const quant_format *f, int64_t b0, int64_t b1, const float *absmax, float offset,
                        quant_view *out)
{
    if (f->double_quant && b0 % QUANT_NESTED_BLOCKS)
        sl_fatal("quant_encode: with double quantization a block range must start a group of %d blocks "
                 "(expected b0 %% %d == 0, found b0 = %lld)", QUANT_NESTED_BLOCKS, QUANT_NESTED_BLOCKS, (long long)b0);
    if (f->double_quant) {
        encode_absmax(absmax, b1 - b0, offset, out->absmax_u8, out->nested_absmax);
        out->offset = offset;
    } else {
        memcpy(out->absmax, absmax, (size_t)(b1 - b0) * sizeof *absmax);
    }
}

void quant_encode(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                  const float *absmax, float offset, quant_view *out)
{
    quant_encode_stats(f, b0, b1, absmax, offset, out);
    quant_encode_codes(f, x, n, b0, b1, absmax, out->codes);
}

enum { ENCODE_PIECE = 1 << 14 }; /* elements a thread holds at a time: its L2, not memory */

void quant_encode_from(const quant_format *f, int64_t n, int64_t b0, int64_t b1, quant_values_fn values, void *ctx,
                       float *absmax, uint8_t *codes, quant_sum *sum)
{
    const int64_t bs = f->blocksize, per = ENCODE_PIECE / bs > 1 ? ENCODE_PIECE / bs : 1;
    const int64_t pieces = (b1 - b0 + per - 1) / per;
#pragma omp parallel
    {
        float *w = sl_malloc((size_t)(per * bs) * sizeof *w, "weights to quantize");
        uint16_t *words = sl_malloc((size_t)(per * bs) * sizeof *words, "weights to quantize");
        quant_sum mine = {{0}};
#pragma omp for schedule(dynamic, 4)
        for (int64_t p = 0; p < pieces; p++) {
            const int64_t p0 = b0 + p * per, p1 = p0 + per < b1 ? p0 + per : b1;
            values(ctx, p0 * bs, quant_block_elems(f, n, p0, p1), w, words);
            quant_block_absmax(f, w, n, p0, p1, absmax + (p0 - b0));
            if (sum) quant_sum_add(&mine, absmax + (p0 - b0), p1 - p0);
            quant_encode_codes(f, w, n, p0, p1, absmax + (p0 - b0), codes + quant_code_bytes(f, n, b0, p0));
        }
        if (sum) {
#pragma omp critical
            for (int k = 0; k < QUANT_SUM_LEN; k++) sum->v[k] += mine.v[k];
        }
        free(w), free(words);
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
