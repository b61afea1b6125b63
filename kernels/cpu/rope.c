/* rope: rotary position embedding, Hugging Face convention (element i pairs with i + head_dim/2).
 * Angles are formed in double (pos * freq loses digits in float at long positions), then rounded
 * into the (cos, sin) table that both backends apply. */
#include "kernels.h"

#include <math.h>

void k_rope_table(float *cos_sin, int max_pos, int head_dim, double theta)
{
    const int half = head_dim / 2;
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            double angle = p * pow(theta, -2.0 * i / head_dim);
            cos_sin[((int64_t)p * half + i) * 2] = (float)cos(angle);
            cos_sin[((int64_t)p * half + i) * 2 + 1] = (float)sin(angle);
        }
}

void k_rope(float *x, const int32_t *pos, int T, int n_heads, int head_dim, const float *cos_sin, int inverse)
{
    int half = head_dim / 2, width = n_heads * head_dim;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *row = x + (int64_t)t * width;
        const float *cs = cos_sin + (int64_t)pos[t] * half * 2;
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = inverse ? -cs[2 * i + 1] : cs[2 * i + 1];
            for (int h = 0; h < n_heads; h++) {
                float *a = row + h * head_dim + i, *b = a + half;
                float xa = *a, xb = *b;
                *a = xa * c - xb * s;
                *b = xb * c + xa * s;
            }
        }
    }
}
