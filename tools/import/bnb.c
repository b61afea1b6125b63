/* bnb: bitsandbytes 4-bit weights in a Hugging Face checkpoint, as transformers saves a model
 * loaded with BitsAndBytesConfig(load_in_4bit=True) (its bnb quantizer's state dict, from
 * bitsandbytes' QuantState.as_dict(packed=True)). For a weight W:
 *   W                                       uint8 [ceil(n/2), 1]: two codes per byte, element 2j high
 *   W.absmax                                float32 [nblocks], or uint8 [nblocks] with double quantization
 *   W.quant_map                             float32 [16]: the NF4 or FP4 table
 *   W.nested_absmax, W.nested_quant_map     float32 [ceil(nblocks/256)], [256] (double quantization)
 *   W.quant_state.bitsandbytes__nf4|fp4     uint8: JSON {quant_type, blocksize, dtype, shape, and with
 *                                           double quantization nested_blocksize, nested_dtype, nested_offset}
 * These are shardlora's formats bit for bit (src/quant.h), so the bytes are kept as they are.
 * 8-bit weights (load_in_8bit, LLM.int8) are int8 with one absmax per row (SCB), which shardlora's
 * blockwise int8 is not: they are dequantized as bitsandbytes' int8_vectorwise_dequant does, in
 * float32, (W * SCB) * float32(1/127), and imported as float weights (--quantize may then apply). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "runtime.h"

static const char *const QUANT_STATE_TYPES[] = {"nf4", "fp4"};

int bnb_checkpoint(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *json = json_read_file(path, "model config");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(json, "quantization_config");
    int bits = 0;
    if (q && !cJSON_IsNull(q)) {
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
        if (!cJSON_IsString(method) || strcmp(method->valuestring, "bitsandbytes") != 0)
            sl_fatal("%s: quantization_config.quant_method is %s (only \"bitsandbytes\" 4-bit and 8-bit checkpoints "
                     "are read; save the model in float for other methods)", path,
                     cJSON_IsString(method) ? method->valuestring : "missing");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "load_in_8bit"))) {
            cJSON_Delete(json);
            log_info("%s: bitsandbytes 8-bit (LLM.int8) weights hold one scale per row, not shardlora's blockwise "
                     "int8: they are dequantized to float32 (use --quantize to store them quantized)", path);
            return 8;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "load_in_4bit")))
            sl_fatal("%s: quantization_config (bitsandbytes) has neither load_in_4bit nor load_in_8bit true", path);
        const cJSON *storage = cJSON_GetObjectItemCaseSensitive(q, "bnb_4bit_quant_storage");
        if (storage && (!cJSON_IsString(storage) || strcmp(storage->valuestring, "uint8") != 0))
            sl_fatal("%s: quantization_config.bnb_4bit_quant_storage is %s (expected \"uint8\": the codes are "
                     "read as bytes)", path, cJSON_IsString(storage) ? storage->valuestring : "not a string");
        bits = 4;
    }
    cJSON_Delete(json);
    return bits;
}

/* The tensor prefix + suffix, which bitsandbytes stores beside the codes of weight. */
static void find_part(const hf_checkpoint *ck, const char *prefix, const char *suffix, hf_source *src, int bits,
                      const char *weight)
{
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    if (!hf_find(ck, name, src))
        sl_fatal("%s: tensor %s is missing (a bitsandbytes %d-bit weight %s stores it beside its codes)",
                 src->shard ? src->shard->path : hf_listing(ck), name, bits, weight);
}

/* The tensor must hold count elements of the safetensors type dtype (e.g. "U8"). */
static void expect_part(const hf_source *s, const char *dtype, int64_t count, const char *why)
{
    if (strcmp(s->t.dtype_name, dtype) != 0 || s->t.n != count)
        sl_fatal("%s: tensor %s is %s with %lld elements (expected %s with %lld: %s)", s->shard->path, s->t.name,
                 s->t.dtype_name, (long long)s->t.n, dtype, (long long)count, why);
}

static void *read_part(const hf_source *s)
{
    void *buf = sl_malloc((size_t)s->t.nbytes + 1, s->t.name);
    st_read(s->shard, &s->t, buf);
    return buf;
}

/* The quant_state JSON of a weight, and the type its name gives ("nf4" or "fp4"). */
static cJSON *read_quant_state(const hf_checkpoint *ck, const char *weight, hf_source *state, const char **type)
{
    char name[512];
    for (size_t i = 0; i < sizeof QUANT_STATE_TYPES / sizeof *QUANT_STATE_TYPES; i++) {
        snprintf(name, sizeof name, "%s.quant_state.bitsandbytes__%s", weight, QUANT_STATE_TYPES[i]);
        if (!hf_find(ck, name, state)) continue;
        *type = QUANT_STATE_TYPES[i];
        expect_part(state, "U8", state->t.n, "JSON text as bytes");
        char *text = read_part(state);
        cJSON *json = cJSON_ParseWithLength(text, (size_t)state->t.n);
        free(text);
        if (!cJSON_IsObject(json))
            sl_fatal("%s: tensor %s does not hold a JSON object (bitsandbytes' quant state)", state->shard->path, name);
        return json;
    }
    hf_source w;
    sl_fatal("%s: tensor %s has no %s.quant_state.bitsandbytes__nf4 or __fp4 beside it, but config.json's "
             "quantization_config says the projections are 4-bit (shardlora's model file holds every projection "
             "in one format, so a checkpoint with some left in float, e.g. by llm_int8_skip_modules, is not read)",
             hf_find(ck, weight, &w) ? w.shard->path : hf_listing(ck), weight, weight);
}

static const cJSON *state_field(const hf_source *state, const cJSON *json, const char *key, int number)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, key);
    if (number ? !cJSON_IsNumber(v) : !cJSON_IsString(v))
        sl_fatal("%s: tensor %s: '%s' is missing or not a %s (bitsandbytes' quant state)", state->shard->path,
                 state->t.name, key, number ? "number" : "string");
    return v;
}

/* The format, shape and original dtype the quant state gives, checked against spec. */
static void read_format(const hf_source *state, const cJSON *json, const char *type, const sl_tensor_spec *spec,
                        bnb_weight *bw)
{
    const char *path = state->shard->path, *name = state->t.name;
    const char *qt = state_field(state, json, "quant_type", 0)->valuestring;
    if (strcmp(qt, type) != 0) sl_fatal("%s: tensor %s: quant_type is '%s' but its name says %s", path, name, qt, type);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(json, "shape");
    int same = cJSON_GetArraySize(shape) == 2;
    for (int d = 0; same && d < 2; d++) same = cJSON_GetArrayItem(shape, d)->valuedouble == (double)spec->dims[d];
    if (!same)
        sl_fatal("%s: tensor %s: shape is not [%lld, %lld], the one config.json gives this weight", path, name,
                 (long long)spec->dims[0], (long long)spec->dims[1]);
    const char *dtype = state_field(state, json, "dtype", 0)->valuestring;
    if (strcmp(dtype, "float32") && strcmp(dtype, "float16") && strcmp(dtype, "bfloat16"))
        sl_fatal("%s: tensor %s: dtype '%s' (expected float32, float16 or bfloat16)", path, name, dtype);
    double bs = state_field(state, json, "blocksize", 1)->valuedouble;
    int dq = cJSON_GetObjectItemCaseSensitive(json, "nested_offset") != NULL;
    quant_format f;
    const char *problem = bs >= 1 && bs <= 1 << 20 && bs == floor(bs) ? quant_format_make(type, dq, (int)bs, &f)
                                                                       : "not a positive integer";
    if (problem) sl_fatal("%s: tensor %s: blocksize %g%s: %s", path, name, bs, dq ? " with double quantization" : "", problem);
    bw->info = quant_store_describe(&f, spec->dims, dtype);
    if (!dq) return;
    double nested_bs = state_field(state, json, "nested_blocksize", 1)->valuedouble;
    if (nested_bs != QUANT_NESTED_BLOCKS)
        sl_fatal("%s: tensor %s: nested_blocksize is %g (expected %d)", path, name, nested_bs, QUANT_NESTED_BLOCKS);
    const char *nested_dtype = state_field(state, json, "nested_dtype", 0)->valuestring;
    if (strcmp(nested_dtype, "float32") != 0)
        sl_fatal("%s: tensor %s: nested_dtype is '%s' (expected float32)", path, name, nested_dtype);
    double offset = state_field(state, json, "nested_offset", 1)->valuedouble;
    if (!isfinite(offset) || (double)(float)offset != offset)
        sl_fatal("%s: tensor %s: nested_offset %.17g is not a finite float32 value", path, name, offset);
    bw->offset = (float)offset;
}

static void locate_int8(const hf_checkpoint *ck, const char *weight, const sl_tensor_spec *spec, bnb_weight *bw)
{
    find_part(ck, weight, "", &bw->int8, 8, weight);
    const st_tensor *t = &bw->int8.t;
    if (strcmp(t->dtype_name, "I8") != 0 || t->ndims != 2 || t->dims[0] != spec->dims[0] || t->dims[1] != spec->dims[1])
        sl_fatal("%s: tensor %s is %s of %d dimensions [%lld, ...] (expected I8 [%lld, %lld]: an 8-bit bitsandbytes "
                 "weight of the shape config.json gives)", bw->int8.shard->path, t->name, t->dtype_name, t->ndims,
                 (long long)(t->ndims ? t->dims[0] : 0), (long long)spec->dims[0], (long long)spec->dims[1]);
    char module[256];
    snprintf(module, sizeof module, "%.*s", (int)(strlen(weight) - strlen(".weight")), weight);
    find_part(ck, module, ".SCB", &bw->scb, 8, weight);
    expect_part(&bw->scb, "F32", spec->dims[0], "one scale per row");
    char name[300];
    snprintf(name, sizeof name, "%s.weight_format", module);
    bw->has_weight_format = hf_find(ck, name, &bw->weight_format);
    if (bw->has_weight_format) expect_part(&bw->weight_format, "U8", 1, "the layout code");
}

void bnb_locate(const hf_checkpoint *ck, const sl_tensor_spec *spec, int bits, bnb_weight *bw)
{
    char weight[256];
    hf_name(weight, sizeof weight, spec->path);
    memset(bw, 0, sizeof *bw);
    bw->bits = bits;
    if (bits == 8) {
        locate_int8(ck, weight, spec, bw);
        return;
    }
    hf_source state;
    const char *type;
    cJSON *json = read_quant_state(ck, weight, &state, &type);
    read_format(&state, json, type, spec, bw);
    cJSON_Delete(json);
    const quant_format *f = &bw->info.fmt;
    const int64_t nb = bw->info.nblocks;
    find_part(ck, weight, "", &bw->packed, 4, weight);
    expect_part(&bw->packed, "U8", quant_code_bytes(f, bw->info.n, 0, nb), "two 4-bit codes per byte");
    find_part(ck, weight, ".absmax", &bw->absmax, 4, weight);
    expect_part(&bw->absmax, f->double_quant ? "U8" : "F32", nb,
                f->double_quant ? "one 8-bit code per block, as double quantization stores them" : "one per block");
    find_part(ck, weight, ".quant_map", &bw->quant_map, 4, weight);
    expect_part(&bw->quant_map, "F32", 16, "the 4-bit table");
    if (!f->double_quant) return;
    find_part(ck, weight, ".nested_absmax", &bw->nested_absmax, 4, weight);
    expect_part(&bw->nested_absmax, "F32", quant_nested_count(f, 0, nb), "one per 256 blocks");
    find_part(ck, weight, ".nested_quant_map", &bw->nested_quant_map, 4, weight);
    expect_part(&bw->nested_quant_map, "F32", 256, "the 8-bit dynamic code");
}

int bnb_tensor_count(const bnb_weight *bw)
{
    if (bw->bits == 8) return 2 + bw->has_weight_format;
    return bw->info.fmt.double_quant ? 6 : 4;
}

/* A stored table must be the one shardlora decodes with, bit for bit. */
static void check_table(const hf_source *s, const float *want, int len, const char *what)
{
    float *got = read_part(s);
    for (int i = 0; i < len; i++)
        if (memcmp(&got[i], &want[i], sizeof *got) != 0)
            sl_fatal("%s: tensor %s: entry %d is %.9g, expected %.9g (%s)", s->shard->path, s->t.name, i, got[i],
                     want[i], what);
    free(got);
}

/* Scales must be finite and not negative: they multiply every decoded value of their block. */
static void check_scales(const hf_source *s, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || x[i] < 0)
            sl_fatal("%s: tensor %s: value %g at index %lld (expected a finite scale >= 0)", s->shard->path, s->t.name,
                     x[i], (long long)i);
}

/* int8_vectorwise_dequant: (W * SCB) * float32(1 / 127), each product rounded to float32. */
static void copy_int8(const bnb_weight *bw, const sl_tensor_spec *spec, import_writer *w)
{
    if (bw->has_weight_format) {
        uint8_t *format = read_part(&bw->weight_format);
        if (format[0] != 0)
            sl_fatal("%s: tensor %s is %d (expected 0, the row-major layout; other layouts are not read)",
                     bw->weight_format.shard->path, bw->weight_format.t.name, format[0]);
        free(format);
    }
    float *scb = read_part(&bw->scb);
    check_scales(&bw->scb, scb, bw->scb.t.n);
    int8_t *q = read_part(&bw->int8);
    const int64_t rows = spec->dims[0], cols = spec->dims[1];
    float *x = sl_malloc((size_t)(rows * cols) * sizeof(float), spec->path);
    const float inv127 = 7.874015718698502e-3f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float scaled = (float)q[r * cols + c] * scb[r];
            x[r * cols + c] = scaled * inv127;
        }
    char where[600];
    snprintf(where, sizeof where, "%s: tensor %s", bw->int8.shard->path, bw->int8.t.name);
    writer_tensor(w, spec, SL_F32, x, where);
    free(x), free(q), free(scb);
}

void bnb_copy(const bnb_weight *bw, const sl_tensor_spec *spec, import_writer *w)
{
    if (bw->bits == 8) {
        copy_int8(bw, spec, w);
        return;
    }
    const quant_format *f = &bw->info.fmt;
    check_table(&bw->quant_map, quant_code(f->type), 16,
                f->type == QUANT_NF4 ? "bitsandbytes' NF4 table" : "bitsandbytes' FP4 table");
    quant_view q = {.codes = read_part(&bw->packed), .offset = bw->offset};
    if (f->double_quant) {
        check_table(&bw->nested_quant_map, quant_dynamic_code(), 256, "bitsandbytes' signed dynamic code");
        q.absmax_u8 = read_part(&bw->absmax);
        q.nested_absmax = read_part(&bw->nested_absmax);
        check_scales(&bw->nested_absmax, q.nested_absmax, bw->nested_absmax.t.n);
    } else {
        q.absmax = read_part(&bw->absmax);
        check_scales(&bw->absmax, q.absmax, bw->absmax.t.n);
    }
    writer_quantized(w, spec, &bw->info, &q);
    free(q.codes), free(q.absmax), free(q.absmax_u8), free(q.nested_absmax);
}
