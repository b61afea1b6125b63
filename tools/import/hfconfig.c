/* hfconfig: a Hugging Face config.json read into the model config, with HF's defaults. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import.h"
#include "runtime.h"

/* The architectures class names that map to a model_type, for configs without model_type. */
static const struct { const char *class_name, *model_type; } HF_CLASSES[] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},
};

typedef struct {
    const cJSON *json;
    const char *path;   /* for messages */
    const char *object; /* "" at the top level, else the enclosing key and a dot, for messages */
} hf_json;

static const cJSON *field(const hf_json *j, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->json, name);
    return cJSON_IsNull(v) ? NULL : v;
}

/* A whole number that fits an int, tested before converting (a larger one has no int). */
static int is_int(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX &&
           v->valuedouble == floor(v->valuedouble);
}

/* An integer field; required when dflt is NULL. */
static int get_int(const hf_json *j, const char *name, const int *dflt)
{
    const cJSON *v = field(j, name);
    if (!v && dflt) return *dflt;
    if (!v) sl_fatal("%s: '%s%s' is missing", j->path, j->object, name);
    if (!is_int(v)) sl_fatal("%s: '%s%s' must be an integer", j->path, j->object, name);
    return (int)v->valuedouble;
}

static double get_double(const hf_json *j, const char *name, const double *dflt)
{
    const cJSON *v = field(j, name);
    if (!v && dflt) return *dflt;
    if (!v) sl_fatal("%s: '%s%s' is missing", j->path, j->object, name);
    if (!cJSON_IsNumber(v)) sl_fatal("%s: '%s%s' must be a number", j->path, j->object, name);
    return v->valuedouble;
}

static int get_bool(const hf_json *j, const char *name, int dflt)
{
    const cJSON *v = field(j, name);
    if (!v) return dflt;
    if (!cJSON_IsBool(v)) sl_fatal("%s: '%s%s' must be true or false", j->path, j->object, name);
    return cJSON_IsTrue(v);
}

/* A token id, or the first of a list of them (generation configs list several eos ids). */
static int get_token_id(const hf_json *j, const char *name, int dflt)
{
    const cJSON *v = field(j, name);
    if (cJSON_IsArray(v)) {
        v = v->child;
        if (!is_int(v)) sl_fatal("%s: '%s' must be an integer or a non-empty list of integers", j->path, name);
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
        sl_fatal("unknown architecture '%s' in %s (supported: llama, mistral, qwen2, qwen3)", name, j->path);
    return name;
}

/* Options of the HF model that shardlora does not implement: better refuse than import wrongly. */
static void reject_unsupported(const hf_json *j)
{
    if (get_bool(j, "mlp_bias", 0)) sl_fatal("%s: mlp_bias true is not supported", j->path);
    const cJSON *act = field(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        sl_fatal("%s: hidden_act must be \"silu\" (SwiGLU MLP)", j->path);
}

/* yarn's attention factor: given, or the ratio of mscale terms (DeepSeek's form), or the YaRN
 * paper's 0.1 ln(factor) + 1. */
static double yarn_mscale(double factor, double mscale) { return factor <= 1 ? 1.0 : 0.1 * mscale * log(factor) + 1.0; }

static double yarn_attention_factor(const hf_json *p, double factor)
{
    if (field(p, "attention_factor")) return get_double(p, "attention_factor", NULL);
    const double zero = 0;
    double mscale = get_double(p, "mscale", &zero), all_dim = get_double(p, "mscale_all_dim", &zero);
    if (mscale != 0 && all_dim != 0) return yarn_mscale(factor, mscale) / yarn_mscale(factor, all_dim);
    return yarn_mscale(factor, 1.0);
}

/* Rotary embeddings on only part of each head (phi, glm) are not implemented. */
static void reject_partial_rotary(const hf_json *o)
{
    const double one = 1.0;
    if (get_double(o, "partial_rotary_factor", &one) != 1.0)
        sl_fatal("%s: '%spartial_rotary_factor' other than 1 is not supported", o->path, o->object);
}

/* The scaling fields of rope type `name` (rope_parameters or rope_scaling, as p) into r. */
static void read_rope_scaling(const hf_json *p, const char *name, int max_positions, k_rope_params *r)
{
    int type = modelcfg_rope_type(name);
    if (type < 0)
        sl_fatal("%s: rope type '%s' is not supported (supported: default, linear, llama3, yarn)", p->path, name);
    r->type = (k_rope_type)type;
    reject_partial_rotary(p);
    if (r->type == K_ROPE_DEFAULT) return;
    r->factor = get_double(p, "factor", NULL);
    if (r->type == K_ROPE_LLAMA3) {
        r->low_freq_factor = get_double(p, "low_freq_factor", NULL);
        r->high_freq_factor = get_double(p, "high_freq_factor", NULL);
        r->original_max_positions = get_int(p, "original_max_position_embeddings", NULL);
    }
    if (r->type == K_ROPE_YARN) {
        /* transformers' defaults: the whole context, beta 32 and 1, a truncated range */
        r->original_max_positions = get_int(p, "original_max_position_embeddings", &max_positions);
        const double fast = 32, slow = 1;
        r->beta_fast = get_double(p, "beta_fast", &fast);
        r->beta_slow = get_double(p, "beta_slow", &slow);
        r->truncate = get_bool(p, "truncate", 1);
        r->attention_factor = yarn_attention_factor(p, r->factor);
    }
}

/* The rotary parameters. transformers 5 writes them as one object, rope_parameters (rope_theta,
 * rope_type and the scaling fields); transformers 4 writes rope_theta and rope_scaling (its type
 * under rope_type, or the older key type) at the top level. Without a theta anywhere the
 * architecture's documented default applies: LlamaConfig, MistralConfig and Qwen2Config all
 * default to 10000. */
static void read_rope(const hf_json *j, sl_model_config *c)
{
    const cJSON *params = field(j, "rope_parameters"), *scaling = field(j, "rope_scaling");
    if (params && scaling)
        sl_fatal("%s: both rope_parameters (transformers 5) and rope_scaling (transformers 4) are set; "
                 "expected one of them", j->path);
    const cJSON *obj = params ? params : scaling;
    hf_json p = {obj, j->path, params ? "rope_parameters." : "rope_scaling."};
    if (obj && !cJSON_IsObject(obj))
        sl_fatal("%s: '%s' must be an object", j->path, params ? "rope_parameters" : "rope_scaling");
    for (const cJSON *e = params ? params->child : NULL; e; e = e->next)
        if (cJSON_IsObject(e))
            sl_fatal("%s: rope_parameters per layer type ('%s') is not supported (expected one set for all layers)",
                     j->path, e->string);
    /* transformers 5 takes rope_parameters' theta first, then a top-level one */
    const hf_json *at = params && field(&p, "rope_theta") ? &p : j;
    if (!field(at, "rope_theta")) log_info("%s: no rope_theta; using %s's default, 10000", j->path, c->architecture);
    const double theta = 10000.0;
    c->rope.theta = get_double(at, "rope_theta", &theta);
    const cJSON *type = obj ? field(&p, "rope_type") : NULL;
    if (!type && obj) type = field(&p, "type");
    if (type && !cJSON_IsString(type))
        sl_fatal("%s: '%s%s' must be a string", j->path, p.object, type->string);
    reject_partial_rotary(j);
    read_rope_scaling(&p, type ? type->valuestring : "default", c->max_positions, &c->rope);
}

void hfconfig_read(const char *dir, sl_model_config *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *json = json_read_file(path, "model config");
    hfconfig_from_json(json, path, c);
    cJSON_Delete(json);
}

void hfconfig_from_json(const cJSON *json, const char *path, sl_model_config *c)
{
    hf_json j = {json, path, ""};
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
    read_rope(&j, c);
    c->rms_norm_eps = get_double(&j, "rms_norm_eps", NULL);
    c->tie_word_embeddings = get_bool(&j, "tie_word_embeddings", 0);
    /* Biases as transformers builds them: Qwen2 always on q, k and v; llama and qwen3 with
     * attention_bias on q, k, v and o; mistral never (MistralAttention has no attention_bias) */
    const int qwen2 = !strcmp(c->architecture, "qwen2"), mistral = !strcmp(c->architecture, "mistral");
    c->o_proj_bias = !qwen2 && !mistral && get_bool(&j, "attention_bias", 0);
    c->attention_bias = qwen2 || c->o_proj_bias;
    c->qk_norm = strcmp(c->architecture, "qwen3") == 0;
    /* Mistral's window applies when set (null: none); Qwen's only with use_sliding_window */
    const int none = 0;
    if (!strcmp(c->architecture, "mistral") || get_bool(&j, "use_sliding_window", 0))
        c->sliding_window = get_int(&j, "sliding_window", &none);
    c->bos_token_id = get_token_id(&j, "bos_token_id", 1);
    c->eos_token_id = get_token_id(&j, "eos_token_id", 2);
    const char *problem = modelcfg_problem(c);
    if (problem) sl_fatal("%s: %s", path, problem);
}
