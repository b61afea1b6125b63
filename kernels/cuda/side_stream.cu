// side_stream: events that order a side stream and the compute stream both ways.
#include "cuda/cuda_common.cuh"
#include "cuda/side_stream.h"

void kc_side_open(kc_side_stream *s)
{
    s->issued = 0;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&s->compute_done, cudaEventDisableTiming));
    for (int i = 0; i < KC_TICKET_SLOTS; i++) CUDA_CHECK(cudaEventCreateWithFlags(&s->tickets[i], cudaEventDisableTiming));
}

void kc_side_close(kc_side_stream *s)
{
    CUDA_CHECK(cudaStreamSynchronize(s->stream));
    for (int i = 0; i < KC_TICKET_SLOTS; i++) cudaEventDestroy(s->tickets[i]);
    cudaEventDestroy(s->compute_done);
    cudaStreamDestroy(s->stream);
}

void kc_side_after_compute(kc_side_stream *s)
{
    CUDA_CHECK(cudaEventRecord(s->compute_done, k_cuda_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(s->stream, s->compute_done, 0));
}

int64_t kc_side_ticket(kc_side_stream *s)
{
    CUDA_CHECK(cudaEventRecord(s->tickets[s->issued % KC_TICKET_SLOTS], s->stream));
    return ++s->issued; // tickets count from 1
}

void kc_side_wait(const kc_side_stream *s, int64_t ticket)
{
    if (ticket > 0) CUDA_CHECK(cudaStreamWaitEvent(k_cuda_stream(), s->tickets[(ticket - 1) % KC_TICKET_SLOTS], 0));
}

void kc_side_host_wait(const kc_side_stream *s, int64_t ticket)
{
    if (ticket > 0) CUDA_CHECK(cudaEventSynchronize(s->tickets[(ticket - 1) % KC_TICKET_SLOTS]));
}
