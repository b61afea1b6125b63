/* llama2c: import a legacy llama2.c checkpoint (seven int32 then float32 arrays, see
 * shared/models/README.md). llama2.c rotates adjacent pairs (2i, 2i+1) of each head, shardlora
 * rotates halves (i, i + head_dim/2), so the rows of wq and wk are permuted per head on the way. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "runtime.h"

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier; /* a positive vocab_size in the file */
} l2c_header;

/* Where each array starts in the file, in floats after the header; per-layer arrays are stacked. */
typedef struct {
    const char *module; /* path below /model/layers/L/, or the whole path outside the layers */
    int64_t start;
} l2c_region;

enum { L2C_HEADER_BYTES = 7 * 4, L2C_N_REGIONS = 13 };

static l2c_header read_header(FILE *f, const char *path, int64_t file_size)
{
    int32_t h[7];
    if (file_size < L2C_HEADER_BYTES || fread(h, 4, 7, f) != 7)
        sl_fatal("%s: file is %lld bytes, shorter than the %d-byte llama2.c header", path, (long long)file_size,
                 L2C_HEADER_BYTES);
    if (h[0] == 0x616b3432)
        sl_fatal("%s: this is a versioned llama2.c export (magic 'ak42'); expected the legacy format "
                 "(export with --version 0)", path);
    /* abs(INT_MIN) does not exist: that vocab_size is refused as 0 */
    l2c_header hd = {h[0], h[1], h[2], h[3], h[4], h[5] == INT_MIN ? 0 : abs(h[5]), h[6], h[5] > 0};
    if (hd.dim <= 0 || hd.hidden_dim <= 0 || hd.n_layers <= 0 || hd.n_heads <= 0 || hd.n_kv_heads <= 0 ||
        hd.vocab_size <= 0 || hd.seq_len <= 0 || hd.dim % hd.n_heads != 0 || hd.n_heads % hd.n_kv_heads != 0)
        sl_fatal("%s: header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, "
                 "seq_len %d) is not a valid llama2.c model", path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    return hd;
}

static sl_model_config config_of(const l2c_header *h)
{
    sl_model_config c = {
        .hidden_size = h->dim, .intermediate_size = h->hidden_dim, .num_layers = h->n_layers,
        .num_heads = h->n_heads, .num_kv_heads = h->n_kv_heads, .head_dim = h->dim / h->n_heads,
        .vocab_size = h->vocab_size, .max_positions = h->seq_len, .rope = {.theta = 10000.0},
        .rms_norm_eps = 1e-5, .tie_word_embeddings = h->shared_classifier, .attention_bias = 0,
        .bos_token_id = 1, .eos_token_id = 2,
    };
    snprintf(c.architecture, sizeof c.architecture, "llama");
    return c;
}

/* a * b and a + b, or INT64_MAX when they overflow: the layout a damaged header describes can
 * exceed any file, and is then reported as not matching the file's size. */
static int64_t mul_or_max(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
static int64_t add_or_max(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* Fills the region table in file order; returns the total number of floats after the header
 * (INT64_MAX when that overflows). */
static int64_t layout(const l2c_header *h, l2c_region r[L2C_N_REGIONS])
{
    const int64_t D = h->dim, F = h->hidden_dim, L = h->n_layers, V = h->vocab_size,
                  KV = (int64_t)h->n_kv_heads * (D / h->n_heads);
    const struct { const char *module; int64_t floats; } order[L2C_N_REGIONS] = {
        {"/model/embed_tokens/weight", V * D}, {"input_layernorm/weight", L * D},
        {"self_attn/q_proj/weight", mul_or_max(L, D * D)}, {"self_attn/k_proj/weight", mul_or_max(L, KV * D)},
        {"self_attn/v_proj/weight", mul_or_max(L, KV * D)}, {"self_attn/o_proj/weight", mul_or_max(L, D * D)},
        {"post_attention_layernorm/weight", L * D}, {"mlp/gate_proj/weight", mul_or_max(L, F * D)},
        {"mlp/down_proj/weight", mul_or_max(L, D * F)}, {"mlp/up_proj/weight", mul_or_max(L, F * D)},
        {"/model/norm/weight", D}, {"legacy rotary tables", (int64_t)h->seq_len * (D / h->n_heads)},
        {"/lm_head/weight", h->shared_classifier ? 0 : V * D},
    };
    int64_t at = 0;
    for (int i = 0; i < L2C_N_REGIONS; i++) {
        r[i] = (l2c_region){order[i].module, at};
        at = add_or_max(at, order[i].floats);
    }
    return at;
}

/* Offset in floats of one tensor of the table. */
static int64_t offset_of(const l2c_region r[L2C_N_REGIONS], const sl_tensor_spec *s)
{
    const char *module = s->path;
    if (s->layer >= 0) module = strchr(strstr(s->path, "/layers/") + 8, '/') + 1;
    int64_t n = s->ndims == 2 ? s->dims[0] * s->dims[1] : s->dims[0];
    for (int i = 0; i < L2C_N_REGIONS; i++)
        if (strcmp(r[i].module, module) == 0) return r[i].start + (s->layer >= 0 ? s->layer * n : 0);
    sl_fatal("internal error: no llama2.c array holds %s", s->path);
}

/* Rows of each head reordered from adjacent pairs to halves: row 2i + j moves to i + j * head_dim/2. */
static void pairs_to_halves(const float *src, float *dst, int64_t rows, int64_t cols, int head_dim)
{
    const int half = head_dim / 2;
    for (int64_t r = 0; r < rows; r++) {
        int64_t head = r / head_dim, within = r % head_dim;
        int64_t to = head * head_dim + (within % 2) * half + within / 2;
        memcpy(dst + to * cols, src + r * cols, (size_t)cols * sizeof *dst);
    }
}

static void copy_tensor(FILE *f, const char *path, const sl_tensor_spec *s, int64_t offset, int head_dim,
                        import_writer *w)
{
    int64_t n = s->ndims == 2 ? s->dims[0] * s->dims[1] : s->dims[0];
    float *buf = sl_malloc((size_t)n * 4, s->path);
    if (fseeko(f, (off_t)(L2C_HEADER_BYTES + offset * 4), SEEK_SET) != 0 || fread(buf, 4, (size_t)n, f) != (size_t)n)
        sl_fatal("%s: cannot read %s (I/O error)", path, s->path);
    if (s->proj == PROJ_Q || s->proj == PROJ_K) {
        float *permuted = sl_malloc((size_t)n * 4, s->path);
        pairs_to_halves(buf, permuted, s->dims[0], s->dims[1], head_dim);
        free(buf);
        buf = permuted;
    }
    char where[PATH_MAX + 128];
    snprintf(where, sizeof where, "%s: %s", path, s->path);
    writer_tensor(w, s, SL_F32, buf, where);
    free(buf);
}

/* The file name without directory and without ".bin", used as the model's name. */
static char *model_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *name = strdup(slash ? slash + 1 : path);
    size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, ".bin") == 0) name[len - 4] = 0;
    return name;
}

void import_llama2c(const char *bin_path, const char *out_path, const import_options *opt)
{
    FILE *f = fopen(bin_path, "rb");
    if (!f) sl_fatal("cannot open llama2.c checkpoint %s: %s", bin_path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) sl_fatal("%s: cannot seek: %s", bin_path, strerror(errno));
    int64_t file_size = (int64_t)ftello(f);
    rewind(f);
    l2c_header h = read_header(f, bin_path, file_size);
    l2c_region regions[L2C_N_REGIONS];
    int64_t expected = add_or_max(L2C_HEADER_BYTES, mul_or_max(4, layout(&h, regions)));
    if (file_size != expected)
        sl_fatal("%s: %s: expected %s%lld bytes for dim %d, %d layers, vocab %d%s, found %lld", bin_path,
                 file_size < expected ? "file is truncated" : "file is longer than its header says",
                 expected == INT64_MAX ? "more than " : "", (long long)expected, h.dim, h.n_layers, h.vocab_size,
                 h.shared_classifier ? "" : " with a separate classifier", (long long)file_size);
    sl_model_config cfg = config_of(&h);
    /* as hfconfig does: an odd head_dim, say, would not survive the rotary permutation */
    const char *problem = modelcfg_problem(&cfg);
    if (problem) sl_fatal("%s: the header describes no valid model: %s", bin_path, problem);
    int n = modelcfg_tensor_count(&cfg);
    sl_tensor_spec *specs = sl_malloc(sizeof *specs * (size_t)n, "tensor table");
    modelcfg_tensors(&cfg, specs, n);

    char source[PATH_MAX], *name = model_name(bin_path);
    import_origin origin = {realpath(bin_path, source) ? source : bin_path, "llama2c", name};
    import_writer *w = writer_open(out_path, opt, &origin, &cfg);
    for (int i = 0; i < n; i++) copy_tensor(f, bin_path, &specs[i], offset_of(regions, &specs[i]), cfg.head_dim, w);
    writer_finish(w);
    free(name);
    free(specs);
    fclose(f);
}
