/* lora: low-rank adapters on the projections of each decoder layer (PEFT's LoRA):
 * y = W x + scale * B (A dropout(x)), A [r, in] Kaiming-uniform, B [out, r] zero,
 * scale = alpha / r (or alpha / sqrt(r) with rsLoRA). Adapters live in each layer unit's
 * trainable pool, stored as /lora/model/layers/L/<module>/lora_A and lora_B. */
#ifndef SL_LORA_H
#define SL_LORA_H

#include <stdint.h>

#include "fsdp.h"
#include "modelcfg.h"

typedef struct {
    int r;
    double alpha, dropout;
    int rslora;
    unsigned targets; /* bit p set: PROJ_p carries an adapter */
    float scale;
} sl_lora;

/* Parse "q_proj,v_proj" or "all-linear"; returns NULL or an error message naming the bad name. */
const char *lora_parse_targets(const char *s, unsigned *mask);
void lora_setup(sl_lora *l, int r, double alpha, double dropout, int rslora, unsigned targets);
/* Dataset paths of the adapter of layer, projection p: which = 'A' or 'B'. */
void lora_path(char *buf, size_t len, int layer, int proj, char which);
/* Add the adapters of one layer to a unit's trainable pool: every targeted projection's A, then
 * every B, in projection order, so that the A's of projections sharing an input (q, k, v; gate,
 * up) are consecutive and the layer can use them as one matrix. */
void lora_add_to_pool(const sl_lora *l, const sl_model_config *c, int layer, fsdp_pool *pool);
/* Initialise this rank's shard of a planned pool: A uniform(-1/sqrt(in), 1/sqrt(in)) from a
 * counter-based generator keyed by (seed, dataset, element), so any rank count gives the same
 * adapter; B and trainable heads as their init rule says (B zero, heads normal(0, 0.02)). */
void lora_init_shard(const fsdp_pool *pool, float *shard, uint64_t seed);

/* Adapter views of one layer inside a gathered trainable pool (NULL where not targeted). */
typedef struct {
    const void *A[N_PROJ], *B[N_PROJ]; /* act-typed, where the backend computes */
    float *dA[N_PROJ], *dB[N_PROJ];    /* the backend's gradient (grad_dev), or NULL */
} lora_view;
lora_view lora_view_of(const sl_lora *l, const fsdp_pool *pool, int layer);

#endif
