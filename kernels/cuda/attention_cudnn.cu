// attention_cudnn: the entry points of kernels/cuda/attention.h. cuDNN's fused flash attention (SDPA
// through the cuDNN frontend's graph API) runs the packed documents as one ragged (THD) batch; head
// configurations cuDNN refuses go to kernels/cuda/attention_fallback.cu. The frontend is header-only
// and slow to compile, so it stays in this one file.
//
// The ragged batch: B = n_seqs rounded up to a power of two, the extra sequences of length 0 (as
// Transformer Engine pads its THD batches), and S = max_seq rounded up to 64. Q, K, V, O and their
// gradients are declared [B, H, S, D] with the strides of token-major tensors (Q, K, V and their
// gradients: column slices of the fused [T, ld] q/k/v buffer; O and dO packed [T, H*D]); per-sequence
// lengths (seq_len_q = seq_len_kv, padding mask) and ragged offsets in elements (seq_start * ld, or
// seq_start * H * D for O and dO) say where each sequence is. Stats are [B, H, S, 1] with strides (-, 1, H, -) and ragged offsets
// seq_start * H, that is a token-major fp32 [T, nh] array, the layout the fallback writes too.
// The backward is cuDNN's deterministic one, which keeps dP in the workspace: B x nh x S^2 x 2 bytes,
// the largest cost of the padded [B, S] view (17 GiB for 64 short documents of a 2048 window at 32
// heads). So it runs over groups of sequences, a power of two at a time, that keep dP within
// ATTN_DP_CAP; where one sequence alone exceeds it (long contexts), the whole batch takes cuDNN's
// non-deterministic backward, which keeps no dP.
//
// Per device: one cuDNN handle; a plan cache keyed by (nh, nkv, hd, ld, B, S, scale), so after warm-up
// a varying n_seqs builds nothing; one workspace that only grows; and a ring of staging slots for the
// per-call int32 arrays (pinned host copy, device copy, an event saying when the call that used the
// slot is done).

// The frontend's own headers trip these; they are not about this file's code.
#pragma nv_diag_suppress 128  // loop is not reachable
#pragma nv_diag_suppress 2810 // ignoring return value type with "nodiscard" attribute
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <cudnn_frontend.h>
#pragma GCC diagnostic pop

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "attention.h"
#include "attention_fallback.h"
#include "cuda_common.cuh"

namespace fe = cudnn_frontend;
typedef fe::graph::Graph Graph;
typedef fe::graph::Tensor_attributes TensorAttrs;
typedef std::shared_ptr<TensorAttrs> Tensor;
typedef std::unordered_map<TensorAttrs::uid_t, void *> VariantPack;

#define CUDNN_CHECK(call)                                                                         \
    do {                                                                                          \
        cudnnStatus_t cudnn_rc_ = (call);                                                         \
        if (cudnn_rc_ != CUDNN_STATUS_SUCCESS)                                                    \
            sl_fatal("cuDNN call failed at %s:%d: %s: %s", __FILE__, __LINE__, #call,             \
                     cudnnGetErrorString(cudnn_rc_));                                             \
    } while (0)

// Tensor ids in the variant pack.
enum : TensorAttrs::uid_t {
    U_Q = 1, U_K, U_V, U_O, U_DO, U_DQ, U_DK, U_DV, U_STATS,
    U_SEQ_Q, U_SEQ_KV, U_OFF_Q, U_OFF_K, U_OFF_V, U_OFF_O, U_OFF_STATS,
};

// A graph's shape: batch and seq are the bucketed B and S.
struct Shape {
    int nh, nkv, hd, ld, batch, seq; // ld: the row stride of Q, K, V
    float scale;
    int deterministic; // the backward's algorithm
};

typedef std::tuple<int, int, int, int, int, int, uint32_t, int> PlanKey;

static PlanKey key_of(const Shape &sh)
{
    uint32_t scale_bits;
    memcpy(&scale_bits, &sh.scale, sizeof scale_bits);
    return PlanKey(sh.nh, sh.nkv, sh.hd, sh.ld, sh.batch, sh.seq, scale_bits, sh.deterministic);
}

#define ATTN_DP_CAP ((size_t)1 << 30) // seq 4096 at 32 heads still deterministic

static int padded_seq(int max_seq) { return (max_seq + 63) / 64 * 64; }

// The deterministic backward's dP for one sequence of the padded view: nh x S^2 bf16.
static size_t dp_bytes_per_seq(int max_seq, int nh)
{
    return (size_t)nh * padded_seq(max_seq) * padded_seq(max_seq) * 2;
}

// Sequences per deterministic backward call: the largest power of two whose dP fits ATTN_DP_CAP,
// or 0 when one sequence does not.
static int backward_group(int max_seq, int nh)
{
    const size_t per_seq = dp_bytes_per_seq(max_seq, nh);
    if (per_seq > ATTN_DP_CAP) return 0;
    int g = 1;
    while (2 * g * per_seq <= ATTN_DP_CAP) g *= 2;
    return g;
}

static std::string describe(const Shape &sh)
{
    char buf[160];
    snprintf(buf, sizeof buf, "nh %d, nkv %d, head_dim %d, rows %d apart, batch bucket %d, max_seq %d", sh.nh, sh.nkv,
             sh.hd, sh.ld, sh.batch, sh.seq);
    return buf;
}

// ---- the graphs ----

static Tensor index_tensor(Graph &g, const char *name, TensorAttrs::uid_t uid, int64_t n)
{
    return g.tensor(TensorAttrs().set_name(name).set_uid(uid).set_dim({n, 1, 1, 1}).set_stride({1, 1, 1, 1})
                        .set_data_type(fe::DataType_t::INT32));
}

// The per-sequence lengths and ragged offsets of one graph; Q and dQ share theirs, as do O and dO.
struct Index {
    Tensor seq_q, seq_kv, off_q, off_k, off_v, off_o, off_stats;
};

static Index index_tensors(Graph &g, int64_t b)
{
    return {index_tensor(g, "seq_len_q", U_SEQ_Q, b),       index_tensor(g, "seq_len_kv", U_SEQ_KV, b),
            index_tensor(g, "offsets_q", U_OFF_Q, b + 1),    index_tensor(g, "offsets_k", U_OFF_K, b + 1),
            index_tensor(g, "offsets_v", U_OFF_V, b + 1),    index_tensor(g, "offsets_o", U_OFF_O, b + 1),
            index_tensor(g, "offsets_stats", U_OFF_STATS, b + 1)};
}

// [B, heads, S, D] over a token-major tensor whose rows are ld apart: the ragged offsets replace the
// batch stride.
static TensorAttrs &as_thd(TensorAttrs &t, const Shape &sh, int heads, int64_t ld, const Tensor &offsets)
{
    int64_t h = heads, s = sh.seq, d = sh.hd;
    return t.set_dim({sh.batch, h, s, d}).set_stride({s * ld, d, ld, 1}).set_ragged_offset(offsets);
}

// Q, K, V and their gradients sit in the fused q/k/v buffer; O and dO are packed.
static TensorAttrs &as_qkv(TensorAttrs &t, const Shape &sh, int heads, const Tensor &offsets)
{
    return as_thd(t, sh, heads, sh.ld, offsets);
}

static TensorAttrs &as_o(TensorAttrs &t, const Shape &sh, const Tensor &offsets)
{
    return as_thd(t, sh, sh.nh, (int64_t)sh.nh * sh.hd, offsets);
}

static TensorAttrs &as_stats(TensorAttrs &t, const Shape &sh, const Tensor &offsets)
{
    int64_t h = sh.nh, s = sh.seq;
    return t.set_dim({sh.batch, h, s, 1}).set_stride({s * h, 1, h, 1}).set_data_type(fe::DataType_t::FLOAT)
        .set_ragged_offset(offsets);
}

static Tensor qkv_input(Graph &g, const char *name, TensorAttrs::uid_t uid, const Shape &sh, int heads,
                        const Tensor &offsets)
{
    return g.tensor(as_qkv(TensorAttrs().set_name(name).set_uid(uid), sh, heads, offsets));
}

static Tensor o_input(Graph &g, const char *name, TensorAttrs::uid_t uid, const Shape &sh, const Tensor &offsets)
{
    return g.tensor(as_o(TensorAttrs().set_name(name).set_uid(uid), sh, offsets));
}

static std::shared_ptr<Graph> new_graph(void)
{
    auto g = std::make_shared<Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    return g;
}

// Causal is the top-left diagonal band with right bound 0, inside each sequence's padding mask.
static std::shared_ptr<Graph> forward_graph(const Shape &sh)
{
    auto g = new_graph();
    Index ix = index_tensors(*g, sh.batch);
    Tensor q = qkv_input(*g, "Q", U_Q, sh, sh.nh, ix.off_q);
    Tensor k = qkv_input(*g, "K", U_K, sh, sh.nkv, ix.off_k);
    Tensor v = qkv_input(*g, "V", U_V, sh, sh.nkv, ix.off_v);
    auto attrs = fe::graph::SDPA_attributes()
                     .set_name("attention")
                     .set_generate_stats(true)
                     .set_attn_scale(sh.scale)
                     .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                     .set_diagonal_band_right_bound(0)
                     .set_padding_mask(true)
                     .set_seq_len_q(ix.seq_q)
                     .set_seq_len_kv(ix.seq_kv);
    auto [o, stats] = g->sdpa(q, k, v, std::move(attrs));
    as_o(o->set_output(true).set_uid(U_O), sh, ix.off_o);
    as_stats(stats->set_output(true).set_uid(U_STATS), sh, ix.off_stats);
    return g;
}

static std::shared_ptr<Graph> backward_graph(const Shape &sh)
{
    auto g = new_graph();
    Index ix = index_tensors(*g, sh.batch);
    Tensor q = qkv_input(*g, "Q", U_Q, sh, sh.nh, ix.off_q);
    Tensor k = qkv_input(*g, "K", U_K, sh, sh.nkv, ix.off_k);
    Tensor v = qkv_input(*g, "V", U_V, sh, sh.nkv, ix.off_v);
    Tensor o = o_input(*g, "O", U_O, sh, ix.off_o);
    Tensor dout = o_input(*g, "dO", U_DO, sh, ix.off_o);
    Tensor stats = g->tensor(as_stats(TensorAttrs().set_name("Stats").set_uid(U_STATS), sh, ix.off_stats));
    auto attrs = fe::graph::SDPA_backward_attributes()
                     .set_name("attention_backward")
                     .set_attn_scale(sh.scale)
                     .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                     .set_diagonal_band_right_bound(0)
                     .set_padding_mask(true)
                     .set_seq_len_q(ix.seq_q)
                     .set_seq_len_kv(ix.seq_kv)
                     .set_deterministic_algorithm(sh.deterministic);
    auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, std::move(attrs));
    as_qkv(dq->set_output(true).set_uid(U_DQ), sh, sh.nh, ix.off_q);
    as_qkv(dk->set_output(true).set_uid(U_DK), sh, sh.nkv, ix.off_k);
    as_qkv(dv->set_output(true).set_uid(U_DV), sh, sh.nkv, ix.off_v);
    return g;
}

// Builds one direction's graph through the frontend's steps; "" when all pass, else the step that
// failed and what cuDNN said.
#define BUILD_STEP(call)                                                                          \
    do {                                                                                          \
        fe::error_t step_rc_ = (call);                                                            \
        if (step_rc_.is_bad()) return std::string(#call) + ": " + step_rc_.get_message();         \
    } while (0)

static std::string build_graph(std::shared_ptr<Graph> &g, const Shape &sh, bool backward, cudnnHandle_t handle,
                               int64_t &workspace)
{
    try {
        g = backward ? backward_graph(sh) : forward_graph(sh);
        BUILD_STEP(g->validate());
        BUILD_STEP(g->build_operation_graph(handle));
        BUILD_STEP(g->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}));
        BUILD_STEP(g->check_support());
        BUILD_STEP(g->build_plans());
        BUILD_STEP(g->get_workspace_size(workspace));
    } catch (const std::exception &e) { // the frontend's legacy layer throws cudnnException
        return std::string("exception: ") + e.what();
    }
    return "";
}

// ---- per-device state ----

struct Built {
    std::shared_ptr<Graph> graph;
    int64_t workspace = 0;
};

struct Plan {
    Built fwd, bwd;
};

// One call's int32 arrays: filled on the host (pinned), copied on the call's stream; reused only when
// the event recorded after the call that used it last has completed.
struct Slot {
    int32_t *host = nullptr, *dev = nullptr;
    size_t cap = 0; // int32 elements
    cudaEvent_t done = nullptr;
    bool pending = false;
};

// Enough calls in flight that the host rarely waits for a slot.
#define N_SLOTS 32

struct Device {
    cudnnHandle_t handle = nullptr;
    std::map<PlanKey, Plan> plans;
    std::map<std::tuple<int, int, int, int>, bool> takes; // (nh, nkv, hd, ld) -> cuDNN takes it
    void *ws = nullptr;
    size_t ws_bytes = 0;
    cudaEvent_t ws_done = nullptr; // recorded after the last call that used ws, on ws_stream
    cudaStream_t ws_stream = nullptr;
    bool ws_pending = false;
    Slot slots[N_SLOTS];
    int next_slot = 0;
};

static Device &device_state(void)
{
    // Never destroyed: tearing plans down after the CUDA runtime has shut down at exit would crash.
    static std::map<int, Device> *devices = new std::map<int, Device>;
    int id;
    CUDA_CHECK(cudaGetDevice(&id));
    auto it = devices->find(id);
    if (it != devices->end()) return it->second;
    Device &d = (*devices)[id];
    CUDNN_CHECK(cudnnCreate(&d.handle));
    CUDA_CHECK(cudaEventCreateWithFlags(&d.ws_done, cudaEventDisableTiming));
    for (Slot &s : d.slots) CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    return d;
}

static Slot &take_slot(Device &d, size_t n)
{
    Slot &s = d.slots[d.next_slot];
    d.next_slot = (d.next_slot + 1) % N_SLOTS;
    if (s.pending) CUDA_CHECK(cudaEventSynchronize(s.done));
    if (s.cap < n) {
        if (s.host) {
            CUDA_CHECK(cudaFreeHost(s.host));
            CUDA_CHECK(cudaFree(s.dev));
        }
        s.cap = n < 1024 ? 1024 : n;
        CUDA_CHECK(cudaMallocHost(&s.host, s.cap * sizeof(int32_t)));
        CUDA_CHECK(cudaMalloc(&s.dev, s.cap * sizeof(int32_t)));
    }
    return s;
}

static void upload(const Slot &s, size_t n, cudaStream_t stream)
{
    CUDA_CHECK(cudaMemcpyAsync(s.dev, s.host, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
}

static void release_slot(Slot &s, cudaStream_t stream)
{
    CUDA_CHECK(cudaEventRecord(s.done, stream));
    s.pending = true;
}

// The shared workspace, at least bytes large, safe to use on stream: a call on another stream than
// the last waits for it; growing frees the old buffer only after its last use has finished.
static void *workspace_for(Device &d, size_t bytes, cudaStream_t stream, const Shape &sh)
{
    if (bytes > d.ws_bytes) {
        if (d.ws_pending) CUDA_CHECK(cudaEventSynchronize(d.ws_done));
        CUDA_CHECK(cudaFree(d.ws));
        d.ws = nullptr, d.ws_bytes = 0;
        cudaError_t rc = cudaMalloc(&d.ws, bytes);
        if (rc != cudaSuccess)
            sl_fatal("cuDNN attention: no memory for a %.2f GiB workspace (%s): %s; the deterministic backward "
                     "needs about batch bucket x nh x max_seq^2 x 2 bytes", (double)bytes / (1 << 30),
                     describe(sh).c_str(), cudaGetErrorString(rc));
        d.ws_bytes = bytes;
    } else if (d.ws_pending && d.ws_stream != stream) {
        CUDA_CHECK(cudaStreamWaitEvent(stream, d.ws_done, 0));
    }
    return d.ws;
}

static void workspace_used(Device &d, cudaStream_t stream)
{
    CUDA_CHECK(cudaEventRecord(d.ws_done, stream));
    d.ws_stream = stream, d.ws_pending = true;
}

// ---- plans ----

// One direction's graph for a shape; an empty graph and the reason when cuDNN refuses it.
static Built build_plan(Device &d, const Shape &sh, bool backward, std::string &why)
{
    double t0 = rt_now();
    Built b;
    why = build_graph(b.graph, sh, backward, d.handle, b.workspace);
    if (!why.empty()) return Built();
    log_info("attention: cuDNN %s plan for %s built in %.2f s, workspace %.1f MiB", backward ? "backward" : "forward",
             describe(sh).c_str(), rt_now() - t0, (double)b.workspace / (1 << 20));
    return b;
}

// Whether cuDNN takes a head configuration and row stride, decided once: both plans must build for one
// small batch.
static bool cudnn_takes(Device &d, int nh, int nkv, int hd, int ld)
{
    auto heads = std::make_tuple(nh, nkv, hd, ld);
    auto it = d.takes.find(heads);
    if (it != d.takes.end()) return it->second;
    Shape probe = {nh, nkv, hd, ld, 1, 64, 1.0f / sqrtf((float)hd), 1};
    std::string why;
    Plan p;
    p.fwd = build_plan(d, probe, false, why);
    if (p.fwd.graph) p.bwd = build_plan(d, probe, true, why);
    bool ok = p.fwd.graph && p.bwd.graph;
    if (ok) d.plans[key_of(probe)] = p;
    else log_warn("attention: cuDNN refuses nh %d, nkv %d, head_dim %d, rows %d apart (%s); using the fallback kernel",
                  nh, nkv, hd, ld, why.c_str());
    d.takes[heads] = ok;
    return ok;
}

// The cached plan of a shape; cuDNN refusing it now is fatal, since it took the probe of these heads.
static const Built &plan_for(Device &d, const Shape &sh, bool backward)
{
    Plan &p = d.plans[key_of(sh)];
    Built &b = backward ? p.bwd : p.fwd;
    if (!b.graph) {
        std::string why;
        b = build_plan(d, sh, backward, why);
        if (!b.graph)
            sl_fatal("cuDNN attention: the %s graph for %s failed: %s", backward ? "backward" : "forward",
                     describe(sh).c_str(), why.c_str());
    }
    return b;
}

// ---- one call ----

static void check_heads(int nh, int nkv, int hd, int ld)
{
    if (nh < 1 || nkv < 1 || hd < 1 || nh % nkv != 0)
        sl_fatal("attention: nh %d, nkv %d, head_dim %d: heads must be positive and nh a multiple of nkv", nh, nkv, hd);
    if (ld < nh * hd) sl_fatal("attention: rows %d apart cannot hold %d heads of %d", ld, nh, hd);
}

// T, after checking the batch against what the graphs assume.
static int checked_rows(const int32_t *seq_start, int n_seqs, int max_seq)
{
    if (n_seqs < 1 || seq_start[0] != 0) sl_fatal("attention: %d sequences, the first at row %d", n_seqs, seq_start[0]);
    for (int s = 0; s < n_seqs; s++) {
        int len = seq_start[s + 1] - seq_start[s];
        if (len < 1 || len > max_seq)
            sl_fatal("attention: sequence %d has %d rows (1 to max_seq %d allowed)", s, len, max_seq);
    }
    return seq_start[n_seqs];
}

static size_t align16(size_t n) { return (n + 15) / 16 * 16; }

// Where the int32 arrays of a batch of B sequences sit in a slot (16-element aligned).
struct Ragged {
    size_t len, off_qkv, off_o, off_stats, total;
};

static Ragged ragged_layout(int b)
{
    size_t lens = align16(b), offs = align16(b + 1);
    return {0, lens, lens + offs, lens + 2 * offs, lens + 3 * offs};
}

// The padding sequences start and end at row T, so they have length 0 and read or write nothing.
static Slot &stage_ragged(Device &d, const Shape &sh, const int32_t *seq_start, int n_seqs, cudaStream_t stream)
{
    Ragged r = ragged_layout(sh.batch);
    Slot &slot = take_slot(d, r.total);
    int32_t *h = slot.host;
    for (int b = 0; b <= sh.batch; b++) {
        int64_t row = seq_start[b < n_seqs ? b : n_seqs];
        if (b < sh.batch) h[r.len + b] = b < n_seqs ? seq_start[b + 1] - seq_start[b] : 0;
        h[r.off_qkv + b] = (int32_t)(row * sh.ld);
        h[r.off_o + b] = (int32_t)(row * sh.nh * sh.hd);
        h[r.off_stats + b] = (int32_t)(row * sh.nh);
    }
    upload(slot, r.total, stream);
    return slot;
}

static void bind_index(VariantPack &pack, const Slot &slot, int b)
{
    Ragged r = ragged_layout(b);
    pack[U_SEQ_Q] = pack[U_SEQ_KV] = slot.dev + r.len;
    pack[U_OFF_Q] = pack[U_OFF_K] = pack[U_OFF_V] = slot.dev + r.off_qkv;
    pack[U_OFF_O] = slot.dev + r.off_o;
    pack[U_OFF_STATS] = slot.dev + r.off_stats;
}

static Slot &stage_seq_start(Device &d, const int32_t *seq_start, int n_seqs, cudaStream_t stream)
{
    Slot &slot = take_slot(d, (size_t)n_seqs + 1);
    memcpy(slot.host, seq_start, ((size_t)n_seqs + 1) * sizeof(int32_t));
    upload(slot, (size_t)n_seqs + 1, stream);
    return slot;
}

static Shape bucketed(int T, int n_seqs, int max_seq, int nh, int nkv, int hd, int ld, float scale)
{
    if ((int64_t)T * ld > INT32_MAX)
        sl_fatal("attention: %d rows %d apart exceed the int32 ragged offsets given to cuDNN", T, ld);
    int b = 1;
    while (b < n_seqs) b *= 2;
    return {nh, nkv, hd, ld, b, padded_seq(max_seq), scale, 1};
}

static void run_plan(Device &d, const Built &plan, VariantPack &pack, const Shape &sh, const char *what,
                    cudaStream_t stream)
{
    void *ws = workspace_for(d, (size_t)plan.workspace, stream, sh);
    CUDNN_CHECK(cudnnSetStream(d.handle, stream));
    fe::error_t rc = plan.graph->execute(d.handle, pack, ws);
    if (rc.is_bad())
        sl_fatal("cuDNN attention %s failed for %s: %s", what, describe(sh).c_str(), rc.get_message().c_str());
    workspace_used(d, stream);
}

extern "C" size_t kc_attention_stats_bytes(int T, int n_seqs, int max_seq, int nh)
{
    return (size_t)T * nh * sizeof(float);
}

extern "C" size_t kc_attention_workspace_bytes(int T, int max_seq, int nh, int hd)
{
    const int group = backward_group(max_seq, nh);
    if (!group) return (size_t)T * nh * hd * sizeof(float); // about the non-deterministic dQ accumulator
    int seqs = 1; // one sequence per window, unless the group is smaller
    while (seqs < group && (size_t)seqs * max_seq < (size_t)T) seqs *= 2;
    return (size_t)seqs * dp_bytes_per_seq(max_seq, nh);
}

extern "C" size_t kc_attention_workspace_held(void) { return device_state().ws_bytes; }

extern "C" int kc_attention_bwd_deterministic(int max_seq, int nh) { return backward_group(max_seq, nh) > 0; }

extern "C" const char *kc_attention_impl(int nh, int nkv, int hd, int ld)
{
    check_heads(nh, nkv, hd, ld);
    return cudnn_takes(device_state(), nh, nkv, hd, ld) ? "cudnn" : "fallback";
}

extern "C" void kc_attention_fwd(void *out, float *stats, const void *q, const void *k, const void *v, int ld,
                                 const int32_t *seq_start, int n_seqs, int max_seq, int nh, int nkv, int hd,
                                 float scale, cudaStream_t s)
{
    check_heads(nh, nkv, hd, ld);
    int T = checked_rows(seq_start, n_seqs, max_seq);
    Device &d = device_state();
    if (!cudnn_takes(d, nh, nkv, hd, ld)) {
        Slot &slot = stage_seq_start(d, seq_start, n_seqs, s);
        kc_attention_fallback_fwd(out, stats, q, k, v, ld, slot.dev, T, n_seqs, nh, nkv, hd, scale, s);
        release_slot(slot, s);
        return;
    }
    Shape sh = bucketed(T, n_seqs, max_seq, nh, nkv, hd, ld, scale);
    const Built &plan = plan_for(d, sh, false);
    Slot &slot = stage_ragged(d, sh, seq_start, n_seqs, s);
    VariantPack pack = {{U_Q, (void *)q}, {U_K, (void *)k}, {U_V, (void *)v}, {U_O, out}, {U_STATS, stats}};
    bind_index(pack, slot, sh.batch);
    run_plan(d, plan, pack, sh, "forward", s);
    release_slot(slot, s);
}

// One cuDNN backward over sequences [s0, s0 + n) of the batch (all of it when not deterministic).
static void backward_call(Device &d, void *dq, void *dk, void *dv, const void *dout, const void *out,
                          const float *stats, const void *q, const void *k, const void *v, int ld,
                          const int32_t *seq_start, int s0, int n, int max_seq, int nh, int nkv, int hd, float scale,
                          int deterministic, cudaStream_t s)
{
    const int row0 = seq_start[s0];
    std::vector<int32_t> local((size_t)n + 1);
    for (int i = 0; i <= n; i++) local[i] = seq_start[s0 + i] - row0;
    Shape sh = bucketed(local[n], n, max_seq, nh, nkv, hd, ld, scale);
    sh.deterministic = deterministic;
    const Built &plan = plan_for(d, sh, true);
    Slot &slot = stage_ragged(d, sh, local.data(), n, s);
    const size_t qkv_at = (size_t)row0 * ld * sizeof(bf16), o_at = (size_t)row0 * nh * hd * sizeof(bf16);
    auto at = [](const void *p, size_t bytes) { return (void *)((const char *)p + bytes); };
    VariantPack pack = {{U_Q, at(q, qkv_at)},   {U_K, at(k, qkv_at)},    {U_V, at(v, qkv_at)},
                        {U_O, at(out, o_at)},   {U_DO, at(dout, o_at)},  {U_STATS, (void *)(stats + (size_t)row0 * nh)},
                        {U_DQ, at(dq, qkv_at)}, {U_DK, at(dk, qkv_at)},  {U_DV, at(dv, qkv_at)}};
    bind_index(pack, slot, sh.batch);
    run_plan(d, plan, pack, sh, "backward", s);
    release_slot(slot, s);
}

extern "C" void kc_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const float *stats,
                                 const void *q, const void *k, const void *v, int ld, const int32_t *seq_start,
                                 int n_seqs, int max_seq, int nh, int nkv, int hd, float scale, cudaStream_t s)
{
    check_heads(nh, nkv, hd, ld);
    int T = checked_rows(seq_start, n_seqs, max_seq);
    Device &d = device_state();
    if (!cudnn_takes(d, nh, nkv, hd, ld)) {
        Slot &slot = stage_seq_start(d, seq_start, n_seqs, s);
        kc_attention_fallback_bwd(dq, dk, dv, dout, out, stats, q, k, v, ld, slot.dev, T, n_seqs, nh, nkv, hd, scale,
                                  s);
        release_slot(slot, s);
        return;
    }
    const int group = backward_group(max_seq, nh);
    static bool told;
    if (!group && !told) {
        told = true;
        log_info("attention: one sequence of up to %d rows would keep %.1f GiB of dP in the deterministic backward; "
                 "using cuDNN's non-deterministic backward (gradients may differ in the last bits between runs)",
                 max_seq, (double)dp_bytes_per_seq(max_seq, nh) / (1 << 30));
    }
    const int step = group ? group : n_seqs;
    for (int s0 = 0; s0 < n_seqs; s0 += step)
        backward_call(d, dq, dk, dv, dout, out, stats, q, k, v, ld, seq_start, s0, std::min(step, n_seqs - s0),
                      max_seq, nh, nkv, hd, scale, group > 0, s);
}
