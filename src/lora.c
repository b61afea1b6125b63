/* lora: adapter layout, initialisation and views. */
#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "rng.h"
#include "runtime.h"

const char *lora_parse_targets(const char *s, unsigned *mask)
{
    static char msg[256];
    *mask = 0;
    if (!strcmp(s, "all-linear")) {
        *mask = (1u << N_PROJ) - 1;
        return NULL;
    }
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int k = 0; k < N_PROJ; k++)
            if (strlen(PROJ_NAMES[k]) == len && !strncmp(p, PROJ_NAMES[k], len)) found = k;
        if (found < 0) {
            snprintf(msg, sizeof msg, "--lora-targets: '%.*s' matches no module (expected all-linear or names "
                     "from q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)", (int)len, p);
            return msg;
        }
        *mask |= 1u << found;
        p += len + (p[len] == ',');
    }
    return *mask ? NULL : "--lora-targets: no module given";
}

void lora_setup(sl_lora *l, int r, double alpha, double dropout, int rslora, unsigned targets)
{
    *l = (sl_lora){.r = r, .alpha = alpha, .dropout = dropout, .rslora = rslora, .targets = targets};
    l->scale = (float)(rslora ? alpha / sqrt((double)r) : alpha / r);
}

void lora_path(char *buf, size_t len, int layer, int proj, char which)
{
    snprintf(buf, len, "/lora/model/layers/%d/%s/%s/lora_%c", layer, proj < PROJ_GATE ? "self_attn" : "mlp",
             PROJ_NAMES[proj], which);
}

/* [out, in] of a projection */
static void proj_shape(const sl_model_config *c, int p, int64_t *out, int64_t *in)
{
    const int64_t D = c->hidden_size, F = c->intermediate_size, Q = (int64_t)c->num_heads * c->head_dim,
                  KV = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t shapes[N_PROJ][2] = {{Q, D}, {KV, D}, {KV, D}, {D, Q}, {F, D}, {F, D}, {D, F}};
    *out = shapes[p][0];
    *in = shapes[p][1];
}

void lora_add_to_pool(const sl_lora *l, const sl_model_config *c, int layer, fsdp_pool *pool)
{
    char path[112];
    for (int which = 0; which < 2; which++)
        for (int p = 0; p < N_PROJ; p++) {
            if (!(l->targets & (1u << p))) continue;
            int64_t out, in;
            proj_shape(c, p, &out, &in);
            const int64_t a[2] = {l->r, in}, b[2] = {out, l->r};
            lora_path(path, sizeof path, layer, p, which ? 'B' : 'A');
            fsdp_pool_add(pool, path, 2, which ? b : a);
        }
}

void lora_init_shard(const fsdp_pool *pool, float *shard, uint64_t seed)
{
    int64_t begin = (int64_t)RT.rank * pool->shard_numel;
    memset(shard, 0, (size_t)pool->shard_numel * sizeof(float));
    for (int i = 0; i < pool->n_members; i++) {
        const fsdp_member *m = &pool->members[i];
        size_t len = strlen(m->path);
        int is_A = len >= 6 && !strcmp(m->path + len - 6, "lora_A"), is_B = len >= 6 && !strcmp(m->path + len - 6, "lora_B");
        if (is_B) continue;
        uint64_t stream = rng_name_hash(m->path);
        double bound = 1.0 / sqrt((double)m->dims[1]);
        for (int64_t e = 0; e < m->numel; e++) {
            int64_t at = m->offset + e - begin;
            if (at < 0 || at >= pool->shard_numel) continue;
            double u = rng_hash_uniform(seed, stream, (uint64_t)e);
            if (is_A) shard[at] = (float)((2 * u - 1) * bound);
            else { /* a trainable head: normal(0, 0.02) by Box-Muller on two hashed uniforms */
                double u2 = rng_hash_uniform(seed, stream ^ 0x5bd1e995ull, (uint64_t)e);
                shard[at] = (float)(0.02 * sqrt(-2 * log(1 - u)) * cos(2 * M_PI * u2));
            }
        }
    }
}

lora_view lora_view_of(const sl_lora *l, const fsdp_pool *pool, int layer)
{
    lora_view v = {0};
    char path[112];
    for (int p = 0; p < N_PROJ; p++) {
        if (!l || !(l->targets & (1u << p))) continue;
        for (int w = 0; w < 2; w++) {
            lora_path(path, sizeof path, layer, p, w ? 'B' : 'A');
            const fsdp_member *m = fsdp_find(pool, path);
            if (!m) continue;
            const void **x = w ? &v.B[p] : &v.A[p];
            float **g = w ? &v.dB[p] : &v.dA[p];
            *x = act_at(pool->dev, m->offset);
            *g = pool->grad_dev ? pool->grad_dev + m->offset : NULL;
        }
    }
    return v;
}
