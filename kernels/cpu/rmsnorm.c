/* rmsnorm: LLaMA's RMSNorm, out = x * rstd * w with rstd = 1/sqrt(mean(x^2) + eps).
 * Row statistics are accumulated in double and stored as float. */
#include "kernels.h"

#include <math.h>

/* Columns per task in the weight-gradient reduction (see linear.c). */
#define DW_COLS 64

void k_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int T, int D, float eps)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (int64_t)t * D;
        float *yr = out + (int64_t)t * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / D + eps));
        for (int i = 0; i < D; i++) yr[i] = xr[i] * r * w[i];
        rstd[t] = r;
    }
}

/* With g = w * dout: dx = rstd * (g - x * rstd^2 * mean(g * x)), since d rstd / dx = -rstd^3 x / D. */
static void input_grad(float *dx, const float *dout, const float *x, const float *w, const float *rstd,
                       int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (int64_t)t * D, *gr = dout + (int64_t)t * D;
        float *dxr = dx + (int64_t)t * D;
        double dot = 0.0;
        for (int i = 0; i < D; i++) dot += (double)w[i] * gr[i] * xr[i];
        float r = rstd[t];
        float c = (float)(dot / D) * r * r;
        for (int i = 0; i < D; i++) dxr[i] += r * (w[i] * gr[i] - xr[i] * c);
    }
}

/* dw[i] += sum_t dout[t, i] * x[t, i] * rstd[t], summed in row order for any thread count. */
static void weight_grad(float *dw, const float *dout, const float *x, const float *rstd, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int i0 = 0; i0 < D; i0 += DW_COLS) {
        int nc = D - i0 < DW_COLS ? D - i0 : DW_COLS;
        double acc[DW_COLS] = {0};
        for (int t = 0; t < T; t++) {
            const float *xr = x + (int64_t)t * D + i0, *gr = dout + (int64_t)t * D + i0;
            for (int j = 0; j < nc; j++) acc[j] += (double)gr[j] * xr[j] * rstd[t];
        }
        for (int j = 0; j < nc; j++) dw[i0 + j] += (float)acc[j];
    }
}

void k_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                   const float *rstd, int T, int D)
{
    if (dx) input_grad(dx, dout, x, w, rstd, T, D);
    if (dw) weight_grad(dw, dout, x, rstd, T, D);
}
