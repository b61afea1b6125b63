/* dtype: names, sizes and the 16-bit float conversions used by importers and I/O. */
#include "dtype.h"

#include "runtime.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; int is_float; } DTYPES[] = {
    [SL_F32] = {"float32", 4, 1},  [SL_F16] = {"float16", 2, 1}, [SL_BF16] = {"bfloat16", 2, 1},
    [SL_F64] = {"float64", 8, 1},  [SL_I8] = {"int8", 1, 0},     [SL_U8] = {"uint8", 1, 0},
    [SL_I16] = {"int16", 2, 0},    [SL_U16] = {"uint16", 2, 0},  [SL_I32] = {"int32", 4, 0},
    [SL_U32] = {"uint32", 4, 0},   [SL_I64] = {"int64", 8, 0},   [SL_U64] = {"uint64", 8, 0},
    [SL_DTYPE_OTHER] = {"unsupported type", 0, 0},
};

const char *sl_dtype_name(sl_dtype t) { return DTYPES[t].name; }
size_t sl_dtype_size(sl_dtype t) { return DTYPES[t].size; }
int sl_dtype_is_float(sl_dtype t) { return DTYPES[t].is_float; }

/* Through a union (C's way to reinterpret), which the vectoriser takes where it stops at memcpy. */
typedef union {
    float f;
    uint32_t u;
} f32_word;

static uint32_t f32_bits(float x) { return (f32_word){.f = x}.u; }
static float bits_f32(uint32_t u) { return (f32_word){.u = u}.f; }

uint16_t sl_f32_to_bf16(float x)
{
    uint32_t u = f32_bits(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40); /* keep it a quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float sl_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

/* Branch-free, so that loops over it vectorise: the exponent is rebiased by 112 (twice for
 * infinities and NaNs, to 255), and a subnormal mant * 2^-24 is made exactly as the float
 * 2^-14 + mant * 2^-24 less 2^-14. */
static inline float f16_to_f32(uint16_t h)
{
    const uint32_t exp_mask = 0x1fu << 23, rebias = 112u << 23;
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = (uint32_t)(h & 0x7fff) << 13, exp = em & exp_mask;
    uint32_t normal = em + rebias, subnormal = f32_bits(bits_f32(em + rebias + (1u << 23)) - 0x1p-14f);
    uint32_t top = 0u - (uint32_t)(exp == exp_mask), low = 0u - (uint32_t)(exp == 0); /* masks, not branches */
    return bits_f32(sign | ((normal + (rebias & top)) & ~low) | (subnormal & low));
}

float sl_f16_to_f32(uint16_t h) { return f16_to_f32(h); }

uint16_t sl_f32_to_f16(float x)
{
    uint32_t u = f32_bits(x), sign = (u >> 16) & 0x8000;
    float a = fabsf(x);
    if (isnan(x)) return (uint16_t)(sign | 0x7e00);
    if (a >= 65520.0f) return (uint16_t)(sign | 0x7c00); /* rounds to infinity */
    if (a < 0x1p-14f) {                                  /* subnormal half: round a / 2^-24 */
        float q = nearbyintf(a * 0x1p24f);               /* default mode: nearest even */
        return (uint16_t)(sign | (uint32_t)q);
    }
    uint32_t e = ((u >> 23) & 0xff) - 112, m = u & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13), rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into the exponent correctly */
    return (uint16_t)(sign | h);
}

/* Loops below this size stay on one thread: starting a team costs more than the work. */
#define PARALLEL_MIN 65536

void sl_to_f32(float *dst, const void *src, sl_dtype t, size_t n)
{
    const uint16_t *s16 = src;
    const double *s64 = src;
    int64_t len = (int64_t)n;
    switch (t) {
    case SL_F32: memmove(dst, src, n * 4); break;
    case SL_F64:
#pragma omp parallel for simd schedule(static) if (parallel : len >= PARALLEL_MIN)
        for (int64_t i = 0; i < len; i++) dst[i] = (float)s64[i];
        break;
    case SL_BF16:
#pragma omp parallel for simd schedule(static) if (parallel : len >= PARALLEL_MIN)
        for (int64_t i = 0; i < len; i++) dst[i] = sl_bf16_to_f32(s16[i]);
        break;
    case SL_F16:
#pragma omp parallel for simd schedule(static) if (parallel : len >= PARALLEL_MIN)
        for (int64_t i = 0; i < len; i++) dst[i] = f16_to_f32(s16[i]); /* inlined: vectorised */
        break;
    default: sl_fatal("internal error: cannot convert %s to float32", sl_dtype_name(t));
    }
}

void sl_from_f32(uint16_t *dst, const float *src, sl_dtype t, size_t n)
{
    int64_t len = (int64_t)n;
    switch (t) {
    case SL_BF16:
#pragma omp parallel for simd schedule(static) if (parallel : len >= PARALLEL_MIN)
        for (int64_t i = 0; i < len; i++) dst[i] = sl_f32_to_bf16(src[i]);
        break;
    case SL_F16:
#pragma omp parallel for simd schedule(static) if (parallel : len >= PARALLEL_MIN)
        for (int64_t i = 0; i < len; i++) dst[i] = sl_f32_to_f16(src[i]);
        break;
    default: sl_fatal("internal error: cannot convert float32 to %s", sl_dtype_name(t));
    }
}

/* Exponent all ones: Inf or NaN, on the bits (the loops vectorise). */
#define NONFINITE_32(u) (((u) & 0x7f800000u) == 0x7f800000u)
#define NONFINITE_64(u) (((u) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull)
#define NONFINITE_BF16(u) (((u) & 0x7f80u) == 0x7f80u)
#define NONFINITE_F16(u) (((u) & 0x7c00u) == 0x7c00u)

/* Whether [i0, i1) holds a non-finite value, by a branch-free pass. */
static int any_nonfinite(const void *data, sl_dtype t, int64_t i0, int64_t i1)
{
    const uint16_t *h = data;
    const uint32_t *f = data;
    const uint64_t *d = data;
    int any = 0;
    switch (t) {
    case SL_F32:
#pragma omp simd reduction(| : any)
        for (int64_t i = i0; i < i1; i++) any |= NONFINITE_32(f[i]);
        break;
    case SL_F64:
#pragma omp simd reduction(| : any)
        for (int64_t i = i0; i < i1; i++) any |= NONFINITE_64(d[i]);
        break;
    case SL_BF16:
#pragma omp simd reduction(| : any)
        for (int64_t i = i0; i < i1; i++) any |= NONFINITE_BF16(h[i]);
        break;
    default:
#pragma omp simd reduction(| : any)
        for (int64_t i = i0; i < i1; i++) any |= NONFINITE_F16(h[i]);
        break;
    }
    return any;
}

static int nonfinite_at(const void *data, sl_dtype t, int64_t i)
{
    switch (t) {
    case SL_F32: return NONFINITE_32(((const uint32_t *)data)[i]);
    case SL_F64: return NONFINITE_64(((const uint64_t *)data)[i]);
    case SL_BF16: return NONFINITE_BF16(((const uint16_t *)data)[i]);
    default: return NONFINITE_F16(((const uint16_t *)data)[i]);
    }
}

enum { SCAN_SPAN = 4096 }; /* elements tested at once before looking for the exact index */

int64_t sl_first_nonfinite(const void *data, sl_dtype t, int64_t n)
{
    if (t != SL_F32 && t != SL_F64 && t != SL_BF16 && t != SL_F16)
        sl_fatal("internal error: finiteness of %s values", sl_dtype_name(t));
    const int64_t spans = (n + SCAN_SPAN - 1) / SCAN_SPAN;
    int64_t first = n;
#pragma omp parallel for schedule(static) reduction(min : first) if (parallel : n >= PARALLEL_MIN)
    for (int64_t s = 0; s < spans; s++) {
        int64_t i0 = s * SCAN_SPAN, i1 = i0 + SCAN_SPAN < n ? i0 + SCAN_SPAN : n;
        if (i0 >= first || !any_nonfinite(data, t, i0, i1)) continue; /* this thread found one earlier */
        for (int64_t i = i0; i < i1; i++)
            if (nonfinite_at(data, t, i)) {
                first = i;
                break;
            }
    }
    return first == n ? -1 : first;
}

int64_t sl_first_nonfinite_f32(const float *x, int64_t n)
{
    const int64_t i = sl_first_nonfinite(x, SL_F32, n);
    return i < 0 ? n : i;
}
