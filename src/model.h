/* model: a LLaMA-family model (LLaMA, Mistral, Qwen2) whose frozen weights are sharded in FSDP
 * units: unit 0 the token embedding, units 1..L the decoder layers, unit L+1 the final norm and
 * the LM head (with tied embeddings the head reuses unit 0). */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stdint.h>

#include "config.h"
#include "fsdp.h"
#include "lora.h"
#include "modelcfg.h"
#include "quant.h"

typedef struct {
    sl_model_config cfg;
    int n_tensors;
    sl_tensor_spec *tensors;
    int n_units;
    fsdp_unit *units;
    int64_t bytes_read;   /* model bytes this rank read from the file */
    const sl_lora *lora;  /* adapters on the layers, or NULL */
    int num_labels;       /* > 0: sequence classification with a trainable /score/weight head */
} sl_model;

#define SCORE_PATH "/score/weight"

/* A packed batch: T tokens of n_seqs sequences back to back. target[t] is the token predicted
 * at row t, or -1 where no prediction counts. */
typedef struct {
    int T, n_seqs;
    int32_t *ids, *pos, *target;
    int32_t *seq_start; /* n_seqs + 1 */
} sl_batch;

/* Check the model file on the calling rank: structure, /config (read into cfg), every tensor
 * present with its shape and a float type, or as a quantized group (all in one format). Errors
 * are fatal and name the file and the dataset. */
void model_validate(const char *path, sl_model_config *cfg);
/* The base format of a run from its options and its model file (calling rank only); NULL or a
 * message naming what does not fit. */
const char *model_format_of_run(const sl_config *cfg, quant_format *fmt);
/* Pre-quantized model files: 1 and the stored format, else 0 (calling rank only). */
int model_stored_format(const char *path, quant_format *fmt);
/* The base format of a run: a pre-quantized file's own, else the --quant options'. NULL or a
 * message when the options ask for something else than the file holds. */
const char *model_choose_format(const char *path, const quant_format *asked, quant_format *fmt);
/* The retention of gathered base weights that --shard names (full, grad_op, none). */
fsdp_keep model_keep_of(const char *shard);
/* Collective: read this rank's shard of every unit, quantizing the decoder layers' linear weights
 * in fmt (QUANT_NONE: kept in float); gathered weights are kept as `keep` says. */
void model_load(sl_model *m, const char *path, const quant_format *fmt, fsdp_keep keep);
/* Collective: model_load of a run's --model in the format model_format_of_run gives (checked on
 * rank 0 before), kept as its --shard says. */
void model_load_of_run(sl_model *m, const sl_config *cfg);
void model_free(sl_model *m);

/* Plan the trainable pools: adapters on every layer unit, and for sequence classification a
 * classification head [num_labels, hidden] in the head unit. */
void model_add_trainable(sl_model *m, const sl_lora *lora, int num_labels);
/* Elements of this rank's trainable shards, all units together (the optimizer's flat length). */
int64_t model_trainable_shard_numel(const sl_model *m);
/* Point each unit's trainable shard into flat buffers of model_trainable_shard_numel elements: host
 * (what files read and write), dev (the values where the backend computes: host itself on the CPU
 * backend) and grad (where the reduce-scatter delivers the gradient, on the backend; or NULL). */
void model_bind_trainable(sl_model *m, float *host, float *dev, float *grad);

/* The LM head weights of a gathered head unit (the embedding table when tied), where the backend
 * computes. */
const void *model_lm_head(const sl_model *m);


#endif
