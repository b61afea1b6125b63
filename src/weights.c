/* weights: model weights by element range, from the file or its recipe (weights.h). */
#include "weights.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

void weights_read_range(hid_t file, const char *path, int64_t start, int64_t count, float *out)
{
    synth_recipe r;
    if (!synth_recipe_of(file, &r)) {
        h5_read_range(file, path, SL_F32, start, count, out);
        return;
    }
    const sl_tensor_kind kind = synth_kind_of(path);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; i += WEIGHTS_PIECE)
        synth_values(&r, kind, path, start + i, count - i < WEIGHTS_PIECE ? count - i : WEIGHTS_PIECE, out + i, NULL);
}

void weights_source_open(weights_source *s, hid_t file, const char *path, int64_t start, int64_t count)
{
    *s = (weights_source){.start = start, .bad = INT64_MAX};
    snprintf(s->path, sizeof s->path, "%s", path);
    if (synth_recipe_of(file, &s->recipe)) {
        s->how = WEIGHTS_RECIPE;
        s->kind = synth_kind_of(path);
    } else if (h5_direct_open(file, path, &s->direct)) {
        s->how = WEIGHTS_DIRECT;
        if (start < 0 || count < 0 || start + count > s->direct.n)
            sl_fatal("%s: dataset %s: elements [%lld, %lld) requested, but it holds %lld", h5_name(file), path,
                     (long long)start, (long long)(start + count), (long long)s->direct.n);
    } else {
        s->how = WEIGHTS_BUFFERED;
        s->buffered = sl_malloc((size_t)count * sizeof(float) + 1, "weights read by HDF5");
        h5_read_range(file, path, SL_F32, start, count, s->buffered);
    }
}

int64_t weights_source_read(weights_source *s, int64_t e0, int64_t n, float *out, uint16_t *words)
{
    switch (s->how) {
    case WEIGHTS_RECIPE: synth_values(&s->recipe, s->kind, s->path, e0, n, out, NULL); break;
    case WEIGHTS_DIRECT: h5_direct_read(&s->direct, e0, n, out, 1, words); break;
    case WEIGHTS_BUFFERED: memcpy(out, s->buffered + (e0 - s->start), (size_t)n * sizeof(float)); break;
    }
    const int64_t i = sl_first_nonfinite_f32(out, n);
    if (i < n) {
#pragma omp critical(weights_nonfinite)
        if (e0 + i < s->bad) s->bad = e0 + i, s->bad_value = out[i];
    }
    return i;
}

void weights_source_close(weights_source *s)
{
    if (s->how == WEIGHTS_DIRECT) h5_direct_close(&s->direct);
    free(s->buffered);
    s->buffered = NULL;
}

weights_first_bad weights_no_bad(void) { return (weights_first_bad){.at = INT64_MAX}; }

void weights_note_bad(weights_first_bad *first, const weights_source *s)
{
    if (s->bad == INT64_MAX || first->at != INT64_MAX) return;
    snprintf(first->path, sizeof first->path, "%s", s->path);
    first->at = s->bad, first->value = s->bad_value;
}

void weights_agree_finite(hid_t file, const weights_first_bad *first)
{
    rt_agree(first->at == INT64_MAX, "%s: dataset %s holds a non-finite value (%g) at element %lld (expected finite weights)",
             h5_name(file), first->path, (double)first->value, (long long)first->at);
}
