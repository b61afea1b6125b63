/* fsdp: flat units of weights sharded across ranks (FSDP FULL_SHARD / ZeRO-3).
 *
 * A unit (one decoder layer, the embedding, or the head) holds pools. A pool concatenates its
 * member tensors into one flat float buffer, padded so that every rank owns an equal contiguous
 * range (its shard). Each rank reads and writes only its range of the files; before use a pool is
 * all-gathered into the logical layout and released afterwards. The frozen pool holds the base
 * weights; the trainable pool holds LoRA adapters and trainable heads, whose gradients are
 * reduce-scattered back to their owners. Quantized base weights (see quant.h) are sharded in
 * whole quantization blocks and dequantized into the frozen pool's gathered layout. */
#ifndef SL_FSDP_H
#define SL_FSDP_H

#include <hdf5.h>
#include <stdint.h>

#include "comm.h"
#include "qpool.h"
#include "staging.h"
#include "weights.h"

#define FSDP_MAX_MEMBERS 24

/* How long gathered base weights stay (--shard): full releases a unit after each use (ZeRO-3:
 * gathered again for backward); grad_op keeps every unit gathered until the optimizer step, so
 * forward's gather serves backward and the micro-steps; none replicates the base: gathered once,
 * kept for the run, never communicated again. Adapters are gathered per use in every mode. */
typedef enum { KEEP_PER_USE, KEEP_PER_STEP, KEEP_FOR_RUN } fsdp_keep;

typedef struct {
    char path[112];   /* the dataset this member is stored as */
    int ndims;
    int64_t dims[2];
    int64_t offset;   /* element offset in the gathered buffer */
    int64_t numel;
} fsdp_member;

typedef struct {
    int n_members;
    fsdp_member members[FSDP_MAX_MEMBERS];
    int64_t numel;       /* logical elements */
    int64_t shard_numel; /* elements each rank owns (numel padded to a multiple of world) */
    float *shard;        /* this rank's part on the host, for the files (owned, or a view into a flat buffer) */
    /* This rank's part where the backend computes: trainable pools keep their fp32 master values
     * there (a view into the optimizer's flat buffer); frozen pools an act-typed copy made at load
     * (the host shard itself on the CPU backend). */
    float *shard_dev;
    void *shard_act, *shard_act_buf;
    void *cast_buf;      /* trainable pools: the act-typed shard sent into the all-gather */
    void *dev;           /* the gathered pool where the backend computes (act-typed), or NULL */
    void *dev_buf;       /* the buffer behind dev when it was really gathered (dev is a view otherwise) */
    comm_ticket gather_ticket;
    int gather_in_flight;
    float *grad_dev;     /* trainable pools: the full gradient, accumulated where the backend computes */
    float *grad_shard;   /* trainable pools: where the reduce-scatter delivers this rank's part */
    comm_ticket grad_ticket;
    fsdp_keep keep;      /* when fsdp_release really frees the gathered buffer */
    int frozen;          /* its values never change (base weights) */
    int owns_shard;
} fsdp_pool;

typedef struct {
    char name[32];
    fsdp_pool frozen, train; /* base weights kept in float; adapters and trainable heads */
    qpool quant;             /* base weights kept quantized (the linear layers under --quant) */
} fsdp_unit;

/* Add a member; call fsdp_pool_plan when all are added. */
void fsdp_pool_add(fsdp_pool *p, const char *path, int ndims, const int64_t *dims);
void fsdp_pool_plan(fsdp_pool *p);
/* Collective: read this rank's range of every member (a trainable pool's, kept in shard);
 * non-finite values are reported with the dataset and index, and end every rank. */
void fsdp_pool_load(fsdp_pool *p, hid_t file);
/* Collective: the same for a frozen pool (base weights), read piece by piece on every thread
 * straight to where the backend computes: the host shard on the CPU backend; elsewhere the
 * act-typed shard_act, through the pinned buffers of st, keeping no host copy. The first
 * non-finite value is noted in bad, for the caller to agree on once all pools are read (an
 * agreement per pool would hold every rank to the slowest at each). */
void fsdp_pool_load_frozen(fsdp_pool *p, hid_t file, staging *st, weights_first_bad *bad);
/* Collective: write this rank's range of every member into existing datasets. */
void fsdp_pool_write(const fsdp_pool *p, hid_t file);
/* Collective: the same with the members stored under prefix + path, from or into shard (a
 * buffer of shard_numel elements): checkpoints keep optimizer moments beside the weights. */
void fsdp_pool_write_at(const fsdp_pool *p, hid_t file, const char *prefix, const float *shard);
void fsdp_pool_read_at(const fsdp_pool *p, hid_t file, const char *prefix, float *shard);
/* This rank's part of each member's checksum (sums[i] += ...); summed over ranks it is a checksum
 * of the whole logical tensor, the same for any sharding. */
void fsdp_pool_checksums(const fsdp_pool *p, const float *shard, uint64_t *sums);

/* Collective: make the whole pool available where the backend computes (dev). prefetch starts
 * the collectives only (NCCL: on the communication stream, overlapping the compute issued after
 * it); gather finishes them, or does all of it when nothing was prefetched. */
void fsdp_prefetch(fsdp_pool *p);
void fsdp_gather(fsdp_pool *p);
void fsdp_release(fsdp_pool *p);
/* Collective: start summing the full gradient over ranks into this rank's grad_shard;
 * fsdp_grad_wait orders the compute after it. */
void fsdp_reduce_grad(fsdp_pool *p);
void fsdp_grad_wait(fsdp_pool *p);
/* Where the backend computes: the gathered data of the member stored at path (act-typed), or NULL. */
const void *fsdp_member_dev(const fsdp_pool *p, const char *path);
/* Trainable pools: zero the full gradient the backend accumulates into (allocated once). */
void fsdp_grad_zero(fsdp_pool *p);
const fsdp_member *fsdp_find(const fsdp_pool *p, const char *path);
void fsdp_pool_free(fsdp_pool *p);

/* A whole unit: prefetch, gather or release all its pools; a frozen tensor where the backend computes. */
void fsdp_unit_prefetch(fsdp_unit *u);
void fsdp_unit_gather(fsdp_unit *u);
/* Gather u for use now and start gathering next (or NULL), the unit used after it, so next's
 * collectives overlap u's compute (double buffering: two units gathered at most). */
void fsdp_unit_gather_ahead(fsdp_unit *u, fsdp_unit *next);
void fsdp_unit_release(fsdp_unit *u);
/* End of an optimizer step: free what KEEP_PER_STEP kept. */
void fsdp_unit_step_done(fsdp_unit *u);

/* Gathered bytes held now, and the most held at once since the start (weights for compute). */
void fsdp_account_gathered(int64_t delta);
int64_t fsdp_gathered_peak(void);
const void *fsdp_unit_dev(const fsdp_unit *u, const char *path);
void fsdp_unit_free(fsdp_unit *u);

#endif
