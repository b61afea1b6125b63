/* swiglu: the LLaMA MLP gate, out = silu(gate) * up with silu(g) = g * sigmoid(g). */
#include "kernels.h"

#include <math.h>

static inline float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

void k_swiglu_fwd(float *out, const float *gate, const float *up, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

/* d silu / dg = sig * (1 + g * (1 - sig)). Each element's inputs are read before its outputs are
 * written, so without accumulate dgate and dup may be gate and up themselves. */
void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n,
                  int accumulate)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i], u = up[i], d = dout[i], sg = sigmoid(g);
        const float dg = d * u * sg * (1.0f + g * (1.0f - sg)), du = d * g * sg;
        if (dgate) dgate[i] = (accumulate ? dgate[i] : 0.0f) + dg;
        if (dup) dup[i] = (accumulate ? dup[i] : 0.0f) + du;
    }
}
