/* linear: y = x W^T + b with the PyTorch weight layout W[N, K]; the GEMMs go to OpenBLAS. */
#include "kernels.h"

#include <cblas.h>

/* Columns per task in the bias-gradient reduction: wide enough to stream rows, narrow enough for
 * the partial sums to stay in registers or L1. */
#define DBIAS_COLS 64

void k_linear_fwd(float *out, const float *x, const float *w, const float *bias, int T, int K, int N,
                  float scale, int accumulate)
{
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            float *row = out + (int64_t)t * N;
            for (int n = 0; n < N; n++) row[n] = (accumulate ? row[n] : 0.0f) + bias[n];
        }
    }
    /* beta = 0 lets BLAS ignore whatever out held (even NaN) when there is nothing to keep. */
    float beta = (accumulate || bias) ? 1.0f : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, scale, x, K, w, K, beta, out, N);
}

/* dbias[n] += sum_t dout[t, n], in double and in row order, so the sum is the same for any number
 * of threads. */
static void bias_grad(float *dbias, const float *dout, int T, int N)
{
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += DBIAS_COLS) {
        int nc = N - n0 < DBIAS_COLS ? N - n0 : DBIAS_COLS;
        double acc[DBIAS_COLS] = {0};
        for (int t = 0; t < T; t++) {
            const float *row = dout + (int64_t)t * N + n0;
            for (int j = 0; j < nc; j++) acc[j] += row[j];
        }
        for (int j = 0; j < nc; j++) dbias[n0 + j] += (float)acc[j];
    }
}

void k_linear_bwd(float *dx, float *dw, float *dbias, const float *dout, const float *x, const float *w,
                  int T, int K, int N, float scale)
{
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, N, scale, dout, N, w, K, 1.0f, dx, K);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, T, scale, dout, N, x, K, 1.0f, dw, K);
    if (dbias) bias_grad(dbias, dout, T, N);
}
