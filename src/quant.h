/* quant: the frozen base's quantized formats (NF4, FP4, INT8 blockwise; double quantization of the
 * NF4/FP4 block absmax), bit-compatible with bitsandbytes, and the host reference quantizer.
 *
 * Everything works on a range of whole blocks [b0, b1) of one tensor of n elements, so each rank
 * quantizes only the blocks it owns. With double quantization b0 must start a group of
 * QUANT_NESTED_BLOCKS blocks (and b1 end one, or be the last block). Sharded quantization:
 *   1. quant_block_absmax(f, x, n, b0, b1, absmax)            own blocks
 *   2. quant_sum_add(&s, absmax, b1 - b0); MPI_Allreduce(s.v, QUANT_SUM_LEN, MPI_INT64_T, MPI_SUM);
 *      offset = quant_sum_offset(&s)                            exact, so the same on every rank
 *   3. quant_encode(f, x, n, b0, b1, absmax, offset, &view)     own codes and statistics
 * Pointers in a quant_view point at the data of block b0 (codes: byte quant_code_bytes(f, n, 0, b0);
 * nested_absmax: group b0 / QUANT_NESTED_BLOCKS). */
#ifndef SL_QUANT_H
#define SL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef enum { QUANT_NONE, QUANT_NF4, QUANT_FP4, QUANT_INT8 } quant_type;

typedef struct {
    quant_type type;
    int blocksize;
    int double_quant; /* NF4/FP4 only: absmax stored as uint8 codes of the dynamic code */
} quant_format;

#define QUANT_NESTED_BLOCKS 256 /* blocks per nested absmax with double quantization */

/* Code tables, bit-identical to bitsandbytes': indexed by the 4-bit or 8-bit code. */
extern const float QUANT_NF4_CODE[16];
const float *quant_fp4_code(void);     /* 16 entries */
const float *quant_dynamic_code(void); /* 256 entries, signed dynamic code, ascending */
const float *quant_code(quant_type t); /* the table a type decodes with */
int quant_code_len(quant_type t);

/* "none", "nf4", "fp4", "int8", optionally followed by "-dq" and "-bsN" ("nf4-dq-bs64"); the
 * blocksize defaults to bitsandbytes' (64 for 4-bit, 4096 for int8). Returns NULL or a message. */
const char *quant_format_parse(const char *s, quant_format *f);
/* The format from command-line style parts: type "nf4", "fp4" or "int8", blocksize 0 for the
 * default. Returns NULL or a message (unknown type, unsupported combination). */
const char *quant_format_make(const char *type, int double_quant, int blocksize, quant_format *f);
/* NULL when the combination is supported, else why not. */
const char *quant_format_problem(const quant_format *f);
const char *quant_type_name(quant_type t);
int quant_type_from_name(const char *s); /* -1 when unknown */
/* "nf4-dq-bs64"; returns buf. */
char *quant_format_name(const quant_format *f, char *buf, size_t len);

/* Sizes, for laying block ranges out in flat buffers. */
int64_t quant_nblocks(const quant_format *f, int64_t n);
int64_t quant_block_elems(const quant_format *f, int64_t n, int64_t b0, int64_t b1);
int64_t quant_code_bytes(const quant_format *f, int64_t n, int64_t b0, int64_t b1);
int64_t quant_absmax_bytes(const quant_format *f, int64_t b0, int64_t b1);
int64_t quant_nested_count(const quant_format *f, int64_t b0, int64_t b1); /* 0 without DQ */

/* The quantized data of blocks [b0, b1): codes, plus absmax (f32, without DQ) or absmax_u8 and
 * nested_absmax and offset (with DQ). Unused members may be NULL. */
typedef struct {
    uint8_t *codes;
    float *absmax;
    uint8_t *absmax_u8;
    float *nested_absmax;
    float offset;
} quant_view;

/* Phase 1: absmax[k] = max |x| over block b0 + k; x holds the elements of blocks [b0, b1). */
void quant_block_absmax(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                        float *absmax);

/* Phase 2: an exact, order-independent sum of non-negative floats (one int64 per binary exponent,
 * plus the count in v[0]), so partial sums from any split combine with an integer all-reduce. */
#define QUANT_SUM_LEN 256
typedef struct {
    int64_t v[QUANT_SUM_LEN];
} quant_sum;
void quant_sum_add(quant_sum *s, const float *absmax, int64_t count);
/* The double-quantization offset: float32(exact sum) * (1.0f / count). */
float quant_sum_offset(const quant_sum *s);

/* Phase 3: encode blocks [b0, b1) given their absmax (and the tensor's offset with DQ). */
void quant_encode(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                  const float *absmax, float offset, quant_view *out);
/* Phase 3 in its two parts: the codes need only the blocks' absmax, so a caller can encode each
 * range as soon as phase 1 has seen it (codes from byte 0 for block b0) and the statistics (absmax,
 * or absmax_u8, nested_absmax and offset) once the offset is known. */
void quant_encode_codes(const quant_format *f, const float *x, int64_t n, int64_t b0, int64_t b1,
                        const float *absmax, uint8_t *codes);
void quant_encode_stats(const quant_format *f, int64_t b0, int64_t b1, const float *absmax, float offset,
                        quant_view *out);

/* Phase 1 and the codes of phase 3 together for blocks [b0, b1) of an n-element tensor whose
 * values a source makes or reads: each thread takes a piece of whole blocks at a time and takes
 * their absmax and encodes their codes while the piece is in its cache. values(ctx, e0, count, w,
 * words) puts elements [e0, e0 + count) into w, from any thread (words: room for count 16-bit
 * words, for a reader of bf16 or f16 data). absmax[k] is block b0 + k's, codes start
 * at block b0; with sum (double quantization) the absmax values are added to it exactly, so the
 * thread count changes no bit. */
typedef void (*quant_values_fn)(void *ctx, int64_t e0, int64_t count, float *w, uint16_t *words);
void quant_encode_from(const quant_format *f, int64_t n, int64_t b0, int64_t b1, quant_values_fn values, void *ctx,
                       float *absmax, uint8_t *codes, quant_sum *sum);

/* The blocks q points at, as the backend kernel k_dequant takes them (kernels/kernels.h), with the
 * built-in decoding tables (host memory). */
k_quant_blocks quant_kernel_blocks(const quant_format *f, const quant_view *q);
/* Decode blocks [b0, b1) into out (their elements, float32) on the host, through k_dequant. */
void quant_dequant(const quant_format *f, const quant_view *q, int64_t n, int64_t b0, int64_t b1,
                   float *out);

/* Convenience for whole tensors (one rank): phases 1-3 with local scratch. */
void quant_tensor(const quant_format *f, const float *x, int64_t n, quant_view *out);

#endif
