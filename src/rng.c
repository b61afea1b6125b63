/* rng: xoshiro256** (Blackman and Vigna), seeded through splitmix64. */
#include "rng.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(sl_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_u64(sl_rng *r)
{
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* The state as 256 bits (bit k of word k / 64); step[j][c] is T^(2^j) applied to unit vector c. */
typedef struct {
    uint64_t w[4];
} bits256;

static bits256 step_pow[64][256];
static pthread_once_t step_once = PTHREAD_ONCE_INIT;

static bits256 apply(const bits256 *m, const bits256 *v)
{
    bits256 out = {{0}};
    for (int c = 0; c < 256; c++)
        if (v->w[c / 64] >> (c % 64) & 1)
            for (int k = 0; k < 4; k++) out.w[k] ^= m[c].w[k];
    return out;
}

static void build_steps(void)
{
    for (int c = 0; c < 256; c++) { /* T itself: one step of a unit state */
        sl_rng r = {{0}};
        r.s[c / 64] = 1ull << (c % 64);
        rng_u64(&r);
        memcpy(step_pow[0][c].w, r.s, sizeof r.s);
    }
    for (int j = 1; j < 64; j++)
        for (int c = 0; c < 256; c++) step_pow[j][c] = apply(step_pow[j - 1], &step_pow[j - 1][c]);
}

void rng_advance(sl_rng *r, uint64_t n)
{
    if (n < 64) { /* a few steps are cheaper taken */
        while (n--) rng_u64(r);
        return;
    }
    pthread_once(&step_once, build_steps);
    bits256 v;
    memcpy(v.w, r->s, sizeof v.w);
    for (int j = 0; n; j++, n >>= 1)
        if (n & 1) v = apply(step_pow[j], &v);
    memcpy(r->s, v.w, sizeof v.w);
}

float rng_uniform(sl_rng *r) { return (float)(rng_u64(r) >> 40) * 0x1p-24f; }

double rng_normal(sl_rng *r)
{
    double u1 = ((double)(rng_u64(r) >> 11) + 1.0) * 0x1p-53; /* (0, 1]: log is finite */
    double u2 = (double)(rng_u64(r) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t rng_below(sl_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the bias is below 2^-64 * n, negligible for our sizes. */
    return (uint64_t)(((unsigned __int128)rng_u64(r) * n) >> 64);
}

double rng_hash_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull ^ stream * 0xc2b2ae3d27d4eb4full ^ (index + 1) * 0x165667b19e3779f9ull;
    for (int i = 0; i < 2; i++) { /* two splitmix64 finalisers mix every input bit */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
    }
    return (double)(z >> 11) * 0x1p-53;
}
