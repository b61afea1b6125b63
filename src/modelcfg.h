/* modelcfg: a LLaMA-family model's hyper-parameters (the /config group of a model file) and the
 * table of its tensors, named by their Hugging Face module paths. */
#ifndef SL_MODELCFG_H
#define SL_MODELCFG_H

#include <hdf5.h>
#include <stdint.h>

#include "kernels.h"

typedef struct {
    char architecture[32]; /* Hugging Face model_type: llama, mistral, qwen2, qwen3 */
    int hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim;
    int vocab_size, max_positions;
    k_rope_params rope; /* theta and the scaling of the rotary frequencies */
    double rms_norm_eps;
    int tie_word_embeddings; /* the LM head is the embedding table */
    int attention_bias;      /* q/k/v projections have biases (qwen2; llama and qwen3 when configured) */
    int o_proj_bias;         /* o_proj has one too (llama and qwen3 with attention_bias, unlike qwen2) */
    int sliding_window;      /* > 0: attention sees at most this many tokens back (mistral); 0: none */
    int qk_norm;             /* per-head RMSNorm of q and k before the rotary embedding (qwen3) */
    int bos_token_id, eos_token_id;
} sl_model_config;

typedef enum { TENSOR_EMBEDDING, TENSOR_NORM, TENSOR_LINEAR, TENSOR_BIAS, TENSOR_LM_HEAD } sl_tensor_kind;

/* The seven projections of a decoder layer, in the order they appear in the tensor table. */
enum { PROJ_Q, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, N_PROJ };
extern const char *const PROJ_NAMES[N_PROJ]; /* "q_proj", ... */

typedef struct {
    char path[96];       /* e.g. /model/layers/3/self_attn/q_proj/weight */
    sl_tensor_kind kind;
    int layer;           /* -1 outside the decoder layers */
    int proj;            /* PROJ_* for linear weights and biases, else -1 */
    int ndims;
    int64_t dims[2];     /* [out, in] for linear weights */
} sl_tensor_spec;

/* Fatal unless windows of seq_len tokens fit the model of file `path`: its position embeddings,
 * and its attention window (windowed attention is not implemented: a window longer than the
 * model's would attend further back than the model was trained to). */
void modelcfg_check_seq_len(const sl_model_config *c, int seq_len, const char *path);

/* Names of the known architectures, for messages. */
extern const char *const SL_ARCHITECTURES[];
int modelcfg_known_architecture(const char *name);
/* Rope types by k_rope_type ("default", "linear", "llama3", "yarn"), NULL-terminated; the type
 * named, or -1. */
extern const char *const SL_ROPE_TYPES[];
int modelcfg_rope_type(const char *name);

/* Read and validate /config; every problem names the file and the attribute. */
void modelcfg_read(hid_t file, sl_model_config *cfg);
void modelcfg_write(hid_t file, const sl_model_config *cfg);
/* Check internal consistency (heads divide, sizes positive); returns NULL or a message. */
const char *modelcfg_problem(const sl_model_config *cfg);

/* All tensors of the model in file order; returns the count (writes at most max). */
int modelcfg_tensors(const sl_model_config *cfg, sl_tensor_spec *out, int max);
int modelcfg_tensor_count(const sl_model_config *cfg);
/* Path of one tensor, e.g. modelcfg_path(buf, layer, "self_attn/q_proj/weight"). */
void modelcfg_layer_path(char *buf, size_t len, int layer, const char *module);

/* Parameter count of the frozen base. */
int64_t modelcfg_param_count(const sl_model_config *cfg);

#endif
