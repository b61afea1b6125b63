/* rng: a small, fast, reproducible random generator (xoshiro256**, seeded by splitmix64), whose
 * state is four words, so checkpoints can store and restore it exactly; and counter-based
 * generators, whose every value is a function of (seed, stream, index) alone. */
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
/* Uniform in [0, 1) with 24 random bits (exactly representable in float). */
float rng_uniform(sl_rng *r);
/* Uniform integer in [0, n). */
uint64_t rng_below(sl_rng *r, uint64_t n);

/* A 64-bit hash of a name (FNV-1a): the stream of a named tensor, or an identity to compare. */
uint64_t rng_name_hash(const char *name);

/* Counter-based uniform in [0, 1) from (seed, stream, index) alone: the same value whatever
 * generates it, on any rank, in any order (adapter initialisation, dropout masks). */
double rng_hash_uniform(uint64_t seed, uint64_t stream, uint64_t index);

/* Philox4x32-10 (Salmon et al., SC'11), the block function of the normals below. */
void rng_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* Counter-based standard normals: out[k] is normal number first + k of (seed, stream), the same
 * whoever generates it, in any order. Number i is in group g = i / 4L (L = RNG_NORMAL_LANES) at
 * offset s L + j: lane j takes Philox4x32-10 of the counter (c, c >> 32, stream, stream >> 32),
 * c = g L + j, under the key (seed, seed >> 32) (words: the low 32 bits), and makes two Box-Muller
 * pairs in float32, from words (x0, x1) for offsets j (r cos t) and L + j (r sin t), from (x2, x3)
 * for 2L + j and 3L + j: r = sqrt(-2 ln u), u = float((x0 >> 1) + 1/2) / 2^31 (so |z| < 6.7), and
 * t = 2 pi (x1 >> 8) / 2^24. About 3 ns a normal on one core with AVX-512, 5 ns with SSE2. */
#define RNG_NORMAL_LANES 64
void rng_normals(uint64_t seed, uint64_t stream, uint64_t first, int64_t count, float *out);

#ifdef __cplusplus
}
#endif

#endif
