/* quant: code tables, format names and the sizes of quantized block ranges. */
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* The 16 NF4 quantiles as published with QLoRA (Dettmers et al. 2023, appendix E). */
const float QUANT_NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/* FP4 (1 sign, 2 exponent, 1 mantissa bit), in bitsandbytes' bit assignment: magnitudes of codes
 * 0..7 in units of 1/12 (code 1 is the subnormal 1/16 unit); codes 8..15 are their negatives,
 * except that code 8 decodes to +0. */
const float *quant_fp4_code(void)
{
    static float code[16];
    static const double twelfths[8] = {0, 0.0625, 8, 12, 4, 6, 2, 3};
    if (code[3] == 0.0f)
        for (int i = 0; i < 8; i++) {
            code[i] = (float)(twelfths[i] / 12.0);
            code[8 + i] = i ? -code[i] : 0.0f;
        }
    return code;
}

/* The signed dynamic code (Dettmers 2016; bitsandbytes create_dynamic_map(signed=True)): for each
 * decimal exponent i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) scaled by 10^(i-6), plus
 * 1; codes 0..126 mirror 128..254 and code 127 is 0. Computing those midpoints in float32 or float64 leaves 11 to 42
 * of the 127 values an ulp away from bitsandbytes' table, so its positive half (codes 128..255) is
 * written out here as bitsandbytes computes it; the unit test checks all 256 entries bit for bit. */
static const float DYNAMIC_POSITIVE[128] = {
    0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f, 0x1.6f0068p-15f, 0x1.15df66p-14f,
    0x1.743e96p-14f, 0x1.47ae16p-13f, 0x1.19ce0ap-12f, 0x1.8fc506p-12f, 0x1.02de02p-11f, 0x1.3dd982p-11f,
    0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f, 0x1.e353f8p-10f, 0x1.3b645ap-9f,
    0x1.851eb8p-9f, 0x1.ced914p-9f, 0x1.0c49bap-8f, 0x1.3126e8p-8f, 0x1.56041ap-8f, 0x1.7ae148p-8f,
    0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f, 0x1.19999ap-7f, 0x1.2c083p-7f,
    0x1.3e76c8p-7f, 0x1.75c29p-7f, 0x1.d1eb86p-7f, 0x1.170a3ep-6f, 0x1.451ebap-6f, 0x1.733334p-6f,
    0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f, 0x1.2ccccep-5f, 0x1.43d70ap-5f,
    0x1.5ae146p-5f, 0x1.71eb86p-5f, 0x1.88f5c2p-5f, 0x1.ap-5f, 0x1.b70a3ep-5f, 0x1.ce147ap-5f,
    0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f, 0x1.20a3d6p-4f, 0x1.2c28f6p-4f,
    0x1.37ae14p-4f, 0x1.433334p-4f, 0x1.4eb854p-4f, 0x1.5a3d7p-4f, 0x1.65c29p-4f, 0x1.7147aep-4f,
    0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f, 0x1.fp-4f, 0x1.14ccccp-3f,
    0x1.31999ap-3f, 0x1.4e6666p-3f, 0x1.6b3334p-3f, 0x1.88p-3f, 0x1.a4ccccp-3f, 0x1.c1999ap-3f,
    0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f, 0x1.28ccccp-2f, 0x1.373334p-2f,
    0x1.459998p-2f, 0x1.54p-2f, 0x1.626666p-2f, 0x1.70ccccp-2f, 0x1.7f3334p-2f, 0x1.8d9998p-2f,
    0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f, 0x1.d59998p-2f, 0x1.e4p-2f,
    0x1.f26664p-2f, 0x1.006666p-1f, 0x1.079998p-1f, 0x1.0eccccp-1f, 0x1.16p-1f, 0x1.1d3334p-1f,
    0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f, 0x1.413334p-1f, 0x1.486668p-1f,
    0x1.4f999ap-1f, 0x1.56ccccp-1f, 0x1.5ep-1f, 0x1.653334p-1f, 0x1.6c6668p-1f, 0x1.73999ap-1f,
    0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f, 0x1.97999ap-1f, 0x1.9eccccp-1f,
    0x1.a6p-1f, 0x1.ad3334p-1f, 0x1.b46666p-1f, 0x1.bb999ap-1f, 0x1.c2ccccp-1f, 0x1.cap-1f,
    0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f, 0x1.eep-1f, 0x1.f53334p-1f,
    0x1.fc6666p-1f, 0x1.p+0f,
};

const float *quant_dynamic_code(void)
{
    static float code[256];
    if (code[255] == 0.0f)
        for (int i = 0; i < 128; i++) {
            code[128 + i] = DYNAMIC_POSITIVE[i];
            code[i] = i < 127 ? -DYNAMIC_POSITIVE[126 - i] : 0.0f;
        }
    return code;
}

const float *quant_code(quant_type t)
{
    return t == QUANT_NF4 ? QUANT_NF4_CODE : t == QUANT_FP4 ? quant_fp4_code() : quant_dynamic_code();
}

int quant_code_len(quant_type t) { return t == QUANT_INT8 ? 256 : 16; }

static const char *const TYPE_NAMES[] = {"none", "nf4", "fp4", "int8"};

const char *quant_type_name(quant_type t) { return TYPE_NAMES[t]; }

int quant_type_from_name(const char *s)
{
    for (int t = 0; t < 4; t++)
        if (strcmp(s, TYPE_NAMES[t]) == 0) return t;
    return -1;
}

const char *quant_format_problem(const quant_format *f)
{
    if (f->type == QUANT_NONE) return f->double_quant ? "double quantization needs nf4 or fp4" : NULL;
    if (f->type == QUANT_INT8) {
        if (f->double_quant) return "double quantization applies to nf4 and fp4 only, not int8";
        if (f->blocksize != 64 && f->blocksize != 256 && f->blocksize != 4096)
            return "int8 blocksize must be 64, 256 or 4096";
        return NULL;
    }
    if (f->blocksize != 64 && f->blocksize != 128 && f->blocksize != 256)
        return "nf4/fp4 blocksize must be 64, 128 or 256";
    return NULL;
}

const char *quant_format_make(const char *type, int double_quant, int blocksize, quant_format *f)
{
    static char msg[160];
    int t = quant_type_from_name(type);
    if (t <= QUANT_NONE) {
        snprintf(msg, sizeof msg, "unknown quantization type '%s' (expected nf4, fp4 or int8)", type);
        return msg;
    }
    *f = (quant_format){.type = t, .double_quant = double_quant,
                        .blocksize = blocksize ? blocksize : t == QUANT_INT8 ? 4096 : 64};
    return quant_format_problem(f);
}

const char *quant_format_parse(const char *s, quant_format *f)
{
    static char msg[160];
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *rest = strchr(buf, '-');
    if (rest) *rest++ = '\0';
    int t = quant_type_from_name(buf);
    if (t < 0) {
        snprintf(msg, sizeof msg, "unknown quantization '%s' (expected none, nf4, fp4 or int8)", s);
        return msg;
    }
    *f = (quant_format){.type = t, .blocksize = t == QUANT_INT8 ? 4096 : 64};
    char *save = NULL;
    for (char *part = rest ? strtok_r(rest, "-", &save) : NULL; part; part = strtok_r(NULL, "-", &save)) {
        if (strcmp(part, "dq") == 0) {
            f->double_quant = 1;
            continue;
        }
        char *end = NULL;
        long bs = strncmp(part, "bs", 2) == 0 ? strtol(part + 2, &end, 10) : 0;
        if (!end || *end || end == part + 2) {
            snprintf(msg, sizeof msg, "bad quantization '%s': '%s' is neither 'dq' nor 'bsN'", s, part);
            return msg;
        }
        f->blocksize = (int)bs;
    }
    return quant_format_problem(f);
}

char *quant_format_name(const quant_format *f, char *buf, size_t len)
{
    if (f->type == QUANT_NONE) snprintf(buf, len, "none");
    else snprintf(buf, len, "%s%s-bs%d", quant_type_name(f->type), f->double_quant ? "-dq" : "", f->blocksize);
    return buf;
}

int64_t quant_nblocks(const quant_format *f, int64_t n) { return (n + f->blocksize - 1) / f->blocksize; }

int64_t quant_block_elems(const quant_format *f, int64_t n, int64_t b0, int64_t b1)
{
    int64_t end = b1 * f->blocksize < n ? b1 * f->blocksize : n;
    return end - b0 * f->blocksize;
}

/* Blocksizes are even, so a 4-bit range starts on a byte; only the tensor's last byte can be half. */
int64_t quant_code_bytes(const quant_format *f, int64_t n, int64_t b0, int64_t b1)
{
    int64_t elems = quant_block_elems(f, n, b0, b1);
    return f->type == QUANT_INT8 ? elems : (elems + 1) / 2;
}

int64_t quant_absmax_bytes(const quant_format *f, int64_t b0, int64_t b1)
{
    return (b1 - b0) * (f->double_quant ? 1 : (int64_t)sizeof(float));
}

int64_t quant_nested_count(const quant_format *f, int64_t b0, int64_t b1)
{
    if (!f->double_quant || b1 <= b0) return 0;
    return (b1 - 1) / QUANT_NESTED_BLOCKS - b0 / QUANT_NESTED_BLOCKS + 1;
}

/* The table a type decodes with: FP4's code 8 gives -0, as bitsandbytes applies the sign bit to
 * zero too (the stored table, like bitsandbytes' own, has +0 there). */
static const float *decode_code(quant_type t)
{
    static float fp4[16];
    if (t != QUANT_FP4) return quant_code(t);
    if (fp4[3] == 0.0f) {
        memcpy(fp4, quant_fp4_code(), sizeof fp4);
        fp4[8] = -0.0f;
    }
    return fp4;
}

k_quant_blocks quant_kernel_blocks(const quant_format *f, const quant_view *q)
{
    return (k_quant_blocks){.bits = f->type == QUANT_INT8 ? 8 : 4, .blocksize = f->blocksize,
                            .code = decode_code(f->type), .codes = q->codes,
                            .absmax = f->double_quant ? NULL : q->absmax, .absmax_u8 = q->absmax_u8,
                            .nested_absmax = q->nested_absmax, .nested_code = quant_dynamic_code(),
                            .nested_blocksize = QUANT_NESTED_BLOCKS, .offset = q->offset};
}

void quant_dequant(const quant_format *f, const quant_view *q, int64_t n, int64_t b0, int64_t b1, float *out)
{
    if (f->double_quant && b0 % QUANT_NESTED_BLOCKS)
        sl_fatal("quant_dequant: with double quantization a block range must start a group of %d blocks "
                 "(found b0 = %lld)", QUANT_NESTED_BLOCKS, (long long)b0);
    k_quant_blocks k = quant_kernel_blocks(f, q);
    k_dequant(out, &k, quant_block_elems(f, n, b0, b1));
}
