/* hf: a Hugging Face checkpoint directory as the importers read it (hf.c), and the reader of its
 * bitsandbytes 4-bit and 8-bit weights (bnb.c). */
#ifndef SL_IMPORT_HF_H
#define SL_IMPORT_HF_H

#include "import.h"
#include "quant_store.h"
#include "safetensors.h"

typedef struct hf_checkpoint hf_checkpoint;

/* One stored tensor: the shard holding it and its header entry. */
typedef struct {
    const st_file *shard;
    st_tensor t;
} hf_source;

/* Find a tensor by its Hugging Face name; 0 when the checkpoint does not hold it. */
int hf_find(const hf_checkpoint *ck, const char *name, hf_source *src);
/* "/model/layers/0/self_attn/q_proj/weight" -> "model.layers.0.self_attn.q_proj.weight" */
void hf_name(char *buf, size_t len, const char *path);
/* The file a message about a missing tensor should name (the index, or the one shard). */
const char *hf_listing(const hf_checkpoint *ck);

/* A bitsandbytes weight as transformers stores it. 4-bit (Linear4bit): the packed codes (uint8)
 * and, beside them, absmax, quant_map, nested_absmax, nested_quant_map (double quantization only)
 * and quant_state.bitsandbytes__nf4|fp4, a JSON object held as uint8 bytes. 8-bit (Linear8bitLt,
 * LLM.int8): the int8 weight [out, in], SCB (float32 [out], each row's absmax) and weight_format
 * (uint8, 0 for row-major). */
typedef struct {
    int bits;     /* 4 or 8 */
    hf_source packed, absmax, quant_map, nested_absmax, nested_quant_map;
    quant_store_info info;
    float offset; /* the JSON's nested_offset: the double-quantization offset */
    hf_source int8, scb, weight_format;
    int has_weight_format;
} bnb_weight;

/* config.json's quantization_config: 4 or 8 for a bitsandbytes 4-bit or 8-bit checkpoint, 0 for
 * none; other methods are refused, naming why. */
int bnb_checkpoint(const char *dir);
/* Locate one projection weight's tensors and check everything their headers (and the JSON) say
 * against spec (shape) and one another (sizes, block size, types). */
void bnb_locate(const hf_checkpoint *ck, const sl_tensor_spec *spec, int bits, bnb_weight *bw);
/* Tensors a weight occupies in the checkpoint (for the count of unused tensors). */
int bnb_tensor_count(const bnb_weight *bw);
/* Read the weight, check its tables and statistics, and write it: 4-bit bytes as they are, 8-bit
 * dequantized to float32 as bitsandbytes does (int8 * SCB / 127), then like any float weight. */
void bnb_copy(const bnb_weight *bw, const sl_tensor_spec *spec, import_writer *w);

#endif
