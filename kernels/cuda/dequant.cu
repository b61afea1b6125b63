// dequant: blockwise NF4/FP4/INT8 codes to bf16 in one pass (kc_dequant_bf16 in dequant.h).
//
// Memory-bound: each element reads 4 or 8 bits and writes 16, so the layout serves the stores. A
// lane decodes groups of 8 elements: one 4- or 8-byte load of codes, one 16-byte store of bf16. The
// 32 lanes of a warp take 32 consecutive groups, so every warp-wide load and store is one contiguous
// range (128 or 256 bytes read, 512 written, whole sectors). A warp's tile is STEPS such rows with
// all loads issued before the first store; the grid holds only as many CTAs as are resident at once
// and strides over the tiles, so the decoding tables reach shared memory once per CTA.
#include "dequant.h"

#include "cuda_common.cuh"

namespace {

constexpr int THREADS = 256;
constexpr int GROUP = 8;            // elements per 16-byte store
constexpr int GROUP_SHIFT = 3;      // log2(GROUP)
constexpr int STEPS = 4;            // groups per lane per tile: loads in flight before the first use
constexpr int TILE = 32 * STEPS;    // groups per warp tile
constexpr int WARPS = THREADS / 32; // per CTA

// The code bytes of one group.
template <int BITS> struct group_word;
template <> struct group_word<4> { typedef uint32_t type; };
template <> struct group_word<8> { typedef uint2 type; };

// Code j (0..7) of a group: bytes in memory order; with 4 bits the high nibble comes first.
__device__ __forceinline__ int code_of(uint32_t w, int j) { return (w >> (8 * (j / 2) + (j % 2 ? 0 : 4))) & 15; }
__device__ __forceinline__ int code_of(uint2 w, int j) { return ((j < 4 ? w.x : w.y) >> (8 * (j % 4))) & 255; }

// Tables indexed by data-dependent codes: from the parameter space they would serialise per address.
template <int BITS, bool DQ>
__device__ __forceinline__ void load_tables(float *code, float *nested_code, const kc_quant_blocks &q)
{
    for (int i = threadIdx.x; i < (1 << BITS); i += THREADS) code[i] = q.code[i];
    if (DQ)
        for (int i = threadIdx.x; i < 256; i += THREADS) nested_code[i] = q.nested_code[i];
    __syncthreads();
}

// A block's absmax in two halves, so that a lane issues every load of its tile before the first
// use: the loads (raw), then the double-quantization decode as k_dequant does it: the rounded
// product, then the rounded sum (no FMA).
struct raw_scale {
    float absmax_or_nested; // absmax, or with DQ the nested absmax of the block's group
    int u8;                 // with DQ: the block's absmax code
};

template <bool DQ>
__device__ __forceinline__ raw_scale load_scale(const kc_quant_blocks &q, int64_t b, int nested_shift)
{
    if (!DQ) return {__ldg(q.absmax + b), 0};
    return {__ldg(q.nested_absmax + (b >> nested_shift)), __ldg(q.absmax_u8 + b)};
}

template <bool DQ> __device__ __forceinline__ float decode_scale(raw_scale r, const float *nested_code, float offset)
{
    return DQ ? __fadd_rn(__fmul_rn(nested_code[r.u8], r.absmax_or_nested), offset) : r.absmax_or_nested;
}

// Element i alone, for the tail and for unaligned pointers.
template <int BITS, bool DQ>
__device__ __forceinline__ bf16 dequant_one(const kc_quant_blocks &q, const float *code, const float *nested_code,
                                           int64_t i, int block_shift, int nested_shift)
{
    int c = BITS == 8 ? q.codes[i] : (q.codes[i / 2] >> (i % 2 ? 0 : 4)) & 15;
    float scale = decode_scale<DQ>(load_scale<DQ>(q, i >> block_shift, nested_shift), nested_code, q.offset);
    return __float2bfloat16_rn(__fmul_rn(code[c], scale));
}

// Two products rounded to bf16 (nearest even, as __float2bfloat16_rn) in one instruction; lo first in memory.
__device__ __forceinline__ uint32_t bf16x2_bits(float lo, float hi)
{
    __nv_bfloat162_raw r = __floats2bfloat162_rn(lo, hi);
    return (uint32_t)r.x | (uint32_t)r.y << 16;
}

template <typename Word> __device__ __forceinline__ uint4 decode_group(Word w, float scale, const float *code)
{
    uint32_t h[4];
#pragma unroll
    for (int j = 0; j < 4; j++)
        h[j] = bf16x2_bits(__fmul_rn(code[code_of(w, 2 * j)], scale), __fmul_rn(code[code_of(w, 2 * j + 1)], scale));
    return make_uint4(h[0], h[1], h[2], h[3]);
}

// The n / GROUP whole groups through vector loads and stores, then the last n % GROUP elements
// by the first CTA. Needs codes aligned to a group's bytes and out to 16 bytes.
template <int BITS, bool DQ>
__global__ void __launch_bounds__(THREADS)
    dequant_groups(uint4 *out, const __grid_constant__ kc_quant_blocks q, int64_t n, int block_shift,
                   int nested_shift)
{
    __shared__ float code[1 << BITS], nested_code[DQ ? 256 : 1];
    load_tables<BITS, DQ>(code, nested_code, q);
    typedef typename group_word<BITS>::type word;
    const word *words = reinterpret_cast<const word *>(q.codes);
    const int64_t groups = n / GROUP, tiles = (groups + TILE - 1) / TILE;
    const int lane = threadIdx.x % 32, groups_shift = block_shift - GROUP_SHIFT; // log2(groups per block)
    for (int64_t t = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32; t < tiles; t += (int64_t)gridDim.x * WARPS) {
        word w[STEPS];
        raw_scale raw[STEPS];
#pragma unroll
        for (int k = 0; k < STEPS; k++) {
            // Past the end (last tile only) a lane reloads the last group: no branch among the loads.
            int64_t g = min(t * TILE + k * 32 + lane, groups - 1);
            w[k] = __ldg(words + g);
            raw[k] = load_scale<DQ>(q, g >> groups_shift, nested_shift);
        }
#pragma unroll
        for (int k = 0; k < STEPS; k++) {
            int64_t g = t * TILE + k * 32 + lane;
            uint4 v = decode_group(w[k], decode_scale<DQ>(raw[k], nested_code, q.offset), code);
            if (g < groups) out[g] = v;
        }
    }
    int64_t i = groups * GROUP + threadIdx.x;
    if (blockIdx.x == 0 && i < n)
        reinterpret_cast<bf16 *>(out)[i] = dequant_one<BITS, DQ>(q, code, nested_code, i, block_shift, nested_shift);
}

// Pointers not aligned for dequant_groups: one element per thread.
template <int BITS, bool DQ>
__global__ void __launch_bounds__(THREADS)
    dequant_elements(bf16 *out, const __grid_constant__ kc_quant_blocks q, int64_t n, int block_shift,
                     int nested_shift)
{
    __shared__ float code[1 << BITS], nested_code[DQ ? 256 : 1];
    load_tables<BITS, DQ>(code, nested_code, q);
    for (int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * THREADS)
        out[i] = dequant_one<BITS, DQ>(q, code, nested_code, i, block_shift, nested_shift);
}

// k with 1 << k == v, else -1.
int log2_exact(int v)
{
    for (int k = 0; k < 31; k++)
        if (v == 1 << k) return k;
    return -1;
}

// As many CTAs as the device holds at once, fewer when there is less work (at least one).
template <typename Kernel> unsigned grid_for(Kernel kernel, int64_t ctas_of_work)
{
    int device, sms, per_sm;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, 0));
    int64_t resident = (int64_t)sms * per_sm;
    return (unsigned)(ctas_of_work < 1 ? 1 : ctas_of_work < resident ? ctas_of_work : resident);
}

template <int BITS, bool DQ>
void launch(void *out, const kc_quant_blocks *q, int64_t n, int block_shift, int nested_shift, cudaStream_t stream)
{
    if ((uintptr_t)q->codes % sizeof(typename group_word<BITS>::type) == 0 && (uintptr_t)out % sizeof(uint4) == 0) {
        int64_t tiles = (n / GROUP + TILE - 1) / TILE;
        unsigned grid = grid_for(dequant_groups<BITS, DQ>, (tiles + WARPS - 1) / WARPS);
        dequant_groups<BITS, DQ><<<grid, THREADS, 0, stream>>>((uint4 *)out, *q, n, block_shift, nested_shift);
    } else {
        unsigned grid = grid_for(dequant_elements<BITS, DQ>, (n + THREADS - 1) / THREADS);
        dequant_elements<BITS, DQ><<<grid, THREADS, 0, stream>>>((bf16 *)out, *q, n, block_shift, nested_shift);
    }
    CUDA_LAUNCHED();
}

} // namespace

extern "C" void kc_dequant_bf16(void *out, const kc_quant_blocks *q, int64_t n, cudaStream_t stream)
{
    int block_shift = log2_exact(q->blocksize), nested_shift = q->absmax ? 0 : log2_exact(q->nested_blocksize);
    if ((q->bits != 4 && q->bits != 8) || block_shift < GROUP_SHIFT || nested_shift < 0)
        sl_fatal("kc_dequant_bf16: unsupported blocks: %d bits, blocksize %d, nested blocksize %d (expected 4 or 8 "
                 "bits, a power-of-two blocksize of at least %d and a power-of-two nested blocksize)",
                 q->bits, q->blocksize, q->nested_blocksize, GROUP);
    if (n <= 0) return;
    void (*const variants[2][2])(void *, const kc_quant_blocks *, int64_t, int, int, cudaStream_t) = {
        {launch<4, false>, launch<4, true>}, {launch<8, false>, launch<8, true>}};
    variants[q->bits == 8][q->absmax == NULL](out, q, n, block_shift, nested_shift, stream);
}
