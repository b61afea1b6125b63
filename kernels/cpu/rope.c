/* rope: rotary position embedding, Hugging Face convention (element i pairs with i + head_dim/2).
 * Frequencies and angles are formed in double (pos * freq loses digits in float at long positions),
 * then rounded into the (cos, sin) table that both backends apply. The scaled types follow the
 * formulas of transformers' rope init functions (linear: positions / factor; llama3: Llama 3.1's
 * wavelength bands; yarn: the YaRN paper's ramp between interpolated and original frequencies). */
#include "kernels.h"

#include <math.h>

/* llama3: long wavelengths (beyond original / low_freq_factor) are slowed by factor, short ones
 * (below original / high_freq_factor) kept, and the band between blended linearly in
 * original / wavelength. */
static double llama3_freq(double f, const k_rope_params *r)
{
    const double wavelen = 2 * M_PI / f, context = r->original_max_positions;
    if (wavelen < context / r->high_freq_factor) return f;
    if (wavelen > context / r->low_freq_factor) return f / r->factor;
    const double smooth = (context / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
    return (1 - smooth) * f / r->factor + smooth * f;
}

/* yarn: the dimension at which a frequency turns `rotations` times over the original context. */
static double yarn_dim(double rotations, int head_dim, const k_rope_params *r)
{
    return head_dim * log(r->original_max_positions / (rotations * 2 * M_PI)) / (2 * log(r->theta));
}

void k_rope_inv_freq(double *inv_freq, int head_dim, const k_rope_params *r)
{
    const int half = head_dim / 2;
    double low = 0, high = 0;
    if (r->type == K_ROPE_YARN) {
        low = yarn_dim(r->beta_fast, head_dim, r), high = yarn_dim(r->beta_slow, head_dim, r);
        if (r->truncate) low = floor(low), high = ceil(high);
        if (low < 0) low = 0;
        if (high > head_dim - 1) high = head_dim - 1;
        if (low == high) high += 0.001; /* a ramp of zero width */
    }
    for (int i = 0; i < half; i++) {
        const double f = pow(r->theta, -2.0 * i / head_dim);
        switch (r->type) {
        case K_ROPE_DEFAULT: inv_freq[i] = f; break;
        case K_ROPE_LINEAR: inv_freq[i] = f / r->factor; break;
        case K_ROPE_LLAMA3: inv_freq[i] = llama3_freq(f, r); break;
        case K_ROPE_YARN: {
            /* ramp 0 below `low` (fast dimensions keep f), 1 above `high` (slow ones take f / factor) */
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            inv_freq[i] = f / r->factor * ramp + f * (1 - ramp);
            break;
        }
        }
    }
}

void k_rope_table(float *cos_sin, int max_pos, int head_dim, const k_rope_params *r)
{
    const int half = head_dim / 2;
    double inv_freq[half];
    k_rope_inv_freq(inv_freq, head_dim, r);
    const double scale = r->type == K_ROPE_YARN ? r->attention_factor : 1.0;
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            double angle = p * inv_freq[i];
            cos_sin[((int64_t)p * half + i) * 2] = (float)(scale * cos(angle));
            cos_sin[((int64_t)p * half + i) * 2 + 1] = (float)(scale * sin(angle));
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
