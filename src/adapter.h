/* adapter: the trained adapter file (shardlora_kind "adapter"): every LoRA A/B as a full logical
 * tensor under /lora/..., the classification head at /score/weight, and attributes that say how
 * to apply them. Written and read collectively: each rank moves only its shard. */
#ifndef SL_ADAPTER_H
#define SL_ADAPTER_H

#include <hdf5.h>

#include "config.h"
#include "lora.h"
#include "model.h"

typedef struct {
    sl_lora lora;
    int num_labels;
    char task[16];
} adapter_info;

/* The attributes that say how to apply the adapters (task, LoRA shape, base model). */
void adapter_write_attributes(hid_t file, const sl_model *m, const sl_config *cfg, const char *kind);
/* Collective: write the model's trainable pools (their current shards) to path. */
void adapter_write(const sl_model *m, const sl_config *cfg, const char *path, const char *kind);
/* Read the attributes of an adapter file (calling rank only; errors name the file). */
void adapter_read_info(const char *path, adapter_info *info);
/* Collective: fill the model's trainable shards from an adapter file whose shapes must match. */
void adapter_load(sl_model *m, const char *path);

#endif
