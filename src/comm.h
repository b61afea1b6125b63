/* comm: the collectives shardlora uses, over MPI on the CPU backend (NCCL on the CUDA backend). */
#ifndef SL_COMM_H
#define SL_COMM_H

#include <stdint.h>

/* dst[r * count + i] = rank r's src[i], on every rank. */
void comm_allgather_f32(float *dst, const float *src, int64_t count);
/* The same for raw bytes (quantized codes and statistics). */
void comm_allgather_bytes(void *dst, const void *src, int64_t bytes);
/* dst[i] = sum over ranks r of rank r's src[rank * count + i] (src holds world * count). */
void comm_reduce_scatter_sum_f32(float *dst, const float *src, int64_t count);
/* Bytes this rank received from all-gathers and sent into reduce-scatters since the start, so a
 * run can report what each sharding strategy really communicates per step. */
typedef struct {
    int64_t gathered, reduced;
} comm_traffic;
comm_traffic comm_traffic_so_far(void);

/* In-place sums over all ranks. */
void comm_allreduce_sum_f64(double *buf, int64_t n);
void comm_allreduce_sum_i64(int64_t *buf, int64_t n);
void comm_allreduce_max_i64(int64_t *buf, int64_t n);

#endif
