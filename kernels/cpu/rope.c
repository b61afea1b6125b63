/* rope: rotary position embedding, Hugging Face convention (element i pairs with i + head_dim/2).
 * Angles are formed in double (pos * freq loses digits in float at long positions), then rounded. */
#include "kernels.h"
#include "runtime.h"

#include <math.h>
#include <stdlib.h>

void k_rope(float *x, const int32_t *pos, int T, int n_heads, int head_dim, double theta, int inverse)
{
    int half = head_dim / 2, width = n_heads * head_dim;
    double *inv_freq = sl_malloc((size_t)half * sizeof(double), "rope frequencies");
    for (int i = 0; i < half; i++) inv_freq[i] = pow(theta, -2.0 * i / head_dim);
    double dir = inverse ? -1.0 : 1.0;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *row = x + (int64_t)t * width;
        for (int i = 0; i < half; i++) {
            double angle = pos[t] * inv_freq[i];
            float c = (float)cos(angle), s = (float)(dir * sin(angle));
            for (int h = 0; h < n_heads; h++) {
                float *a = row + h * head_dim + i, *b = a + half;
                float xa = *a, xb = *b;
                *a = xa * c - xb * s;
                *b = xb * c + xa * s;
            }
        }
    }
    free(inv_freq);
}
