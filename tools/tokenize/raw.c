/* Raw token input: each file is one document of little-endian uint16 or uint32 token ids. */
#include <stdlib.h>

#include "runtime.h"
#include "tokenize.h"

static uint32_t load_le(const uint8_t *p, int width)
{
    uint32_t x = 0;
    for (int b = width - 1; b >= 0; b--) x = (x << 8) | p[b];
    return x;
}

static void add_raw_file(const char *path, int width, int64_t vocab_size, corpus *c)
{
    size_t len;
    uint8_t *buf = (uint8_t *)read_whole_file(path, "token", &len);
    if (len % (size_t)width)
        sl_fatal("token file '%s' has %zu bytes, not a multiple of %d (expected uint%d token ids)", path,
                 len, width, 8 * width);
    int64_t n = (int64_t)(len / (size_t)width);
    int32_t *ids = sl_malloc((size_t)(n + 1) * sizeof *ids, "token ids");
    for (int64_t i = 0; i < n; i++) {
        uint32_t id = load_le(buf + i * width, width);
        if (id >= (uint64_t)vocab_size)
            sl_fatal("token file '%s': token %lld (byte offset %lld) is %u, out of range (expected "
                     "0 <= id < --vocab-size %lld)", path, (long long)i, (long long)(i * width), id,
                     (long long)vocab_size);
        ids[i] = (int32_t)id;
    }
    corpus_add(c, ids, n, NULL, -1);
    free(ids);
    free(buf);
}

void read_raw(const tk_options *opts, corpus *c, progress *prog)
{
    int width = opts->input == INPUT_U16 ? 2 : 4;
    input_range r;
    input_range_plan(&r, opts->files, opts->n_files, ALIGN_FILE, opts->input == INPUT_U16 ? "--tokens-u16" : "--tokens-u32");
    progress_start(prog, r.end - r.start);
    for (int i = 0; i < opts->n_files && !corpus_full(c); i++) {
        int64_t from, to;
        if (!input_range_part(&r, i, ALIGN_FILE, &from, &to)) continue;
        add_raw_file(opts->files[i], width, opts->vocab_size, c);
        progress_add(prog, to - from, c);
    }
    input_range_free(&r);
}
