/* adapter_config.json: the fields of PEFT's LoraConfig that describe a shardlora adapter. PEFT
 * fills the fields left out (layers_to_transform, rank_pattern, use_dora, ...) with its defaults. */
#include <stdlib.h>
#include <string.h>

#include "export.h"

static cJSON *target_list(const char *comma_list)
{
    cJSON *list = cJSON_CreateArray();
    char *copy = strdup(comma_list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        cJSON_AddItemToArray(list, cJSON_CreateString(t));
    free(copy);
    return list;
}

cJSON *export_peft_config(const export_adapter *a, const char *base_model_name)
{
    int seq_cls = strcmp(a->task, "seq_cls") == 0;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddStringToObject(c, "task_type", seq_cls ? "SEQ_CLS" : "CAUSAL_LM");
    cJSON_AddStringToObject(c, "base_model_name_or_path", base_model_name);
    cJSON_AddNullToObject(c, "revision");
    cJSON_AddNumberToObject(c, "r", a->r);
    cJSON_AddNumberToObject(c, "lora_alpha", a->alpha);
    cJSON_AddNumberToObject(c, "lora_dropout", a->dropout);
    cJSON_AddItemToObject(c, "target_modules", target_list(a->target_modules));
    cJSON_AddBoolToObject(c, "use_rslora", a->rslora);
    cJSON_AddStringToObject(c, "bias", "none");
    cJSON_AddFalseToObject(c, "fan_in_fan_out");
    cJSON_AddTrueToObject(c, "inference_mode");
    cJSON_AddTrueToObject(c, "init_lora_weights");
    /* the head is trained whole; PEFT saves it as base_model.model.score.weight */
    if (seq_cls) {
        cJSON *mods = cJSON_AddArrayToObject(c, "modules_to_save");
        cJSON_AddItemToArray(mods, cJSON_CreateString("score"));
    } else {
        cJSON_AddNullToObject(c, "modules_to_save");
    }
    return c;
}
