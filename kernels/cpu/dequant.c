/* dequant: CPU decoding of quantized blocks to float32 (k_dequant in kernels.h). */
#include "kernels.h"

static float block_absmax(const k_quant_blocks *q, int64_t b)
{
    if (q->absmax) return q->absmax[b];
    float scaled = q->nested_code[q->absmax_u8[b]] * q->nested_absmax[b / q->nested_blocksize];
    return scaled + q->offset; /* rounded product, then the sum, as bitsandbytes decodes */
}

void k_dequant(float *out, const k_quant_blocks *q, int64_t n)
{
    int64_t bs = q->blocksize, nblocks = (n + bs - 1) / bs;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblocks; b++) {
        float scale = block_absmax(q, b);
        int64_t end = (b + 1) * bs < n ? (b + 1) * bs : n;
        if (q->bits == 8)
            for (int64_t i = b * bs; i < end; i++) out[i] = q->code[q->codes[i]] * scale;
        else
            for (int64_t i = b * bs; i < end; i++) {
                uint8_t byte = q->codes[i / 2];
                out[i] = q->code[i % 2 ? byte & 15 : byte >> 4] * scale;
            }
    }
}
