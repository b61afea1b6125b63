// gemm: row-major products as cuBLASLt's column-major ones. A row-major M[R, C] is, byte for byte,
// the column-major C x R matrix M^T with leading dimension C, so each product is computed transposed:
//   forward          out^T = W x^T       N x T = (K x N stored, transposed) (K x T)
//   backward data    dx^T  = W^T dout^T  K x T = (K x N) (N x T)
//   backward weight  dw^T  = x^T dout    K x N = (K x T) (N x T stored, transposed)
// Weights are packed (leading dimension = its column-major row count); the token-major operands (x,
// out, dx, dout) may have rows longer than their width: column slices of a wider buffer. Plans (the
// descriptors, layouts and chosen algorithm) are cached per problem key, with the token count T
// rounded up to a bucket (a quarter of an octave): packed batches vary T from one micro-batch to the
// next, and a heuristic query per new T costs a millisecond or more. A call sets its own T on the
// plan's layouts and runs the bucket's algorithm, chosen for the bucket's largest T.
#include "gemm.h"

#include <cublasLt.h>
#include <string.h>
#include <vector>

#include "cuda_common.cuh"

#define CUBLAS_CHECK(call)                                                                        \
    do {                                                                                          \
        cublasStatus_t cublas_rc_ = (call);                                                       \
        if (cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                  \
            sl_fatal("cuBLASLt call failed at %s:%d: %s: %s", __FILE__, __LINE__, #call,          \
                     cublasLtGetStatusName(cublas_rc_));                                          \
    } while (0)

#define GEMM_WORKSPACE_BYTES ((size_t)32 << 20) // what cuBLAS recommends for Hopper
#define GEMM_MAX_DEVICES 64
// Alignment promised to the heuristic for A, B, C and D, at most 16 bytes (what TMA and 128-bit
// loads need): every buffer aligned to 16 bytes or more then shares its shape's key and algorithm.
#define GEMM_ALIGN_CAP 16
// The bias has no alignment preference: the heuristic reads it off the pointer, up to 256 bytes.
#define GEMM_BIAS_ALIGN_CAP 256

// One problem in column-major terms: D (m x n) = alpha op(A) (m x k) op(B) (k x n) + beta C
// (+ bias[m] per column). A and B are bf16; C, when beta = 1, has D's type and layout (it may be D
// itself). All fields int64_t: no padding, so keys compare with memcmp.
typedef struct {
    int64_t m, n, k;          // T in n (t_in_k = 0) or in k, rounded up to its bucket
    int64_t t_in_k;
    int64_t lda, ldb, ldd;    // leading dimensions (column-major), at least the packed ones
    int64_t trans_a, trans_b; // op(A) = A^T, op(B) = B^T
    int64_t d_type;           // CUDA_R_16BF or CUDA_R_32F
    int64_t bias, beta;       // the bias epilogue; beta = 1 (else 0)
    int64_t align_a, align_b, align_d, align_bias; // bytes
} gemm_key;

typedef struct {
    gemm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

typedef struct {
    cublasLtHandle_t handle; // NULL until this device's first GEMM
    void *workspace;
    std::vector<gemm_plan> plans; // a step has a few dozen shapes: a linear scan is enough
} gemm_device;

static gemm_device g_devices[GEMM_MAX_DEVICES];

// What a failure message says about the caller's call.
typedef struct {
    const char *name;
    int T, K, N;
} gemm_call;

static gemm_device *this_device(void)
{
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev >= GEMM_MAX_DEVICES) sl_fatal("internal error: CUDA device %d; gemm keeps state for %d", dev, GEMM_MAX_DEVICES);
    gemm_device *d = &g_devices[dev];
    if (!d->handle) {
        CUBLAS_CHECK(cublasLtCreate(&d->handle));
        CUDA_CHECK(cudaMalloc(&d->workspace, GEMM_WORKSPACE_BYTES));
    }
    return d;
}

// The largest power of two, up to cap, that divides the address.
static int64_t pointer_alignment(const void *p, int64_t cap)
{
    const uintptr_t addr = (uintptr_t)p;
    int64_t align = 1;
    while (align < cap && !(addr & (uintptr_t)align)) align <<= 1;
    return align;
}

static cublasLtMatrixLayout_t layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld)
{
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, (uint64_t)rows, (uint64_t)cols, ld));
    return l;
}

static void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void *value, size_t size)
{
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, value, size));
}

static void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const void *value,
                     size_t size)
{
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, value, size));
}

// The algorithm the heuristic ranks first for the key, with these buffer alignments promised.
static cublasLtMatmulAlgo_t choose_algo(cublasLtHandle_t handle, const gemm_plan *p, const gemm_call *call)
{
    const gemm_key *k = &p->key;
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t workspace = GEMM_WORKSPACE_BYTES;
    const uint32_t align_a = (uint32_t)k->align_a, align_b = (uint32_t)k->align_b, align_d = (uint32_t)k->align_d;
    set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof align_d);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof align_d);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t rc = cublasLtMatmulAlgoGetHeuristic(handle, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (rc != CUBLAS_STATUS_SUCCESS || found < 1 || result.state != CUBLAS_STATUS_SUCCESS)
        sl_fatal("%s: cuBLASLt has no algorithm for T=%d K=%d N=%d (%s output%s%s; buffers aligned to %lld, %lld "
                 "and %lld bytes): %s. Leading dimensions (K, N) or buffers that are not 16-byte aligned narrow "
                 "the choice",
                 call->name, call->T, call->K, call->N, k->d_type == CUDA_R_32F ? "fp32" : "bf16",
                 k->bias ? ", bias" : "", k->beta ? ", accumulating" : "", (long long)k->align_a,
                 (long long)k->align_b, (long long)k->align_d,
                 cublasLtGetStatusName(rc != CUBLAS_STATUS_SUCCESS ? rc : result.state));
    return result.algo;
}

static gemm_plan make_plan(cublasLtHandle_t handle, const gemm_key *k, const void *bias, const gemm_call *call)
{
    gemm_plan p;
    p.key = *k;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const int32_t trans_a = k->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, trans_b = k->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a);
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b);
    if (k->bias) {
        const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = CUDA_R_16BF;
        set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
        set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type);
        set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias); // its alignment guides the heuristic
    }
    // op(A) is m x k and op(B) k x n, so a transposed operand is stored the other way round.
    p.a = k->trans_a ? layout(CUDA_R_16BF, k->k, k->m, k->lda) : layout(CUDA_R_16BF, k->m, k->k, k->lda);
    p.b = k->trans_b ? layout(CUDA_R_16BF, k->n, k->k, k->ldb) : layout(CUDA_R_16BF, k->k, k->n, k->ldb);
    p.d = layout((cudaDataType_t)k->d_type, k->m, k->n, k->ldd);
    p.algo = choose_algo(handle, &p, call);
    return p;
}

// The smallest of 2^e, 1.25 2^e, 1.5 2^e and 1.75 2^e at or above T (T itself below 64).
static int64_t t_bucket(int64_t T)
{
    if (T <= 64) return T;
    int64_t octave = 64;
    while (2 * octave < T) octave *= 2;
    for (int q = 5; q <= 8; q++)
        if (octave * q / 4 >= T) return octave * q / 4;
    return 2 * octave;
}

// T is the column count of the layouts that hold it: B and D when T is n, A and B when it is k
// (the operand layouts of kc_linear_*, see the top of the file).
static void set_t(const gemm_plan *p, int64_t T)
{
    const uint64_t cols = (uint64_t)T;
    const cublasLtMatrixLayout_t with_t[2] = {p->key.t_in_k ? p->a : p->b, p->key.t_in_k ? p->b : p->d};
    for (cublasLtMatrixLayout_t l : with_t)
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols));
}

// D = alpha op(A) op(B) (+ C) (+ bias), with the plan of this key (made on its first use) at the
// call's own T. C (NULL: none) has D's layout and may be D itself.
static void gemm_run(gemm_key *key, const void *a, const void *b, const void *c, void *d, const void *bias,
                     float alpha, cudaStream_t s, const gemm_call *call)
{
    if (call->T < 0 || call->K < 1 || call->N < 1 || key->lda < (key->trans_a ? key->k : key->m) ||
        key->ldb < (key->trans_b ? key->n : key->k) || key->ldd < key->m)
        sl_fatal("internal error: %s with T=%d K=%d N=%d and leading dimensions %lld, %lld, %lld", call->name, call->T,
                 call->K, call->N, (long long)key->lda, (long long)key->ldb, (long long)key->ldd);
    *(key->t_in_k ? &key->k : &key->n) = t_bucket(call->T);
    gemm_device *dev = this_device();
    key->align_a = pointer_alignment(a, GEMM_ALIGN_CAP);
    key->align_b = pointer_alignment(b, GEMM_ALIGN_CAP);
    key->beta = c != NULL;
    key->align_d = pointer_alignment(d, GEMM_ALIGN_CAP);
    if (c) key->align_d = std::min(key->align_d, pointer_alignment(c, GEMM_ALIGN_CAP)); // one promise for both
    key->align_bias = key->bias ? pointer_alignment(bias, GEMM_BIAS_ALIGN_CAP) : 0;
    const gemm_plan *plan = NULL;
    for (const gemm_plan &p : dev->plans)
        if (!memcmp(&p.key, key, sizeof *key)) {
            plan = &p;
            break;
        }
    if (!plan) {
        dev->plans.push_back(make_plan(dev->handle, key, bias, call));
        plan = &dev->plans.back();
    }
    set_t(plan, call->T);
    if (key->bias) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    const float beta = key->beta ? 1.0f : 0.0f;
    const void *c_or_d = c ? c : d; // read only when beta is 1
    cublasStatus_t rc = cublasLtMatmul(dev->handle, plan->desc, &alpha, a, plan->a, b, plan->b, &beta, c_or_d, plan->d,
                                       d, plan->d, &plan->algo, dev->workspace, GEMM_WORKSPACE_BYTES, s);
    if (rc == CUBLAS_STATUS_NOT_SUPPORTED) { // the bucket's algorithm does not take this T: ask for one that does
        const cublasLtMatmulAlgo_t exact = choose_algo(dev->handle, plan, call);
        rc = cublasLtMatmul(dev->handle, plan->desc, &alpha, a, plan->a, b, plan->b, &beta, c_or_d, plan->d, d,
                            plan->d, &exact, dev->workspace, GEMM_WORKSPACE_BYTES, s);
    }
    CUBLAS_CHECK(rc);
}

// out[t, n] += bias[n]: cuBLASLt's bias epilogue wants a bias of the output's type, fp32 here.
static __global__ void add_bias_f32(float *out, const bf16 *bias, int64_t total, int N)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) out[i] += __bfloat162float(bias[i % N]);
}

extern "C" void kc_linear_fwd(void *out, int out_f32, int ldout, const void *x, int ldx, const void *w,
                              const void *bias, int T, int K, int N, float scale, const void *addend, cudaStream_t s)
{
    if (T == 0) return;
    const gemm_call call = {"kc_linear_fwd", T, K, N};
    const int fused_bias = bias && !out_f32;
    // out^T (N x T) = op(A) op(B) with A = W stored as W^T (K x N), transposed, and B = x^T (K x T).
    gemm_key key = {};
    key.m = N, key.k = K, key.trans_a = 1, key.trans_b = 0, key.lda = K, key.ldb = ldx, key.ldd = ldout;
    key.d_type = out_f32 ? CUDA_R_32F : CUDA_R_16BF, key.bias = fused_bias;
    gemm_run(&key, w, x, addend, out, fused_bias ? bias : NULL, scale, s, &call);
    if (bias && out_f32) {
        if (ldout != N) sl_fatal("internal error: kc_linear_fwd adds an fp32 output's bias to packed rows only");
        const int64_t total = (int64_t)T * N;
        add_bias_f32<<<kc_blocks(total, 256), 256, 0, s>>>((float *)out, (const bf16 *)bias, total, N);
        CUDA_LAUNCHED();
    }
}

extern "C" void kc_linear_bwd_data(void *dx, int lddx, const void *dout, int lddout, const void *w, int T, int K,
                                   int N, float scale, int accumulate, cudaStream_t s)
{
    if (T == 0) return;
    const gemm_call call = {"kc_linear_bwd_data", T, K, N};
    // dx^T (K x T) = op(A) op(B) with A = W stored as W^T (K x N) and B = dout^T (N x T), neither transposed.
    gemm_key key = {};
    key.m = K, key.k = N, key.trans_a = 0, key.trans_b = 0, key.lda = K, key.ldb = lddout, key.ldd = lddx;
    key.d_type = CUDA_R_16BF, key.bias = 0;
    gemm_run(&key, w, dout, accumulate ? dx : NULL, dx, NULL, scale, s, &call);
}

extern "C" void kc_linear_bwd_weight(float *dw, const void *dout, int lddout, const void *x, int ldx, int T, int K,
                                     int N, float scale, cudaStream_t s)
{
    if (T == 0) return;
    const gemm_call call = {"kc_linear_bwd_weight", T, K, N};
    // dw^T (K x N) = op(A) op(B) with A = x^T (K x T) and B = dout^T (N x T), transposed to dout (T x N).
    gemm_key key = {};
    key.m = K, key.n = N, key.t_in_k = 1, key.trans_a = 0, key.trans_b = 1, key.lda = ldx, key.ldb = lddout, key.ldd = K;
    key.d_type = CUDA_R_32F, key.bias = 0;
    gemm_run(&key, x, dout, dw, dw, NULL, scale, s, &call);
}

extern "C" size_t kc_gemm_workspace_bytes(void) { return GEMM_WORKSPACE_BYTES; }
