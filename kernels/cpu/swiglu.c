/* swiglu: the LLaMA MLP gate, out = silu(gate) * up with silu(g) = g * sigmoid(g). */
#include "kernels.h"

#include <math.h>

static inline float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

void k_swiglu_fwd(float *out, const float *gate, const float *up, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

/* d silu / dg = sig * (1 + g * (1 - sig)). */
void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], sg = sigmoid(g);
        if (dgate) dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
        if (dup) dup[i] += dout[i] * g * sg;
    }
}
