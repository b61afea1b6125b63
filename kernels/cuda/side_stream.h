// side_stream: a stream beside the compute stream (collectives, activation copies), ordered
// against it by events. Work issued on it first waits (on the GPU) for the compute issued before
// it, and leaves an event, its ticket, that compute reading its output waits for; the host waits
// only where it asks to (kc_side_host_wait).
#ifndef SL_CUDA_SIDE_STREAM_H
#define SL_CUDA_SIDE_STREAM_H

#include <cuda_runtime_api.h>
#include <stdint.h>

// Tickets name events in a ring; waiting on a ticket whose slot was reused waits for later work
// of the same stream, which is only stricter.
enum { KC_TICKET_SLOTS = 512 };

typedef struct {
    cudaStream_t stream;
    cudaEvent_t compute_done; // the compute issued before the side work
    cudaEvent_t tickets[KC_TICKET_SLOTS];
    int64_t issued;
} kc_side_stream;

void kc_side_open(kc_side_stream *s);
void kc_side_close(kc_side_stream *s); // waits for the side stream first
// Order the side stream after the compute issued so far.
void kc_side_after_compute(kc_side_stream *s);
// A ticket (> 0) for the side work issued so far.
int64_t kc_side_ticket(kc_side_stream *s);
// The compute stream waits for a ticket; 0 means nothing to wait for.
void kc_side_wait(const kc_side_stream *s, int64_t ticket);
// The host waits for a ticket (to write a host buffer the side work reads); 0: nothing.
void kc_side_host_wait(const kc_side_stream *s, int64_t ticket);

#endif
