/* rng: xoshiro256** (Blackman and Vigna), seeded through splitmix64; counter-based hashes and normals. */
#include "rng.h"

#include <math.h>
#include <string.h>

#include "vector_clones.h"

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

float rng_uniform(sl_rng *r) { return (float)(rng_u64(r) >> 40) * 0x1p-24f; }

uint64_t rng_below(sl_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the bias is below 2^-64 * n, negligible for our sizes. */
    return (uint64_t)(((unsigned __int128)rng_u64(r) * n) >> 64);
}

uint64_t rng_name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    return h;
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

/* ---- Philox4x32-10 and the normals drawn from it ---- */

typedef struct {
    uint32_t w[4];
} philox_words;

static inline philox_words philox(philox_words x, uint32_t k0, uint32_t k1)
{
#pragma GCC unroll 10
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * x.w[0], p1 = (uint64_t)0xCD9E8D57u * x.w[2];
        x = (philox_words){{(uint32_t)(p1 >> 32) ^ x.w[1] ^ k0, (uint32_t)p1, (uint32_t)(p0 >> 32) ^ x.w[3] ^ k1,
                            (uint32_t)p0}};
        k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
    return x;
}

void rng_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
    philox_words x = philox((philox_words){{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
    memcpy(out, x.w, sizeof x.w);
}

static inline uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ln(u) for u in (0, 1], Cephes' logf (about 1 ulp): adds and multiplies only, so loops vectorise. */
static inline float log_unit(float u)
{
    uint32_t b = f32_bits(u), mant = b & 0x7fffffu;
    int below = mant < 0x3504f3u; /* u = m * 2^e with m in [sqrt(1/2), sqrt(2)) */
    int e = (int)(b >> 23) - 126 - below;
    float m = bits_f32(mant | (below ? 0x3f800000u : 0x3f000000u)) - 1.0f;
    float z = m * m, fe = (float)e;
    float y = ((((((((7.0376836292E-2f * m - 1.1514610310E-1f) * m + 1.1676998740E-1f) * m - 1.2420140846E-1f) * m +
                   1.4249322787E-1f) * m - 1.6668057665E-1f) * m + 2.0000714765E-1f) * m - 2.4999993993E-1f) * m +
               3.3333331174E-1f) * m * z;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return m + y + 0.693359375f * fe;
}

/* Box-Muller from two words: the radius from a's top 31 bits (the middle of each step of u, exact
 * where u is small, so the tails keep their weight), the angle from b's top 24 bits in quarter turns
 * (the nearest one exactly, the rest through Cephes' sinf and cosf polynomials on [-pi/4, pi/4]). */
typedef struct {
    float z_cos, z_sin;
} normal_pair;

static inline __attribute__((always_inline)) normal_pair box_muller(uint32_t a, uint32_t b)
{
    float r = sqrtf(-2.0f * log_unit(((float)(int32_t)(a >> 1) + 0.5f) * 0x1p-31f));
    int32_t k = (int32_t)(b >> 8), q = (k + (1 << 21)) >> 22;
    float x = (float)(k - q * (1 << 22)) * 0x1.921fb6p-22f, z = x * x; /* pi/2 * 2^-22 */
    float s = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * x + x;
    float c = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z + 4.166664568298827E-2f) * z * z;
    c = c - 0.5f * z + 1.0f;
    float c_q = q & 1 ? s : c, s_q = q & 1 ? c : s; /* rotate by q quarter turns */
    return (normal_pair){r * ((q + 1) & 2 ? -c_q : c_q), r * (q & 2 ? -s_q : s_q)};
}

enum { NORMAL_GROUP = 4 * RNG_NORMAL_LANES };

VECTOR_CLONES static void normals_group(uint64_t seed, uint64_t stream, uint64_t g, float *out)
{
    enum { L = RNG_NORMAL_LANES };
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    const uint32_t s0 = (uint32_t)stream, s1 = (uint32_t)(stream >> 32);
#pragma omp simd
    for (int j = 0; j < L; j++) {
        uint64_t c = g * L + (uint64_t)j;
        philox_words x = philox((philox_words){{(uint32_t)c, (uint32_t)(c >> 32), s0, s1}}, k0, k1);
        normal_pair p = box_muller(x.w[0], x.w[1]), p2 = box_muller(x.w[2], x.w[3]);
        out[j] = p.z_cos, out[L + j] = p.z_sin, out[2 * L + j] = p2.z_cos, out[3 * L + j] = p2.z_sin;
    }
}

void rng_normals(uint64_t seed, uint64_t stream, uint64_t first, int64_t count, float *out)
{
    const uint64_t G = NORMAL_GROUP, end = first + (uint64_t)(count > 0 ? count : 0);
    for (uint64_t g = first / G; g * G < end; g++) {
        uint64_t lo = g * G > first ? g * G : first, hi = (g + 1) * G < end ? (g + 1) * G : end;
        if (hi - lo == G) {
            normals_group(seed, stream, g, out + (lo - first));
            continue;
        }
        float part[NORMAL_GROUP]; /* a group cut by the range's ends */
        normals_group(seed, stream, g, part);
        memcpy(out + (lo - first), part + (lo - g * G), (size_t)(hi - lo) * sizeof *part);
    }
}
