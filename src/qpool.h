/* qpool: the quantized part of a unit: its linear weights as bitsandbytes-compatible blocks
 * (NF4/FP4/INT8, optionally double-quantized), sharded in whole blocks (whole groups of 256
 * blocks with double quantization) so that every rank quantizes, stores and sends only its own
 * blocks and the gathered result is bit-identical for any number of ranks. Gathering all-gathers
 * the codes and statistics and dequantizes them into one float buffer for compute. */
#ifndef SL_QPOOL_H
#define SL_QPOOL_H

#include <hdf5.h>
#include <stdint.h>

#include "quant.h"
#include "staging.h"

#define QPOOL_MAX_MEMBERS 8

typedef struct {
    char path[112];
    int ndims;
    int64_t dims[2];
    int64_t numel;
    int64_t offset;      /* element offset in the dequantized buffer */
    int64_t block_start; /* first block in the pool's block space */
    float dq_offset;     /* double quantization: the mean block absmax, added back */
} qpool_member;

typedef struct {
    quant_format fmt;
    int n_members;
    qpool_member members[QPOOL_MAX_MEMBERS];
    int64_t numel;        /* dequantized elements */
    int64_t nblocks;      /* blocks, padded to a multiple of world (x 256 with DQ) */
    int64_t shard_blocks; /* blocks each rank owns */
    int64_t code_stride;  /* code bytes per block */
    /* this rank's blocks on the host (freed once they are where a backend off the host computes) */
    uint8_t *codes, *absmax_u8;
    float *absmax, *nested;
    /* The three arrays of blocks (codes; absmax or absmax_u8; nested absmax with double
     * quantization): this rank's where the backend computes (the host arrays on the CPU backend),
     * and all ranks' once gathered (views of the former when nothing is communicated). */
    const void *shard_dev[3];
    void *shard_buf[3];
    const void *blocks_dev[3];
    void *blocks_buf[3];
    int64_t gather_ticket;
    int gather_in_flight;
    void *dev;            /* the dequantized weights (act-typed) where the backend computes, or NULL */
    int keep;             /* an fsdp_keep (fsdp.h) */
} qpool;

void qpool_add(qpool *q, const char *path, int ndims, const int64_t *dims);
void qpool_plan(qpool *q, const quant_format *fmt);
/* Collective: read this rank's blocks of every member: as stored from a pre-quantized file (through
 * st's pinned buffers to a backend off the host), or quantized as they are read from float datasets
 * (the double-quantization offsets from one exact all-reduce; non-finite weights are reported). */
void qpool_load(qpool *q, hid_t file, staging *st);
/* Collective: gather codes and statistics on the backend and dequantize them there. prefetch
 * starts the gather only (see fsdp_prefetch). */
void qpool_prefetch(qpool *q);
void qpool_gather(qpool *q);
void qpool_release(qpool *q);
/* Free the dequantized buffer whatever q->keep says. */
void qpool_drop(qpool *q);
const void *qpool_member_dev(const qpool *q, const char *path);
/* Bytes of quantized data this rank holds. */
int64_t qpool_shard_bytes(const qpool *q);
void qpool_free(qpool *q);

#endif
