/* dtype: the element types shardlora reads and writes, and the 16-bit float conversions. */
#ifndef SL_DTYPE_H
#define SL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SL_F32, SL_F16, SL_BF16, SL_F64, SL_I8, SL_U8, SL_I16, SL_U16, SL_I32, SL_U32,
               SL_I64, SL_U64, SL_DTYPE_OTHER } sl_dtype;

const char *sl_dtype_name(sl_dtype t);
size_t sl_dtype_size(sl_dtype t);
int sl_dtype_is_float(sl_dtype t);

/* Round to nearest even, as PyTorch does; NaN stays NaN. */
uint16_t sl_f32_to_bf16(float x);
float sl_bf16_to_f32(uint16_t b);
uint16_t sl_f32_to_f16(float x);
float sl_f16_to_f32(uint16_t h);

/* Convert n elements of src (any float type) to float32, on every OpenMP thread. */
void sl_to_f32(float *dst, const void *src, sl_dtype t, size_t n);
/* Narrow n float32 values to t (SL_BF16 or SL_F16, round to nearest even), on every OpenMP thread. */
void sl_from_f32(uint16_t *dst, const float *src, sl_dtype t, size_t n);

/* Index of the first NaN or Inf among n values of float type t (f32, f64, f16, bf16), or -1; the
 * scan runs on every OpenMP thread (on the calling thread alone inside a parallel region). */
int64_t sl_first_nonfinite(const void *data, sl_dtype t, int64_t n);
/* The same of x[0, n) as float32, n when there is none. */
int64_t sl_first_nonfinite_f32(const float *x, int64_t n);

#endif
