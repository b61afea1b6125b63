/* llama2c: import a legacy llama2.c checkpoint (seven int32 then float32 arrays, see
 * shared/models/README.md). llama2.c rotates adjacent pairs (2i, 2i+1) of each head, shardlora
 * rotates halves (i, i + head_dim/2), so the rows of wq and wk are permuted per head on the way.
 * Every rank reads its pieces of each tensor straight from the file (writer.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
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

static l2c_header read_header(int fd, const char *path, int64_t file_size)
{
    int32_t h[7];
    if (file_size < L2C_HEADER_BYTES || fileio_pread(fd, h, sizeof h, 0) != 0)
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

/* The row of the llama2.c array that row r of shardlora's takes, within each head: shardlora's
 * row i (first half) is llama2.c's 2i, row half + i is 2i + 1. */
static int64_t pairs_row(int64_t r, int head_dim)
{
    const int64_t half = head_dim / 2, within = r % head_dim;
    return r - within + (within < half ? 2 * within : 2 * (within - half) + 1);
}

/* One tensor's place in the file, for its import_source. */
typedef struct {
    int fd;
    int64_t offset; /* in floats after the header */
    int64_t cols;
    int head_dim;   /* > 0: rows permuted (wq, wk) */
} l2c_tensor;

static int read_l2c(const import_source *s, int64_t first, int64_t count, void *dst, char *err, size_t len)
{
    const l2c_tensor *t = s->ctx;
    float *x = dst;
    for (int64_t e = first; e < first + count;) { /* a row segment at a time: rows may move */
        int64_t row = e / t->cols, col = e % t->cols, end = first + count, m = t->cols - col;
        if (!t->head_dim) m = end - e;
        else if (m > end - e) m = end - e;
        int64_t from = t->head_dim ? pairs_row(row, t->head_dim) * t->cols + col : e;
        int rc = fileio_pread(t->fd, x + (e - first), (size_t)m * 4, L2C_HEADER_BYTES + (t->offset + from) * 4);
        if (rc) {
            snprintf(err, len, "%s", fileio_strerror(rc));
            return -1;
        }
        e += m;
    }
    return 0;
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

/* The checkpoint opened and checked: header, size, the tensor table. */
typedef struct {
    const char *path;
    int fd;
    l2c_header h;
    l2c_region regions[L2C_N_REGIONS];
    sl_model_config cfg;
    sl_tensor_spec *specs;
    int n;
} l2c_import;

static void open_checkpoint(void *arg)
{
    l2c_import *im = arg;
    im->fd = open(im->path, O_RDONLY);
    if (im->fd < 0) sl_fatal("cannot open llama2.c checkpoint %s: %s", im->path, strerror(errno));
    struct stat sb;
    if (fstat(im->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        sl_fatal("llama2.c checkpoint %s is not a regular file (expected the file itself)", im->path);
    int64_t file_size = (int64_t)sb.st_size;
    im->h = read_header(im->fd, im->path, file_size);
    int64_t expected = add_or_max(L2C_HEADER_BYTES, mul_or_max(4, layout(&im->h, im->regions)));
    if (file_size != expected)
        sl_fatal("%s: %s: expected %s%lld bytes for dim %d, %d layers, vocab %d%s, found %lld", im->path,
                 file_size < expected ? "file is truncated" : "file is longer than its header says",
                 expected == INT64_MAX ? "more than " : "", (long long)expected, im->h.dim, im->h.n_layers,
                 im->h.vocab_size, im->h.shared_classifier ? "" : " with a separate classifier", (long long)file_size);
    im->cfg = config_of(&im->h);
    /* as hfconfig does: an odd head_dim, say, would not survive the rotary permutation */
    const char *problem = modelcfg_problem(&im->cfg);
    if (problem) sl_fatal("%s: the header describes no valid model: %s", im->path, problem);
    im->n = modelcfg_tensor_count(&im->cfg);
    im->specs = sl_malloc(sizeof *im->specs * (size_t)im->n, "tensor table");
    modelcfg_tensors(&im->cfg, im->specs, im->n);
}

void import_llama2c(const char *bin_path, const char *out_path, const import_options *opt)
{
    l2c_import im = {.path = bin_path, .fd = -1};
    import_checked(open_checkpoint, &im);
    char source[PATH_MAX], *name = model_name(bin_path);
    import_origin origin = {realpath(bin_path, source) ? source : bin_path, "llama2c", name};
    import_writer *w = writer_open(out_path, opt, &origin, &im.cfg);
    for (int i = 0; i < im.n; i++) {
        const sl_tensor_spec *s = &im.specs[i];
        l2c_tensor t = {.fd = im.fd, .offset = offset_of(im.regions, s), .cols = s->ndims == 2 ? s->dims[1] : 1,
                        .head_dim = s->kind == TENSOR_LINEAR && (s->proj == PROJ_Q || s->proj == PROJ_K) ? im.cfg.head_dim : 0};
        import_source src = {.dtype = SL_F32, .read = read_l2c, .ctx = &t};
        snprintf(src.where, sizeof src.where, "%s: %s", bin_path, s->path);
        writer_tensor(w, s, &src);
    }
    writer_finish(w);
    free(name);
    free(im.specs);
    close(im.fd);
}
