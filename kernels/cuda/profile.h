/* profile: where a run's GPU time goes, per part of the step, from CUDA events recorded around
 * each backend call on the compute stream (no synchronisation until the report). On when the
 * environment sets SHARDLORA_PROFILE=1; the report is printed at exit by rank 0. */
#ifndef SL_CUDA_PROFILE_H
#define SL_CUDA_PROFILE_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PROF_GEMM, PROF_LORA, PROF_ATTENTION, PROF_DEQUANT, PROF_ELEMENTWISE, PROF_LOGITS, PROF_LOSS, PROF_OPTIMIZER,
    PROF_TRANSFER,
    PROF_COMM, PROF_OFFLOAD, PROF_PARTS
} prof_part;

/* Returns a token for prof_end, or -1 when profiling is off. site names the caller (a string
 * literal; the report splits each part by site). PROF_COMM and PROF_OFFLOAD are timed on their own
 * streams (communication; activation copies), beside the compute stream's parts, so they are
 * reported apart from their sum. */
int prof_begin(prof_part part, const char *site, cudaStream_t s);
void prof_end(int token, cudaStream_t s);
/* The end of an optimizer step: the report covers the whole steps after the first (it waits for
 * nothing). */
void prof_mark_step(void);
/* Log the milliseconds of each part per step (waits for the GPU). */
void prof_report(void);

#ifdef __cplusplus
}
#endif

#endif
