/* shardlora-merge: the pieces of the merge (inputs, the folded tensors, the two outputs). */
#ifndef SL_MERGE_H
#define SL_MERGE_H

#include <hdf5.h>
#include <stdint.h>

#include "adapter.h"
#include "dtype.h"
#include "modelcfg.h"
#include "quant.h"

typedef struct {
    const char *model, *adapter, *out; /* MODEL.h5 ADAPTER.h5 OUT.h5 */
    const char *hf_dir;                /* --hf DIR, or NULL */
    sl_dtype dtype;                    /* --dtype of both outputs */
    int64_t max_shard_bytes;           /* --max-shard-size */
} merge_options;

/* One tensor of the merged model: a base tensor (with its adapter folded in when it has one) or
 * the adapter's classification head. */
typedef struct {
    sl_tensor_spec spec;
    int adapted;       /* a projection that carries a LoRA adapter */
    int head;          /* the classification head, /score/weight of the adapter */
    char hf_name[128]; /* its name in the Hugging Face checkpoint; "" when it has none there */
} merge_tensor;

/* The two inputs as every rank reads them (each rank opens both files itself). */
typedef struct {
    const merge_options *o;
    hid_t model, adapter;
    sl_model_config cfg;
    adapter_info info;     /* task, num_labels, r, alpha and the scale */
    int quantized;         /* the base's projections are stored quantized */
    quant_format quant;
    merge_tensor *tensors; /* the output's tensors in file order */
    int n_tensors;
} merge_inputs;

/* Rank 0, inside rt_rank0_checks: every problem with the inputs and options, named. */
void merge_check(void *options);
void merge_open(merge_inputs *in, const merge_options *o);
void merge_close(merge_inputs *in);

/* Tensor t of the merged model as float32 into x (its spec's elements): the base tensor
 * (dequantized when stored quantized) plus scale * B A where it carries an adapter. */
void merge_tensor_values(const merge_inputs *in, const merge_tensor *t, float *x);

/* The shardlora model file OUT, written collectively under OUT.partial. */
typedef struct merge_h5 merge_h5;
merge_h5 *h5out_open(const merge_inputs *in);
/* Collective: every rank calls it for the same tensors in the same order; x (float32) is used on
 * the rank that owns t (mine), the others write nothing. */
void h5out_write(merge_h5 *h, const merge_tensor *t, int mine, const float *x);
/* Collective: close, and rank 0 renames OUT.partial to OUT. */
void h5out_finish(merge_h5 *h);

/* The Hugging Face checkpoint in DIR: shards written by every rank at planned offsets. */
typedef struct merge_hf merge_hf;
merge_hf *hfout_open(const merge_inputs *in);
/* This rank's tensor t, as float32 (converted to --dtype here). */
void hfout_write(merge_hf *h, const merge_tensor *t, const float *x);
/* Collective: every shard flushed, then rank 0 moves them into place and writes config.json and
 * model.safetensors.index.json (with several shards). Returns the shard count. */
int hfout_finish(merge_hf *h);

/* A partial output to remove if this process ends with an error before merge_outputs_done (a
 * one-rank run; an error on several ranks aborts them all and leaves the *.partial names). */
void merge_remove_on_error(const char *path);
void merge_outputs_done(void);

/* config.json of the merged model, in transformers' layout for its architecture (malloc'd text). */
char *config_json_text(const merge_inputs *in);

#endif
