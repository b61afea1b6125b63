/* fsdp: flat units of frozen weights, sharded across ranks (FSDP FULL_SHARD / ZeRO-3).
 *
 * A unit (one decoder layer, the embedding, or the head) concatenates its tensors into one flat
 * float buffer, padded so that every rank owns an equal contiguous range. Each rank reads only
 * its range from the model file; before use the unit is all-gathered into the logical layout and
 * released afterwards. Quantized weights (issue: QLoRA base) add pools of codes and statistics
 * sharded in whole quantization blocks beside this float pool. */
#ifndef SL_FSDP_H
#define SL_FSDP_H

#include <hdf5.h>
#include <stdint.h>

#include "modelcfg.h"

#define FSDP_MAX_MEMBERS 16

typedef struct {
    int tensor;       /* index in the model's tensor table */
    int64_t offset;   /* element offset in the gathered buffer */
    int64_t numel;
} fsdp_member;

typedef struct {
    char name[32];
    int n_members;
    fsdp_member members[FSDP_MAX_MEMBERS];
    int64_t numel;       /* logical elements */
    int64_t shard_numel; /* elements each rank owns (numel padded to a multiple of world) */
    float *shard;        /* this rank's part */
    float *full;         /* the gathered unit, or NULL */
    int keep_gathered;   /* sharding strategies that keep weights gathered */
} fsdp_unit;

void fsdp_unit_init(fsdp_unit *u, const char *name, const sl_tensor_spec *tensors, const int *ids, int n);
/* Collective: read this rank's range of every member from the model file; non-finite values
 * anywhere are reported (with the tensor and index) and end every rank. */
void fsdp_unit_load(fsdp_unit *u, hid_t file, const sl_tensor_spec *tensors);
/* Collective: make the whole unit available; returns the gathered buffer. */
const float *fsdp_gather(fsdp_unit *u);
void fsdp_release(fsdp_unit *u);
/* The gathered data of one member tensor, or NULL when the unit does not hold it. */
const float *fsdp_tensor(const fsdp_unit *u, int tensor);
void fsdp_unit_free(fsdp_unit *u);

#endif
