/* rng: a small, fast, reproducible random generator (xoshiro256**, seeded by splitmix64). Its
 * state is four words, so checkpoints can store and restore it exactly. */
#ifndef SL_RNG_H
#define SL_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t s[4];
} sl_rng;

/* Independent streams for one seed: stream distinguishes uses (ranks, tensors, dropout, ...). */
void rng_seed(sl_rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_u64(sl_rng *r);
/* Move r n draws of rng_u64 ahead, as n calls would, in O(log n) (xoshiro's step is linear over
 * GF(2): the powers T^(2^j) of its 256 x 256 bit matrix are built once). Thread-safe. */
void rng_advance(sl_rng *r, uint64_t n);
/* Uniform in [0, 1) with 24 random bits (exactly representable in float). */
float rng_uniform(sl_rng *r);
/* Standard normal (Box-Muller in double). */
double rng_normal(sl_rng *r);
/* Uniform integer in [0, n). */
uint64_t rng_below(sl_rng *r, uint64_t n);

/* Counter-based uniform in [0, 1) from (seed, stream, index) alone: the same value whatever
 * generates it, on any rank, in any order (adapter initialisation, dropout masks). */
double rng_hash_uniform(uint64_t seed, uint64_t stream, uint64_t index);

#ifdef __cplusplus
}
#endif

#endif
