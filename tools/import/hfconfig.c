/* hfconfig: a Hugging Face config.json read into the model config, with HF's defaults. */
#include <stdio.h>
#include <string.h>

#include "import.h"
#include "runtime.h"

/* The architectures class names that map to a model_type, for configs without model_type. */
static const struct { const char *class_name, *model_type; } HF_CLASSES[] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"},
};

typedef struct {
    const cJSON *json;
    const char *path; /* for messages */
} hf_json;

static const cJSON *field(const hf_json *j, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->json, name);
    return cJSON_IsNull(v) ? NULL : v;
}

/* An integer field; required when dflt is NULL. */
static int get_int(const hf_json *j, const char *name, const int *dflt)
{
    const cJSON *v = field(j, name);
    if (!v && dflt) return *dflt;
    if (!v) sl_fatal("%s: '%s' is missing", j->path, name);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        sl_fatal("%s: '%s' must be an integer", j->path, name);
    return (int)v->valuedouble;
}

static double get_double(const hf_json *j, const char *name, const double *dflt)
{
    const cJSON *v = field(j, name);
    if (!v && dflt) return *dflt;
    if (!v) sl_fatal("%s: '%s' is missing", j->path, name);
    if (!cJSON_IsNumber(v)) sl_fatal("%s: '%s' must be a number", j->path, name);
    return v->valuedouble;
}

static int get_bool(const hf_json *j, const char *name, int dflt)
{
    const cJSON *v = field(j, name);
    if (!v) return dflt;
    if (!cJSON_IsBool(v)) sl_fatal("%s: '%s' must be true or false", j->path, name);
    return cJSON_IsTrue(v);
}

/* A token id, or the first of a list of them (generation configs list several eos ids). */
static int get_token_id(const hf_json *j, const char *name, int dflt)
{
    const cJSON *v = field(j, name);
    if (cJSON_IsArray(v)) {
        v = v->child;
        if (!cJSON_IsNumber(v))
            sl_fatal("%s: '%s' must be an integer or a non-empty list of integers", j->path, name);
        return (int)v->valuedouble;
    }
    return get_int(j, name, &dflt);
}

static const char *architecture(const hf_json *j)
{
    const cJSON *mt = field(j, "model_type"), *archs = field(j, "architectures");
    const char *name = cJSON_IsString(mt) ? mt->valuestring : NULL;
    if (!name && cJSON_IsArray(archs) && cJSON_IsString(archs->child)) {
        name = archs->child->valuestring;
        for (size_t i = 0; i < sizeof HF_CLASSES / sizeof HF_CLASSES[0]; i++)
            if (strcmp(name, HF_CLASSES[i].class_name) == 0) name = HF_CLASSES[i].model_type;
    }
    if (!name) sl_fatal("%s: neither 'model_type' nor 'architectures' says which model this is", j->path);
    if (!modelcfg_known_architecture(name))
        sl_fatal("unknown architecture '%s' in %s (supported: llama, mistral, qwen2)", name, j->path);
    return name;
}

/* Options of the HF model that shardlora does not implement: better refuse than import wrongly. */
static void reject_unsupported(const hf_json *j)
{
    if (field(j, "rope_scaling"))
        sl_fatal("%s: rope_scaling is not supported (shardlora implements plain rotary embeddings; "
                 "expected rope_scaling null or absent)", j->path);
    if (get_bool(j, "mlp_bias", 0)) sl_fatal("%s: mlp_bias true is not supported", j->path);
    const cJSON *act = field(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        sl_fatal("%s: hidden_act must be \"silu\" (SwiGLU MLP)", j->path);
}

void hfconfig_read(const char *dir, sl_model_config *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *json = json_read_file(path, "model config");
    hf_json j = {json, path};
    memset(c, 0, sizeof *c);
    snprintf(c->architecture, sizeof c->architecture, "%s", architecture(&j));
    reject_unsupported(&j);
    c->hidden_size = get_int(&j, "hidden_size", NULL);
    c->intermediate_size = get_int(&j, "intermediate_size", NULL);
    c->num_layers = get_int(&j, "num_hidden_layers", NULL);
    c->num_heads = get_int(&j, "num_attention_heads", NULL);
    c->num_kv_heads = get_int(&j, "num_key_value_heads", &c->num_heads);
    int head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
    c->head_dim = get_int(&j, "head_dim", &head_dim);
    c->vocab_size = get_int(&j, "vocab_size", NULL);
    c->max_positions = get_int(&j, "max_position_embeddings", NULL);
    const double theta = 10000.0;
    c->rope_theta = get_double(&j, "rope_theta", &theta);
    c->rms_norm_eps = get_double(&j, "rms_norm_eps", NULL);
    c->tie_word_embeddings = get_bool(&j, "tie_word_embeddings", 0);
    /* Qwen2 always has q/k/v biases; llama and mistral only when the config says so */
    c->attention_bias = strcmp(c->architecture, "qwen2") == 0 || get_bool(&j, "attention_bias", 0);
    c->bos_token_id = get_token_id(&j, "bos_token_id", 1);
    c->eos_token_id = get_token_id(&j, "eos_token_id", 2);
    const char *problem = modelcfg_problem(c);
    if (problem) sl_fatal("%s: %s", path, problem);
    cJSON_Delete(json);
}
