/* synth: the weights shardlora-init makes, and model files that keep only their recipe. A weight's
 * element i is a function of the seed, the tensor's path and i alone (normal(0, std) for matrices,
 * ones for norms, zeros for biases, rounded to bf16 for bf16 models), so a reader can make any
 * range of it where it would have read the range. shardlora-init --generate-at-load writes /config
 * and that recipe (root attributes synthetic_seed, synthetic_std, synthetic_bf16) without the weights: a model whose bytes would not fit
 * the disk (a 70B-class model in INT8 is 70 GB) loads, quantizes and trains as the full file would. */
#ifndef SL_SYNTH_H
#define SL_SYNTH_H

#include <hdf5.h>
#include <stdint.h>

#include "modelcfg.h"

typedef struct {
    uint64_t seed;
    double std;
    int bf16; /* values rounded to bf16, as a bf16 file stores them */
} synth_recipe;

/* Values [e0, e0 + count) of the tensor at path of the given kind into w, and with words (bf16
 * models) also their bf16 words (w then holds what a reader of those words gets). One thread. */
void synth_values(const synth_recipe *r, sl_tensor_kind kind, const char *path, int64_t e0, int64_t count, float *w,
                  uint16_t *words);
/* The kind of a model tensor from its path (the naming of modelcfg_tensors). */
sl_tensor_kind synth_kind_of(const char *path);

/* Whether a model file keeps a recipe instead of weights (its recipe into r), and writing one. */
int synth_recipe_of(hid_t file, synth_recipe *r);
void synth_write_recipe(hid_t file, const synth_recipe *r);

/* For tools that need stored weights: a recipe file ends the program, saying what it is. */
void synth_refuse(hid_t file, const char *tool);

/* Elements [start, start + count) of the model weight at path as fp32: read, or made on every
 * thread from the file's recipe. Collective where h5_read_range is (count may be 0). */
void weights_read_range(hid_t file, const char *path, int64_t start, int64_t count, float *out);

#endif
