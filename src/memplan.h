/* memplan: the per-rank memory plan that --dry-run prints (weights at the chosen quantization,
 * gathered units, LoRA parameters and optimizer state, activations). */
#ifndef SL_MEMPLAN_H
#define SL_MEMPLAN_H

#include <stdint.h>

#include "config.h"
#include "modelcfg.h"

typedef struct {
    int64_t base_shard;    /* this rank's share of the frozen base, stored */
    int64_t gathered;      /* the largest unit gathered and dequantized for compute */
    int64_t lora_state;    /* LoRA params + grads + AdamW moments, this rank's share */
    int64_t lora_grad_full;/* full LoRA gradient of one unit before its reduce-scatter */
    int64_t activations;   /* activations, scratch, batch and head buffers, as the run allocates them */
    int64_t workspace;     /* the backend's own workspaces (cuDNN attention, cuBLASLt) */
    int64_t total;         /* where the backend computes (each GPU) */
    int64_t host;          /* host memory besides, on a backend with its own (fp32 copies for the files) */
    int64_t offload;       /* --act-offload: the host area of the layer inputs that leave (pinned on a GPU) */
} sl_memplan;

/* Bytes per weight element in a quantization format ("none", "nf4", ...). */
double memplan_bytes_per_weight(const char *quant, int blocksize, int double_quant);
/* The plan on the current backend (BE), with or without activation checkpointing: the activation
 * buffers are counted by running the allocation code of the pass itself against a backend that
 * only counts. */
sl_memplan memplan_compute(const sl_config *cfg, const sl_model_config *mc, int world, int act_ckpt);
/* Collective: --act-ckpt resolved: as given, or with auto, on whether a step with every layer's
 * activations kept fits in the device's free memory (logged; kept on the CPU backend). */
int memplan_choose_act_ckpt(const sl_config *cfg, const sl_model_config *mc);
/* Read the model's /config on rank 0 and print the plan (rank 0 only). */
void memplan_print(const sl_config *cfg);

#endif
