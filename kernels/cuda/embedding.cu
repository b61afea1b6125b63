// embedding: copies of whole bf16 rows chosen by an index: the embedding lookup (a gather from the
// table by token id) and the pooling gather and scatter. Bits move unchanged, so copies are exact.
#include "ops.h"
#include "vec.cuh"

namespace {

// One block per indexed row; V is a 16-byte vector of eight bf16 or a single one (bit patterns).
template <class V>
__global__ void copy_rows_kernel(V *dst, const V *src, const int32_t *rows, int row_len, bool scatter)
{
    const int64_t i = blockIdx.x, r = rows[i];
    V *to = dst + (scatter ? r : i) * row_len;
    const V *from = src + (scatter ? i : r) * row_len;
    for (int c = threadIdx.x; c < row_len; c += blockDim.x) to[c] = from[c];
}

template <class V>
void copy_rows_launch(void *dst, const void *src, const int32_t *rows, int n, int row_len, bool scatter,
                      cudaStream_t s)
{
    const int threads = row_len < 256 ? (row_len + 31) / 32 * 32 : 256;
    copy_rows_kernel<V><<<n, threads, 0, s>>>(static_cast<V *>(dst), static_cast<const V *>(src), rows, row_len,
                                              scatter);
    CUDA_LAUNCHED();
}

void copy_rows(void *dst, const void *src, const int32_t *rows, int n, int D, bool scatter, cudaStream_t s)
{
    if (n <= 0 || D <= 0) return;
    if (D % 8 == 0 && kc_aligned16(dst) && kc_aligned16(src))
        copy_rows_launch<uint4>(dst, src, rows, n, D / 8, scatter, s);
    else
        copy_rows_launch<uint16_t>(dst, src, rows, n, D, scatter, s);
}

} // namespace

extern "C" void kc_embedding_fwd(void *out, const void *table, const int32_t *ids, int T, int D, cudaStream_t s)
{
    copy_rows(out, table, ids, T, D, false, s);
}

extern "C" void kc_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int D, cudaStream_t s)
{
    copy_rows(dst, src, rows, n, D, false, s);
}

extern "C" void kc_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int D, cudaStream_t s)
{
    copy_rows(dst, src, rows, n, D, true, s);
}
