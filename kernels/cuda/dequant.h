/* dequant: NF4/FP4/INT8 blocks decoded to bf16 on the GPU in one pass, double-quantized absmax
 * decoded inline. The CPU twin is k_dequant (kernels/kernels.h); the output is the bf16 rounding
 * (nearest even) of k_dequant's float output, bit for bit. */
#ifndef SL_CUDA_DEQUANT_H
#define SL_CUDA_DEQUANT_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* k_quant_blocks with device pointers and the tables by value, so a launch needs no table upload. */
typedef struct {
    int bits, blocksize;        /* 4 (two codes per byte, first element in the HIGH nibble) or 8;
                                   blocksize a power of two, at least 8 */
    float code[256];            /* decoding table by value (first 1<<bits entries used) */
    const uint8_t *codes;       /* device */
    const float *absmax;        /* device, one per block; NULL with double quantization, where */
    const uint8_t *absmax_u8;   /* device: absmax[b] =
                                   nested_code[absmax_u8[b]] * nested_absmax[b / nested_blocksize] + offset */
    const float *nested_absmax; /* device */
    float nested_code[256];
    int nested_blocksize;       /* a power of two */
    float offset;
} kc_quant_blocks;

/* out[i] (bf16) = round_to_nearest_even(code[c_i] * absmax[i / blocksize]) for i in [0, n), n elements
   starting at the first block (which starts a nested group under double quantization). Asynchronous
   on stream; out must not overlap the inputs. */
void kc_dequant_bf16(void *out, const kc_quant_blocks *q, int64_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
