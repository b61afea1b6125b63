// test_dequant: kc_dequant_bf16 (kernels/cuda/dequant.cu) against its CPU twin k_dequant, bit for bit:
// the GPU's bf16 must be the bf16 rounding of the CPU's float, for every format, partial last
// blocks and odd lengths, starts at a later block, unaligned pointers (the element-wise path), more
// than 2^31 elements, a double-quantization decode that an FMA would change, and nothing written
// outside the n elements. Inputs come from the host quantizer (src/quant.h) on fresh
// random weights whose scale changes every 37 elements, so block absmax values span decades.
#include <algorithm>

#include "gpu_test.h"

#include "cuda/dequant.h"
extern "C" {
#include "quant.h"
}

namespace {

const int64_t LEAD = 8, PAD = 64; // poisoned bf16 elements before and after each output

struct host_tensor {
    quant_format f;
    int64_t n, nb;
    std::vector<uint8_t> codes, absmax_u8;
    std::vector<float> absmax, nested_absmax;
    float offset;
};

host_tensor quantize(const char *format, int64_t n)
{
    host_tensor h;
    const char *err = quant_format_parse(format, &h.f);
    if (err) {
        printf("not ok - %s: %s\n", format, err);
        exit(1);
    }
    h.n = n, h.nb = quant_nblocks(&h.f, n);
    std::vector<float> x((size_t)n);
    double scale = 1;
    for (int64_t i = 0; i < n; i++) {
        if (i % 37 == 0) scale = exp(gt_uniform(-7, 1));
        x[i] = (float)(gt_uniform(-1, 1) * scale);
    }
    h.codes.resize((size_t)quant_code_bytes(&h.f, n, 0, h.nb));
    h.absmax.resize((size_t)h.nb), h.absmax_u8.resize((size_t)h.nb);
    h.nested_absmax.resize((size_t)quant_nested_count(&h.f, 0, h.nb));
    quant_view v = {h.codes.data(), h.absmax.data(), h.absmax_u8.data(), h.nested_absmax.data(), 0.0f};
    quant_tensor(&h.f, x.data(), n, &v);
    h.offset = v.offset;
    return h;
}

// Device copies; codes_shift bytes put the codes off their natural alignment.
struct device_tensor {
    uint8_t *codes_alloc, *codes, *absmax_u8;
    float *absmax, *nested_absmax;
};

device_tensor upload(const host_tensor &h, int codes_shift)
{
    device_tensor d = {};
    d.codes_alloc = gt_device<uint8_t>(h.codes.size() + codes_shift);
    d.codes = d.codes_alloc + codes_shift;
    GT_CUDA(cudaMemcpy(d.codes, h.codes.data(), h.codes.size(), cudaMemcpyHostToDevice));
    if (h.f.double_quant) {
        d.absmax_u8 = gt_upload(h.absmax_u8);
        d.nested_absmax = gt_upload(h.nested_absmax);
    } else {
        d.absmax = gt_upload(h.absmax);
    }
    return d;
}

void release(device_tensor &d)
{
    GT_CUDA(cudaFree(d.codes_alloc));
    GT_CUDA(cudaFree(d.absmax_u8));
    GT_CUDA(cudaFree(d.absmax));
    GT_CUDA(cudaFree(d.nested_absmax));
}

// The blocks from b0 on (b0 starts a nested group under double quantization), on the host.
quant_view host_view(host_tensor &h, int64_t b0)
{
    quant_view v = {h.codes.data() + quant_code_bytes(&h.f, h.n, 0, b0), NULL, NULL, NULL, h.offset};
    if (h.f.double_quant) {
        v.absmax_u8 = h.absmax_u8.data() + b0;
        v.nested_absmax = h.nested_absmax.data() + b0 / QUANT_NESTED_BLOCKS;
    } else {
        v.absmax = h.absmax.data() + b0;
    }
    return v;
}

// The same blocks on the device, with the tables the CPU twin decodes with.
kc_quant_blocks device_blocks(const k_quant_blocks &k, const host_tensor &h, const device_tensor &d, int64_t b0)
{
    kc_quant_blocks q;
    memset(&q, 0, sizeof q);
    q.bits = k.bits, q.blocksize = k.blocksize;
    memcpy(q.code, k.code, sizeof(float) << k.bits);
    q.codes = d.codes + quant_code_bytes(&h.f, h.n, 0, b0);
    if (h.f.double_quant) {
        q.absmax_u8 = d.absmax_u8 + b0;
        q.nested_absmax = d.nested_absmax + b0 / QUANT_NESTED_BLOCKS;
        memcpy(q.nested_code, k.nested_code, sizeof q.nested_code);
        q.nested_blocksize = k.nested_blocksize;
        q.offset = k.offset;
    } else {
        q.absmax = d.absmax + b0;
    }
    return q;
}

// One TAP line: got[lead + i] for i in [0, m) must be the bf16 bits of the CPU twin's elements from
// block b0 on, and every element of got outside those m must still be poison.
void compare(const char *what, host_tensor &h, int64_t b0, int64_t m, const std::vector<uint16_t> &got, int64_t lead,
             int out_shift)
{
    quant_view v = host_view(h, b0);
    k_quant_blocks k = quant_kernel_blocks(&h.f, &v);
    std::vector<float> want((size_t)m);
    k_dequant(want.data(), &k, m);
    int64_t mismatches = 0, first = -1, overwritten = 0;
    for (int64_t i = 0; i < m; i++) {
        if (got[(size_t)(lead + i)] == gt_to_bf16_bits(want[(size_t)i])) continue;
        if (first < 0) first = i;
        mismatches++;
    }
    for (int64_t i = 0; i < (int64_t)got.size(); i++)
        overwritten += (i < lead || i >= lead + m) && got[(size_t)i] != 0xffff;
    char name[64];
    quant_format_name(&h.f, name, sizeof name);
    gt_check(mismatches == 0 && overwritten == 0,
             "%s %s: %lld elements from block %lld of %lld (output +%d): %lld bit mismatches%s, %lld poisoned "
             "elements outside overwritten",
             name, what, (long long)m, (long long)b0, (long long)h.nb, out_shift, (long long)mismatches,
             first < 0 ? "" : " (see below)", (long long)overwritten);
    if (first >= 0)
        printf("# first mismatch at element %lld: got 0x%04x, want 0x%04x (CPU %.9g)\n", (long long)first,
               got[(size_t)(lead + first)], gt_to_bf16_bits(want[(size_t)first]), want[(size_t)first]);
}

// Decode m elements from block b0 on the device, the output out_shift elements past a 16-byte
// boundary inside a poisoned buffer, and compare.
void expect_same(const char *what, host_tensor &h, const device_tensor &d, int64_t b0, int64_t m, int out_shift)
{
    quant_view v = host_view(h, b0);
    kc_quant_blocks q = device_blocks(quant_kernel_blocks(&h.f, &v), h, d, b0);
    const int64_t lead = LEAD + out_shift, total = lead + m + PAD;
    uint16_t *buf = gt_device<uint16_t>((size_t)total);
    kc_dequant_bf16(buf + lead, &q, m, 0);
    GT_CUDA(cudaGetLastError());
    std::vector<uint16_t> got = gt_download(buf, (size_t)total);
    GT_CUDA(cudaFree(buf));
    compare(what, h, b0, m, got, lead, out_shift);
}

// The whole tensor of n elements.
void expect_whole(const char *format, int64_t n, const char *what)
{
    host_tensor h = quantize(format, n);
    device_tensor d = upload(h, 0);
    expect_same(what, h, d, 0, n, 0);
    release(d);
}

// Every supported format, with a partial last block and an odd length (n % 8 == 3 leaves a tail too).
void test_formats(void)
{
    static const char *const formats[] = {"nf4-bs64", "nf4-bs128", "nf4-bs256", "nf4-dq-bs64", "nf4-dq-bs128",
                                          "nf4-dq-bs256", "fp4-bs64", "fp4-bs128", "fp4-bs256", "fp4-dq-bs64",
                                          "fp4-dq-bs128", "fp4-dq-bs256", "int8-bs64", "int8-bs256", "int8-bs4096"};
    for (const char *f : formats) expect_whole(f, 1000003, "whole tensor");
}

// Lengths around the vector groups (8 elements), a warp's tile (1024) and a CTA's (8192); the
// longest needs more CTAs than an H200 holds at once, so the grid strides.
void test_lengths(void)
{
    static const char *const formats[] = {"nf4-dq-bs64", "fp4-bs128", "int8-bs256"};
    static const int64_t lengths[] = {1, 2, 7, 8, 9, 37, 63, 323, 1031, 3 * 8192 + 5, 8192 * 1000 + 3};
    for (const char *f : formats)
        for (int64_t n : lengths) expect_whole(f, n, "short or odd length");
}

// Later starts (at a nested group with double quantization), and prefixes that end inside a block
// of a longer tensor: the blocks beyond must not leak into the output.
void test_offsets(void)
{
    host_tensor h = quantize("nf4-dq-bs64", 1000003);
    device_tensor d = upload(h, 0);
    expect_same("from a later nested group", h, d, 512, h.n - 512 * 64, 0);
    expect_same("prefix ending inside a block", h, d, 512, 100 * 64 + 13, 0);
    expect_same("prefix of one element", h, d, 256, 1, 0);
    expect_same("nothing", h, d, 0, 0, 0);
    release(d);
    static const struct {
        const char *format;
        int64_t b0;
    } starts[] = {{"fp4-bs128", 3}, {"int8-bs64", 5}, {"int8-bs4096", 2}};
    for (const auto &s : starts) {
        h = quantize(s.format, 1000003);
        d = upload(h, 0);
        expect_same("from a later block", h, d, s.b0, h.n - s.b0 * h.f.blocksize, 0);
        expect_same("prefix ending inside a block", h, d, s.b0, 5 * h.f.blocksize + 77, 0);
        release(d);
    }
}

// Pointers off the vector path's alignment: the element-wise kernel must give the same bits (its
// grid strides too at this length).
void test_unaligned(void)
{
    static const struct {
        const char *format;
        int codes_shift, out_shift;
    } cases[] = {{"nf4-dq-bs64", 1, 0}, {"nf4-bs64", 2, 0}, {"fp4-dq-bs256", 0, 1}, {"int8-bs256", 1, 0},
                 {"int8-bs64", 4, 0}, {"int8-bs4096", 0, 3}};
    for (const auto &c : cases) {
        host_tensor h = quantize(c.format, 1000003);
        device_tensor d = upload(h, c.codes_shift);
        char what[64];
        snprintf(what, sizeof what, "unaligned (codes +%d bytes)", c.codes_shift);
        expect_same(what, h, d, 0, h.n, c.out_shift);
        release(d);
    }
}

// Double-quantized blocks built so that decoding an absmax with one fused multiply-add, instead of
// k_dequant's rounded product then rounded sum, changes outputs (random data shows that only about
// once in 10^4 elements, and not in every tensor): each group's nested absmax is drawn until some
// absmax codes give a bf16 output that the fused decode would change; its blocks use those codes.
void test_dq_rounding(void)
{
    host_tensor h;
    quant_format_parse("nf4-dq-bs64", &h.f);
    const int64_t groups = 4;
    h.nb = groups * QUANT_NESTED_BLOCKS, h.n = h.nb * h.f.blocksize;
    h.codes.resize((size_t)h.n / 2), h.absmax_u8.resize((size_t)h.nb), h.nested_absmax.resize((size_t)groups);
    h.offset = (float)gt_uniform(0.01, 0.1);
    const float *nested_code = quant_dynamic_code();
    int64_t found_groups = 0;
    for (int64_t g = 0; g < groups; g++) {
        std::vector<std::pair<int, int>> sensitive; // (absmax code, element code)
        for (int trial = 0; trial < 100000 && sensitive.empty(); trial++) {
            float nested = h.nested_absmax[(size_t)g] = (float)gt_uniform(0.005, 0.05);
            for (int u8 = 0; u8 < 256; u8++) {
                volatile float product = nested_code[u8] * nested; // rounded here, never fused with the sum
                float separate = product + h.offset, fused = fmaf(nested_code[u8], nested, h.offset);
                for (int c = 1; c < 16 && separate != fused; c++)
                    if (gt_to_bf16_bits(QUANT_NF4_CODE[c] * separate) != gt_to_bf16_bits(QUANT_NF4_CODE[c] * fused))
                        sensitive.push_back({u8, c});
            }
        }
        found_groups += !sensitive.empty();
        for (int64_t b = g * QUANT_NESTED_BLOCKS; b < (g + 1) * QUANT_NESTED_BLOCKS && !sensitive.empty(); b++) {
            std::pair<int, int> s = sensitive[(size_t)b % sensitive.size()];
            h.absmax_u8[(size_t)b] = (uint8_t)s.first;
            for (int64_t i = b * h.f.blocksize; i < (b + 1) * h.f.blocksize; i += 2)
                h.codes[(size_t)i / 2] = (uint8_t)(s.second << 4 | (int)gt_uniform(0, 16));
        }
    }
    gt_check(found_groups == groups, "nf4-dq-bs64: FMA-sensitive absmax codes found in %lld of %lld groups",
             (long long)found_groups, (long long)groups);
    device_tensor d = upload(h, 0);
    expect_same("absmax decode rounded twice (FMA-sensitive blocks)", h, d, 0, h.n, 0);
    release(d);
}

// More than 2^31 elements and code bytes, so 32-bit indexing anywhere would show: the device
// decodes the whole tensor; its first and last blocks (and the poison after them) are compared.
void test_past_2g(void)
{
    host_tensor h;
    quant_format_parse("int8-bs4096", &h.f);
    h.n = ((int64_t)1 << 31) + 4099, h.nb = quant_nblocks(&h.f, h.n), h.offset = 0;
    h.codes.resize((size_t)h.n);
    for (size_t i = 0; i < h.codes.size(); i += 4) {
        uint32_t r = (uint32_t)(gt_uniform(0, 1) * 4294967296.0);
        memcpy(&h.codes[i], &r, std::min<size_t>(4, h.codes.size() - i));
    }
    h.absmax = gt_random((size_t)h.nb, 0.01, 2);
    device_tensor d = upload(h, 0);
    uint16_t *buf = gt_device<uint16_t>((size_t)(h.n + PAD));
    quant_view v = host_view(h, 0);
    kc_quant_blocks q = device_blocks(quant_kernel_blocks(&h.f, &v), h, d, 0);
    kc_dequant_bf16(buf, &q, h.n, 0);
    GT_CUDA(cudaGetLastError());
    const int64_t head = 3 * h.f.blocksize, tail_b0 = h.nb - 3, tail = h.n - tail_b0 * h.f.blocksize;
    compare("first blocks of 2^31 + 4099", h, 0, head, gt_download(buf, (size_t)head), 0, 0);
    compare("last blocks of 2^31 + 4099", h, tail_b0, tail,
            gt_download(buf + tail_b0 * h.f.blocksize, (size_t)(tail + PAD)), 0, 0);
    GT_CUDA(cudaFree(buf));
    release(d);
}

} // namespace

int main(void)
{
    gt_require_gpu();
    gt_seed(20261128);
    test_formats();
    test_lengths();
    test_offsets();
    test_unaligned();
    test_dq_rounding();
    test_past_2g();
    expect_whole("nf4-dq-bs64", (int64_t)14336 * 4096, "14336 x 4096");
    expect_whole("int8-bs4096", (int64_t)14336 * 4096, "14336 x 4096");
    return gt_finish();
}
