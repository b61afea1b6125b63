/* dequant: CPU decoding of quantized block ranges to float32 (declared in src/quant.h). */
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "runtime.h"

/* With double quantization: absmax[b] = dynamic_code[u8[b]] * nested[b / 256] + offset. */
static const float *block_absmax(const quant_format *f, const quant_view *q, int64_t nb, float **scratch)
{
    if (!f->double_quant) return q->absmax;
    const float *dyn = quant_dynamic_code();
    float *a = *scratch = sl_malloc((size_t)nb * sizeof *a, "dequantized absmax");
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) {
        float scaled = dyn[q->absmax_u8[k]] * q->nested_absmax[k / QUANT_NESTED_BLOCKS];
        a[k] = scaled + q->offset;
    }
    return a;
}

void quant_dequant(const quant_format *f, const quant_view *q, int64_t n, int64_t b0, int64_t b1, float *out)
{
    if (f->double_quant && b0 % QUANT_NESTED_BLOCKS)
        sl_fatal("quant_dequant: with double quantization a block range must start a group of %d blocks "
                 "(found b0 = %lld)", QUANT_NESTED_BLOCKS, (long long)b0);
    float *scratch = NULL;
    const float *absmax = block_absmax(f, q, b1 - b0, &scratch);
    float code[256];
    memcpy(code, quant_code(f->type), sizeof(float) * (size_t)quant_code_len(f->type));
    if (f->type == QUANT_FP4) code[8] = -0.0f; /* bitsandbytes applies the sign bit to zero too */
    int64_t bs = f->blocksize, elems = quant_block_elems(f, n, b0, b1);
    if (f->type == QUANT_INT8) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < elems; i++) out[i] = code[q->codes[i]] * absmax[i / bs];
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < elems; i++) {
            uint8_t byte = q->codes[i / 2];
            out[i] = code[i % 2 ? byte & 15 : byte >> 4] * absmax[i / bs];
        }
    }
    free(scratch);
}
