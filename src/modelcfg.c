/* modelcfg: hyper-parameters in /config and the tensor table of LLaMA-family models. */
#include "modelcfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "runtime.h"

const char *const PROJ_NAMES[N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};
const char *const SL_ARCHITECTURES[] = {"llama", "mistral", "qwen2", "qwen3", NULL};
const char *const SL_ROPE_TYPES[] = {"default", "linear", "llama3", "yarn", NULL};

int modelcfg_known_architecture(const char *name)
{
    for (int i = 0; SL_ARCHITECTURES[i]; i++)
        if (strcmp(name, SL_ARCHITECTURES[i]) == 0) return 1;
    return 0;
}

int modelcfg_rope_type(const char *name)
{
    for (int i = 0; SL_ROPE_TYPES[i]; i++)
        if (strcmp(name, SL_ROPE_TYPES[i]) == 0) return i;
    return -1;
}

static int get_int(hid_t f, const char *name)
{
    int64_t v = h5_attr_int(f, "/config", name);
    if (v < -1 || v > 1000000000)
        sl_fatal("%s: /config attribute '%s' = %lld is out of range", h5_name(f), name, (long long)v);
    return (int)v;
}

/* The rope attributes of the type; files without rope_type predate scaling and mean "default". */
static void read_rope(hid_t f, k_rope_params *r)
{
    r->theta = h5_attr_double(f, "/config", "rope_theta");
    r->type = K_ROPE_DEFAULT;
    if (h5_has_attr(f, "/config", "rope_type")) {
        char *name = h5_attr_string(f, "/config", "rope_type");
        int type = modelcfg_rope_type(name);
        if (type < 0)
            sl_fatal("%s: unknown rope_type '%s' in /config (expected default, linear, llama3 or yarn)", h5_name(f), name);
        free(name);
        r->type = (k_rope_type)type;
    }
    if (r->type != K_ROPE_DEFAULT) r->factor = h5_attr_double(f, "/config", "rope_factor");
    if (r->type == K_ROPE_LLAMA3 || r->type == K_ROPE_YARN)
        r->original_max_positions = get_int(f, "rope_original_max_position_embeddings");
    if (r->type == K_ROPE_LLAMA3) {
        r->low_freq_factor = h5_attr_double(f, "/config", "rope_low_freq_factor");
        r->high_freq_factor = h5_attr_double(f, "/config", "rope_high_freq_factor");
    }
    if (r->type == K_ROPE_YARN) {
        r->beta_fast = h5_attr_double(f, "/config", "rope_beta_fast");
        r->beta_slow = h5_attr_double(f, "/config", "rope_beta_slow");
        r->truncate = get_int(f, "rope_truncate");
        r->attention_factor = h5_attr_double(f, "/config", "rope_attention_factor");
    }
}

static void write_rope(hid_t f, const k_rope_params *r)
{
    h5_set_attr_double(f, "/config", "rope_theta", r->theta);
    h5_set_attr_string(f, "/config", "rope_type", SL_ROPE_TYPES[r->type]);
    if (r->type != K_ROPE_DEFAULT) h5_set_attr_double(f, "/config", "rope_factor", r->factor);
    if (r->type == K_ROPE_LLAMA3 || r->type == K_ROPE_YARN)
        h5_set_attr_int(f, "/config", "rope_original_max_position_embeddings", r->original_max_positions);
    if (r->type == K_ROPE_LLAMA3) {
        h5_set_attr_double(f, "/config", "rope_low_freq_factor", r->low_freq_factor);
        h5_set_attr_double(f, "/config", "rope_high_freq_factor", r->high_freq_factor);
    }
    if (r->type == K_ROPE_YARN) {
        h5_set_attr_double(f, "/config", "rope_beta_fast", r->beta_fast);
        h5_set_attr_double(f, "/config", "rope_beta_slow", r->beta_slow);
        h5_set_attr_int(f, "/config", "rope_truncate", r->truncate);
        h5_set_attr_double(f, "/config", "rope_attention_factor", r->attention_factor);
    }
}

void modelcfg_read(hid_t f, sl_model_config *c)
{
    memset(c, 0, sizeof *c);
    if (!h5_is_group(f, "/config"))
        sl_fatal("%s: group /config is missing (expected a shardlora model file; make one with shardlora-import)",
                 h5_name(f));
    char *arch = h5_attr_string(f, "/config", "architecture");
    if (!modelcfg_known_architecture(arch))
        sl_fatal("%s: unknown architecture '%s' in /config (expected llama, mistral, qwen2 or qwen3)", h5_name(f), arch);
    snprintf(c->architecture, sizeof c->architecture, "%s", arch);
    free(arch);
    c->hidden_size = get_int(f, "hidden_size");
    c->intermediate_size = get_int(f, "intermediate_size");
    c->num_layers = get_int(f, "num_hidden_layers");
    c->num_heads = get_int(f, "num_attention_heads");
    c->num_kv_heads = get_int(f, "num_key_value_heads");
    c->head_dim = get_int(f, "head_dim");
    c->vocab_size = get_int(f, "vocab_size");
    c->max_positions = get_int(f, "max_position_embeddings");
    read_rope(f, &c->rope);
    c->rms_norm_eps = h5_attr_double(f, "/config", "rms_norm_eps");
    c->tie_word_embeddings = get_int(f, "tie_word_embeddings");
    c->attention_bias = get_int(f, "attention_bias");
    c->o_proj_bias = h5_has_attr(f, "/config", "o_proj_bias") ? get_int(f, "o_proj_bias") : 0;
    /* files written before the window was recorded: none */
    c->sliding_window = h5_has_attr(f, "/config", "sliding_window") ? get_int(f, "sliding_window") : 0;
    c->qk_norm = h5_has_attr(f, "/config", "qk_norm") ? get_int(f, "qk_norm") : 0;
    c->bos_token_id = get_int(f, "bos_token_id");
    c->eos_token_id = get_int(f, "eos_token_id");
    const char *problem = modelcfg_problem(c);
    if (problem) sl_fatal("%s: /config: %s", h5_name(f), problem);
}

void modelcfg_write(hid_t f, const sl_model_config *c)
{
    h5_make_groups(f, "/config");
    h5_set_attr_string(f, "/config", "architecture", c->architecture);
    h5_set_attr_int(f, "/config", "hidden_size", c->hidden_size);
    h5_set_attr_int(f, "/config", "intermediate_size", c->intermediate_size);
    h5_set_attr_int(f, "/config", "num_hidden_layers", c->num_layers);
    h5_set_attr_int(f, "/config", "num_attention_heads", c->num_heads);
    h5_set_attr_int(f, "/config", "num_key_value_heads", c->num_kv_heads);
    h5_set_attr_int(f, "/config", "head_dim", c->head_dim);
    h5_set_attr_int(f, "/config", "vocab_size", c->vocab_size);
    h5_set_attr_int(f, "/config", "max_position_embeddings", c->max_positions);
    write_rope(f, &c->rope);
    h5_set_attr_double(f, "/config", "rms_norm_eps", c->rms_norm_eps);
    h5_set_attr_int(f, "/config", "tie_word_embeddings", c->tie_word_embeddings);
    h5_set_attr_int(f, "/config", "attention_bias", c->attention_bias);
    h5_set_attr_int(f, "/config", "o_proj_bias", c->o_proj_bias);
    h5_set_attr_int(f, "/config", "sliding_window", c->sliding_window);
    h5_set_attr_int(f, "/config", "qk_norm", c->qk_norm);
    h5_set_attr_int(f, "/config", "bos_token_id", c->bos_token_id);
    h5_set_attr_int(f, "/config", "eos_token_id", c->eos_token_id);
}

static const char *rope_problem(const k_rope_params *r)
{
    if (r->type == K_ROPE_DEFAULT) return NULL;
    if (!(r->factor >= 1)) return "the rope scaling factor must be at least 1";
    if (r->type != K_ROPE_LINEAR && r->original_max_positions <= 0)
        return "the rope's original_max_position_embeddings must be positive";
    if (r->type == K_ROPE_LLAMA3 && !(r->low_freq_factor > 0 && r->high_freq_factor > r->low_freq_factor))
        return "llama3 rope needs 0 < low_freq_factor < high_freq_factor";
    if (r->type == K_ROPE_YARN && !(r->beta_slow > 0 && r->beta_fast >= r->beta_slow && r->attention_factor > 0))
        return "yarn rope needs 0 < beta_slow <= beta_fast and a positive attention factor";
    return NULL;
}

const char *modelcfg_problem(const sl_model_config *c)
{
    static char msg[256];
    if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 ||
        c->num_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0 || c->max_positions <= 0)
        return "sizes must be positive (hidden_size, intermediate_size, num_hidden_layers, heads, "
               "head_dim, vocab_size, max_position_embeddings)";
    if (c->num_heads % c->num_kv_heads != 0) {
        snprintf(msg, sizeof msg, "num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                 c->num_heads, c->num_kv_heads);
        return msg;
    }
    if (c->head_dim % 2 != 0) {
        snprintf(msg, sizeof msg, "head_dim (%d) must be even for rotary embeddings", c->head_dim);
        return msg;
    }
    if (!(c->rope.theta > 0) || !(c->rms_norm_eps > 0)) return "rope_theta and rms_norm_eps must be positive";
    return rope_problem(&c->rope);
}

void modelcfg_layer_path(char *buf, size_t len, int layer, const char *module)
{
    snprintf(buf, len, "/model/layers/%d/%s", layer, module);
}

static sl_tensor_spec spec(const char *path, sl_tensor_kind kind, int layer, int proj, int ndims,
                           int64_t d0, int64_t d1)
{
    sl_tensor_spec s = {.kind = kind, .layer = layer, .proj = proj, .ndims = ndims, .dims = {d0, d1}};
    snprintf(s.path, sizeof s.path, "%s", path);
    return s;
}

int modelcfg_tensors(const sl_model_config *c, sl_tensor_spec *out, int max)
{
    int n = 0;
    char path[96], module[64];
    const int64_t D = c->hidden_size, F = c->intermediate_size, Q = (int64_t)c->num_heads * c->head_dim,
                  KV = (int64_t)c->num_kv_heads * c->head_dim;
    /* [out, in] of each projection, in PROJ_* order */
    const int64_t shapes[N_PROJ][2] = {{Q, D}, {KV, D}, {KV, D}, {D, Q}, {F, D}, {F, D}, {D, F}};
#define ADD(s) do { if (n < max) out[n] = (s); n++; } while (0)
    ADD(spec("/model/embed_tokens/weight", TENSOR_EMBEDDING, -1, -1, 2, c->vocab_size, D));
    for (int l = 0; l < c->num_layers; l++) {
        modelcfg_layer_path(path, sizeof path, l, "input_layernorm/weight");
        ADD(spec(path, TENSOR_NORM, l, -1, 1, D, 0));
        for (int qk = 0; c->qk_norm && qk < 2; qk++) { /* over each head's head_dim values */
            modelcfg_layer_path(path, sizeof path, l, qk ? "self_attn/k_norm/weight" : "self_attn/q_norm/weight");
            ADD(spec(path, TENSOR_NORM, l, -1, 1, c->head_dim, 0));
        }
        for (int p = 0; p < N_PROJ; p++) {
            if (p == PROJ_GATE) { /* the MLP norm sits between attention and MLP */
                modelcfg_layer_path(path, sizeof path, l, "post_attention_layernorm/weight");
                ADD(spec(path, TENSOR_NORM, l, -1, 1, D, 0));
            }
            snprintf(module, sizeof module, "%s/%s/weight", p < PROJ_GATE ? "self_attn" : "mlp", PROJ_NAMES[p]);
            modelcfg_layer_path(path, sizeof path, l, module);
            ADD(spec(path, TENSOR_LINEAR, l, p, 2, shapes[p][0], shapes[p][1]));
            /* biases after the weights they go with, q's, k's and v's after all three weights: q, k and v
             * (weights and biases) are then consecutive in their unit, one stacked matrix for the fused
             * q/k/v product (layer.c) */
            const int first_bias = p == PROJ_V && c->attention_bias ? PROJ_Q : p == PROJ_O && c->o_proj_bias ? PROJ_O : -1;
            for (int b = first_bias; b >= 0 && b <= p; b++) {
                snprintf(module, sizeof module, "self_attn/%s/bias", PROJ_NAMES[b]);
                modelcfg_layer_path(path, sizeof path, l, module);
                ADD(spec(path, TENSOR_BIAS, l, b, 1, shapes[b][0], 0));
            }
        }
    }
    ADD(spec("/model/norm/weight", TENSOR_NORM, -1, -1, 1, D, 0));
    if (!c->tie_word_embeddings) ADD(spec("/lm_head/weight", TENSOR_LM_HEAD, -1, -1, 2, c->vocab_size, D));
#undef ADD
    return n;
}

int modelcfg_tensor_count(const sl_model_config *c) { return modelcfg_tensors(c, NULL, 0); }

int64_t modelcfg_param_count(const sl_model_config *c)
{
    int n = modelcfg_tensor_count(c);
    sl_tensor_spec *t = sl_malloc(sizeof *t * (size_t)n, "tensor table");
    modelcfg_tensors(c, t, n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += t[i].ndims == 2 ? t[i].dims[0] * t[i].dims[1] : t[i].dims[0];
    free(t);
    return total;
}

void modelcfg_check_seq_len(const sl_model_config *c, int seq_len, const char *path)
{
    if (seq_len > c->max_positions)
        sl_fatal("option --seq-len=%d exceeds the model's max_position_embeddings (%d) in %s", seq_len,
                 c->max_positions, path);
    if (c->sliding_window > 0 && seq_len > c->sliding_window)
        sl_fatal("option --seq-len=%d exceeds the model's sliding_window (%d) in %s: sliding-window attention is not "
                 "implemented, so windows longer than it would attend further back than the model does; use "
                 "--seq-len=%d or less", seq_len, c->sliding_window, path, c->sliding_window);
}
