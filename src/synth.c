/* synth: shardlora-init's weights, made anywhere from their recipe (synth.h). */
#include "synth.h"

#include <string.h>

#include "dtype.h"
#include "h5io.h"
#include "rng.h"
#include "runtime.h"

enum { PIECE = 1 << 16, WORDS = 4096 }; /* elements a thread makes at a time; bf16 words rounded at a time */

void synth_values(const synth_recipe *r, sl_tensor_kind kind, const char *path, int64_t e0, int64_t count, float *w,
                  uint16_t *words)
{
    if (kind == TENSOR_NORM || kind == TENSOR_BIAS) {
        const float v = kind == TENSOR_NORM ? 1.0f : 0.0f;
        for (int64_t i = 0; i < count; i++) w[i] = v;
    } else {
        /* the stream of the path: the same values in a file of any number of layers */
        rng_normals(r->seed, rng_name_hash(path), (uint64_t)e0, count, w);
        const float std = (float)r->std;
        for (int64_t i = 0; i < count; i++) w[i] *= std;
    }
    if (!r->bf16) return;
    uint16_t local[WORDS];
    for (int64_t i = 0; i < count; i += WORDS) { /* words NULL: a reader wants the rounded values only */
        const int64_t n = count - i < WORDS ? count - i : WORDS;
        uint16_t *u = words ? words + i : local;
        sl_from_f32(u, w + i, SL_BF16, (size_t)n);
        sl_to_f32(w + i, u, SL_BF16, (size_t)n);
    }
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && !strcmp(s + n - m, tail);
}

sl_tensor_kind synth_kind_of(const char *path)
{
    if (ends_with(path, "norm/weight")) return TENSOR_NORM;
    if (ends_with(path, "/bias")) return TENSOR_BIAS;
    if (strstr(path, "embed_tokens")) return TENSOR_EMBEDDING;
    if (strstr(path, "lm_head")) return TENSOR_LM_HEAD;
    return TENSOR_LINEAR;
}

int synth_recipe_of(hid_t file, synth_recipe *r)
{
    if (!h5_has_attr(file, "/", "synthetic_seed")) return 0;
    r->seed = (uint64_t)h5_attr_int(file, "/", "synthetic_seed");
    r->std = h5_attr_double(file, "/", "synthetic_std");
    r->bf16 = (int)h5_attr_int(file, "/", "synthetic_bf16");
    return 1;
}

void synth_write_recipe(hid_t file, const synth_recipe *r)
{
    h5_set_attr_int(file, "/", "synthetic_seed", (int64_t)r->seed);
    h5_set_attr_double(file, "/", "synthetic_std", r->std);
    h5_set_attr_int(file, "/", "synthetic_bf16", r->bf16);
}

void synth_refuse(hid_t file, const char *tool)
{
    synth_recipe r;
    if (synth_recipe_of(file, &r))
        sl_fatal("%s: this model file keeps no weights, only the seed they are made from at load "
                 "(shardlora-init --generate-at-load); %s needs stored weights: write the file with "
                 "shardlora-init without --generate-at-load", h5_name(file), tool);
}

void weights_read_range(hid_t file, const char *path, int64_t start, int64_t count, float *out)
{
    synth_recipe r;
    if (!synth_recipe_of(file, &r)) {
        h5_read_range(file, path, SL_F32, start, count, out);
        return;
    }
    const sl_tensor_kind kind = synth_kind_of(path);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; i += PIECE)
        synth_values(&r, kind, path, start + i, count - i < PIECE ? count - i : PIECE, out + i, NULL);
}
