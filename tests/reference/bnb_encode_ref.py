"""bitsandbytes' blockwise encoder, transcribed step by step in numpy float32 (written for shardlora from
bitsandbytes' public source; nothing here is shardlora's C code). The source followed is
bitsandbytes-foundation/bitsandbytes, csrc/kernels.cu at commit 95f9af3 (2026-08-19):

- kQuantizeBlockwise (kernels.cu lines 271-370): absmax = max |x| over the block (BlockReduce of
  fmaxf(fabsf)), then thread 0 stores 1.0f / absmax (line 332) and every element is encoded from the
  float32 product x * (1.0f / absmax) (lines 349, 357-358, 364-365); never x / absmax.
- dQuantizeNF4 (lines 110-154): a decision tree on the signed scaled value against 15 decimal float
  literals, "x > literal" at each node; code = how many literals x exceeds.
- dQuantizeFP4 (lines 64-106): sign bit 8 when x < 0, then a tree on fabsf(x) against 7 literals.
- dQuantize<0> (lines 160-199), the General8bit (INT8 dynamic) path: a binary search from pivot 127
  with steps 64..1 comparing x > code[pivot], then the float midpoint (upper + val) * 0.5f with the
  neighbour on the side x fell on: x > midpoint (above val) or x < midpoint (below val).
- Double quantization (bitsandbytes/functional.py quantize_4bit, compress_statistics): the block
  absmax values minus their mean offset, encoded by the same General8bit kernel with blocksize 256.

bitsandbytes builds its CUDA code with --use_fast_math (CMakeLists.txt), so on the GPU 1.0f / absmax is
rcp.approx and products are flushed to zero below FLT_MIN; this transcription uses the correctly
rounded float32 reciprocal and gradual underflow (see the checks against the golden bf16 vectors)."""
from fractions import Fraction

import numpy as np

F32 = np.float32


def literal(text):
    """A C float literal ("0.5016634166240692f"): the float32 nearest the decimal, ties to even,
    rounded once (going through float64 first rounds four of dQuantizeNF4's literals the other way)."""
    q = Fraction(text)
    f = F32(float(q))
    cands = [np.nextafter(f, F32(-np.inf)), f, np.nextafter(f, F32(np.inf))]
    return min(cands, key=lambda c: (abs(Fraction(float(c)) - q), int(np.array(c).view(np.uint32)) & 1))


# dQuantizeNF4's literals (kernels.cu lines 113-153), sorted: code = how many of them x exceeds.
NF4_LITERALS = np.array([literal(t) for t in (
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011")], F32)
# dQuantizeFP4's literals on |x| (kernels.cu lines 86-105) and the code each interval returns.
FP4_LITERALS = np.array([literal(t) for t in ("0.00260417", "0.0859375", "0.20833333", "0.29166667",
                                              "0.4166667", "0.583333", "0.8333333")], F32)
FP4_BY_INTERVAL = np.array([0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011], np.uint8)


def scale_factor(absmax):
    """1.0f / absmax per block, float32 (kernels.cu line 332)."""
    with np.errstate(divide="ignore"):
        return (F32(1) / absmax.astype(F32)).astype(F32)


def nf4(v):
    """dQuantizeNF4 on float32 v: each node tests v > literal."""
    v = v.astype(F32)
    return (v[..., None] > NF4_LITERALS).sum(axis=-1).astype(np.uint8)


def fp4(v):
    """dQuantizeFP4: sign 0b1000 when v < 0, then the tree on fabsf(v)."""
    v = v.astype(F32)
    sign = np.where(v < 0, 8, 0).astype(np.uint8)
    a = np.abs(v)
    return (FP4_BY_INTERVAL[(a[..., None] > FP4_LITERALS).sum(axis=-1)] + sign).astype(np.uint8)


def dynamic(v, code):
    """dQuantize<0> (no stochastic rounding) on float32 v with the 256-entry float32 code, vectorised
    over v but step for step as the kernel: pivot 127, i = 64, 32, ..., 1."""
    v = v.astype(F32)
    code = code.astype(F32)
    pivot = np.full(v.shape, 127, np.int64)
    upper_pivot = np.full(v.shape, 255, np.int64)
    lower_pivot = np.zeros(v.shape, np.int64)
    lower = np.full(v.shape, F32(-1))
    upper = np.full(v.shape, F32(1))
    val = code[pivot]
    i = 64
    while i > 0:
        up = v > val
        lower_pivot = np.where(up, pivot, lower_pivot)
        lower = np.where(up, val, lower)
        upper_pivot = np.where(up, upper_pivot, pivot)
        upper = np.where(up, upper, val)
        pivot = np.where(up, pivot + i, pivot - i)
        val = code[pivot]
        i >>= 1
    upper = np.where(upper_pivot == 255, code[255], upper)
    lower = np.where(lower_pivot == 0, code[0], lower)
    above = v > val
    mid_up = ((upper + val).astype(F32) * F32(0.5)).astype(F32)
    mid_lo = ((lower + val).astype(F32) * F32(0.5)).astype(F32)
    out = np.where(above, np.where(v > mid_up, upper_pivot, pivot), np.where(v < mid_lo, lower_pivot, pivot))
    return out.astype(np.uint8)


def blocks(x, bs):
    """float32 block absmax (max |x|; a partial last block pads with 0) and per-element 1/absmax."""
    x = x.reshape(-1).astype(F32)
    n = x.size
    nb = -(-n // bs)
    padded = np.zeros(nb * bs, F32)
    padded[:n] = x
    absmax = np.abs(padded.reshape(nb, bs)).max(axis=1).astype(F32)
    return absmax, np.repeat(scale_factor(absmax), bs)[:n]


def scaled(x, r):
    """x * (1.0f / absmax) in float32. shardlora encodes an all-zero block (r = inf) as the code of
    0.0, where the kernel's 0 * inf is NaN; such blocks are kept at v = 0 here."""
    v = (x.astype(F32) * r).astype(F32)
    return np.where(np.isinf(r), F32(0), v).astype(F32)


def encode(x, kind, bs, dq, code8, offset=None):
    """The expected members of one quantized weight: codes (int8) or packed nibbles, absmax or with dq
    absmax u8 codes, nested absmax and offset. offset: the double-quantization mean to use
    (bitsandbytes' is absmax.mean(); shardlora's is the exact sum rounded, times 1/nblocks)."""
    x = x.reshape(-1).astype(F32)
    absmax, r = blocks(x, bs)
    v = scaled(x, r)
    if kind == "int8":
        return {"codes": dynamic(v, code8), "absmax": absmax}
    nib = nf4(v) if kind == "nf4" else fp4(v)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    out = {"packed": (nib[0::2] << 4 | nib[1::2]).astype(np.uint8), "absmax": absmax}
    if dq:
        off = F32(absmax.mean(dtype=F32)) if offset is None else F32(offset)
        centred = (absmax - off).astype(F32)
        nabs, nr = blocks(centred, 256)
        out.update(absmax=dynamic(scaled(centred, nr), code8), nested_absmax=nabs, offset=off)
    return out
