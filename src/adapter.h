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

/* An adapter applied to a loaded model without training it (eval, generate): its attributes (the
 * model points at info.lora, so this must outlive the model's use), this rank's shards on the host
 * and their backend copy. */
typedef struct {
    adapter_info info;
    float *host;
    void *dev;
} adapter_applied;
/* Collective: plan the model's adapters (and head) as the file says, read this rank's shards and
 * mirror them where the backend computes. */
void adapter_apply(sl_model *m, const char *path, adapter_applied *a);
/* The same for trainable state of a given shape (lora NULL: no adapters; num_labels 0: no head),
 * read from path: a merged model file's classification head. lora must outlive the model. */
void adapter_apply_state(sl_model *m, const char *path, const sl_lora *lora, int num_labels, adapter_applied *a);
void adapter_applied_free(adapter_applied *a);

#endif
