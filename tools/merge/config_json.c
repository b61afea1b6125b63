/* config.json of the merged checkpoint: the fields transformers 5's LlamaConfig, MistralConfig,
 * Qwen2Config and Qwen3Config read, named and laid out as their to_dict writes them (rotary
 * settings in rope_parameters). What one of them cannot express is refused, naming the field. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"
#include "runtime.h"

/* transformers' class name stem of each architecture */
static const char *class_stem(const char *arch)
{
    if (!strcmp(arch, "llama")) return "Llama";
    if (!strcmp(arch, "mistral")) return "Mistral";
    if (!strcmp(arch, "qwen2")) return "Qwen2";
    return "Qwen3";
}

/* What the architecture's transformers class fixes and the model file says otherwise. */
static void check_expressible(const merge_inputs *in)
{
    const sl_model_config *c = &in->cfg;
    const char *arch = c->architecture, *path = in->o->model;
    if (c->qk_norm != !strcmp(arch, "qwen3"))
        sl_fatal("%s: /config qk_norm is %d, but transformers' %s model %s per-head q/k norms", path, c->qk_norm, arch,
                 c->qk_norm ? "has no" : "always has");
    if (!strcmp(arch, "qwen2") && !c->attention_bias)
        sl_fatal("%s: /config attention_bias is 0, but transformers' qwen2 model always has q/k/v biases", path);
    if (!strcmp(arch, "mistral") && c->attention_bias)
        sl_fatal("%s: /config attention_bias is 1, but transformers' mistral model has no attention biases", path);
    if (!strcmp(arch, "qwen2") && c->head_dim * c->num_heads != c->hidden_size)
        sl_fatal("%s: /config head_dim is %d, but transformers' qwen2 model takes hidden_size / num_attention_heads = %d",
                 path, c->head_dim, c->hidden_size / c->num_heads);
    if (!strcmp(arch, "llama") && c->sliding_window > 0)
        sl_fatal("%s: /config sliding_window is %d, but transformers' llama model has no attention window", path,
                 c->sliding_window);
}

static void add_token_id(cJSON *j, const char *name, int id)
{
    if (id >= 0) cJSON_AddNumberToObject(j, name, id);
    else cJSON_AddNullToObject(j, name);
}

static cJSON *rope_parameters(const k_rope_params *r)
{
    static const char *const types[] = {"default", "linear", "llama3", "yarn"};
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "rope_theta", r->theta);
    cJSON_AddStringToObject(p, "rope_type", types[r->type]);
    if (r->type != K_ROPE_DEFAULT) cJSON_AddNumberToObject(p, "factor", r->factor);
    if (r->type == K_ROPE_LLAMA3 || r->type == K_ROPE_YARN)
        cJSON_AddNumberToObject(p, "original_max_position_embeddings", r->original_max_positions);
    if (r->type == K_ROPE_LLAMA3) {
        cJSON_AddNumberToObject(p, "low_freq_factor", r->low_freq_factor);
        cJSON_AddNumberToObject(p, "high_freq_factor", r->high_freq_factor);
    }
    if (r->type == K_ROPE_YARN) {
        cJSON_AddNumberToObject(p, "beta_fast", r->beta_fast);
        cJSON_AddNumberToObject(p, "beta_slow", r->beta_slow);
        cJSON_AddBoolToObject(p, "truncate", r->truncate);
        cJSON_AddNumberToObject(p, "attention_factor", r->attention_factor);
    }
    return p;
}

/* Mistral's window is sliding_window (null: none); Qwen's needs use_sliding_window too, and
 * applies from layer max_window_layers on: 0, as shardlora windows every layer. */
static void add_window(cJSON *j, const sl_model_config *c)
{
    if (c->sliding_window > 0) cJSON_AddNumberToObject(j, "sliding_window", c->sliding_window);
    else cJSON_AddNullToObject(j, "sliding_window");
    if (strncmp(c->architecture, "qwen", 4) != 0) return;
    cJSON_AddBoolToObject(j, "use_sliding_window", c->sliding_window > 0);
    cJSON_AddNumberToObject(j, "max_window_layers", c->sliding_window > 0 ? 0 : c->num_layers);
}

/* id2label / label2id, which set num_labels in transformers */
static void add_labels(cJSON *j, int num_labels)
{
    cJSON *id2label = cJSON_AddObjectToObject(j, "id2label"), *label2id = cJSON_AddObjectToObject(j, "label2id");
    for (int k = 0; k < num_labels; k++) {
        char id[16], label[32];
        snprintf(id, sizeof id, "%d", k);
        snprintf(label, sizeof label, "LABEL_%d", k);
        cJSON_AddStringToObject(id2label, id, label);
        cJSON_AddNumberToObject(label2id, label, k);
    }
}

char *config_json_text(const merge_inputs *in)
{
    check_expressible(in);
    const sl_model_config *c = &in->cfg;
    const int classify = in->info.num_labels > 0;
    cJSON *j = cJSON_CreateObject();
    char cls[64];
    snprintf(cls, sizeof cls, "%sFor%s", class_stem(c->architecture), classify ? "SequenceClassification" : "CausalLM");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(j, "architectures"), cJSON_CreateString(cls));
    cJSON_AddStringToObject(j, "model_type", c->architecture);
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->num_kv_heads);
    if (strcmp(c->architecture, "qwen2") != 0) cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_positions);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddItemToObject(j, "rope_parameters", rope_parameters(&c->rope));
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (!strcmp(c->architecture, "llama") || !strcmp(c->architecture, "qwen3"))
        cJSON_AddBoolToObject(j, "attention_bias", c->attention_bias);
    if (!strcmp(c->architecture, "llama")) cJSON_AddFalseToObject(j, "mlp_bias");
    if (strcmp(c->architecture, "llama") != 0) add_window(j, c);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_word_embeddings);
    add_token_id(j, "bos_token_id", c->bos_token_id);
    add_token_id(j, "eos_token_id", c->eos_token_id);
    cJSON_AddNullToObject(j, "pad_token_id");
    if (classify) add_labels(j, in->info.num_labels);
    cJSON_AddStringToObject(j, "dtype", in->o->dtype == SL_F32 ? "float32" : in->o->dtype == SL_F16 ? "float16" : "bfloat16");
    cJSON_AddTrueToObject(j, "use_cache");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) sl_fatal("out of memory writing config.json");
    return text;
}
