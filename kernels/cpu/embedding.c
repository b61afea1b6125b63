/* embedding: token ids to rows of the embedding table. */
#include "kernels.h"

#include <string.h>

void k_embedding_fwd(float *out, const float *table, const int32_t *ids, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        memcpy(out + (int64_t)t * D, table + (int64_t)ids[t] * D, (size_t)D * sizeof(float));
}
