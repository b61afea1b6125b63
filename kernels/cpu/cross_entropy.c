/* cross_entropy: token-level loss against integer targets; rows with target < 0 are ignored.
 * The softmax denominator is summed in double after subtracting the row maximum. */
#include "kernels.h"

#include <math.h>
#include <string.h>

/* Row maximum and log(sum(exp(logit - max))), so logsumexp = max + the second value. */
static void row_logsumexp(const float *row, int V, float *max_out, double *log_sum_out)
{
    float m = row[0];
    for (int j = 1; j < V; j++) m = row[j] > m ? row[j] : m;
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += exp((double)row[j] - m);
    *max_out = m;
    *log_sum_out = log(sum);
}

void k_cross_entropy_fwd(double *loss, const float *logits, const int32_t *target, int T, int V)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *row = logits + (int64_t)t * V;
        if (target[t] < 0) {
            loss[t] = 0.0;
            continue;
        }
        float m;
        double log_sum;
        row_logsumexp(row, V, &m, &log_sum);
        loss[t] = (double)m + log_sum - row[target[t]];
    }
}

void k_cross_entropy_bwd(float *dlogits, const float *logits, const int32_t *target, const float *weight,
                         int T, int V)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *row = logits + (int64_t)t * V;
        float *drow = dlogits + (int64_t)t * V;
        if (target[t] < 0) {
            memset(drow, 0, (size_t)V * sizeof(float));
            continue;
        }
        float m;
        double log_sum;
        row_logsumexp(row, V, &m, &log_sum);
        double wt = weight ? weight[t] : 1.0;
        /* The one-hot term is taken off in double: p - 1 cancels badly in float when p is near 1. */
        for (int j = 0; j < V; j++) {
            double p = exp((double)row[j] - m - log_sum);
            drow[j] = (float)(wt * (j == target[t] ? p - 1.0 : p));
        }
    }
}
