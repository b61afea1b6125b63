"""Near-midpoint inputs: shardlora-quantize against bitsandbytes' encoding arithmetic, transcribed in
numpy float32 in tests/reference/bnb_encode_ref.py (its docstring names the kernels.cu lines it
follows: x * (1.0f / absmax), dQuantizeNF4's and dQuantizeFP4's literal thresholds, dQuantize<0>'s
binary search and float midpoints). Every block's elements are crafted to scale to within a few ulps
of a decision threshold (the kernel's literals, the exact midpoints of adjacent codes and the float
midpoints), both signs; with double quantization the block absmax values are also crafted so that
their centred, scaled values fall near midpoints of the dynamic code. Fresh seed every run."""
import os
import sys
from fractions import Fraction

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bnb_encode_ref as bnb  # noqa: E402
from testlib import BIN, SHARED, TMP, check, finish, run  # noqa: E402

F32 = np.float32
WEIGHTS = ["self_attn/q_proj", "mlp/gate_proj", "mlp/up_proj", "mlp/down_proj"]
with h5py.File(os.path.join(SHARED, "quant", "bnb_golden.h5"), "r") as g:
    NF4 = g["nf4_code"][:].astype(F32)
    FP4 = g["fp4_code"][:].astype(F32)
    DYN = g["dynamic_code_signed"][:].astype(F32)


def thresholds(kind):
    """Decision points in scaled space: the kernel's literals, exact and float midpoints."""
    if kind == "nf4":
        t = np.sort(NF4)
        lits = bnb.NF4_LITERALS
    elif kind == "fp4":
        t = np.sort(np.unique(np.abs(FP4)))
        lits = np.concatenate([bnb.FP4_LITERALS, -bnb.FP4_LITERALS])
        t = np.concatenate([-t[::-1], t])
    else:
        t = DYN
        lits = np.array([], F32)
    exact = (t[:-1].astype(np.float64) + t[1:]) / 2
    fmid = ((t[:-1] + t[1:]).astype(F32) * F32(0.5)).astype(F32)
    return np.concatenate([exact, fmid.astype(np.float64), lits.astype(np.float64)])


def ulps(x, k):
    """x moved by k float32 ulps (k an integer array)."""
    x = x.astype(F32).copy()
    for step in range(int(np.abs(k).max()) if k.size else 0):
        move = np.abs(k) > step
        x[move] = np.nextafter(x[move], np.where(k[move] > 0, F32(np.inf), F32(-np.inf)).astype(F32))
    return x


def exact_offset(absmax):
    """shardlora's double-quantization offset: float32(exact sum) * (1.0f / nblocks)."""
    s = sum(Fraction(float(a)) for a in absmax)
    f = F32(float(s))
    cands = [np.nextafter(f, F32(-np.inf)), f, np.nextafter(f, F32(np.inf))]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - s), int(np.array(c).view(np.uint32)) & 1))
    return F32(best * (F32(1) / F32(absmax.size)))


def crafted(rng, n, bs, kind, dq):
    """n elements, blocks of bs, every element but each block's first near a threshold."""
    nb = -(-n // bs)
    if dq:  # block absmax values near offset + m * (dynamic-code midpoint), in symmetric pairs
        t = thresholds("int8")
        t = t[np.abs(t) < 1]
        tb = rng.choice(t, size=nb)
        tb[1::2] = -tb[0::2][: nb // 2]
        tb[:2] = [1.0, -1.0]  # fixes the nested absmax of the first group near m
        m, off = 0.5, F32(1.0)
        absmax = F32(1.0) + (tb * m).astype(F32)
        for _ in range(2):
            off = exact_offset(absmax)
            absmax = (off + (tb * m)).astype(F32)
        absmax = ulps(absmax, rng.integers(-3, 4, nb))
    else:
        absmax = np.exp(rng.uniform(np.log(1e-3), np.log(4.0), nb)).astype(F32)
        absmax[::3] = absmax[::3].astype(F32).view(np.uint32).__and__(0xFFFF0000).view(F32)  # bf16-like
    t = thresholds(kind)
    x = np.empty(nb * bs, F32)
    for b in range(nb):
        a = absmax[b]
        want = rng.choice(t, size=bs)
        xb = (want * np.float64(a)).astype(F32)
        xb = ulps(xb, rng.integers(-2, 3, bs))
        xb = np.clip(xb, -a, a)
        xb[0] = a if rng.random() < 0.5 else -a
        x[b * bs:(b + 1) * bs] = xb
    return x[:n]


def near_count(x, bs, kind):
    """How many elements scale to within one ulp of a threshold (how sharp the test is)."""
    absmax, r = bnb.blocks(x, bs)
    v = bnb.scaled(x, r).astype(np.float64)
    t = np.sort(thresholds(kind))
    i = np.clip(np.searchsorted(t, v), 1, t.size - 1)
    d = np.minimum(np.abs(v - t[i]), np.abs(v - t[i - 1]))
    return int((d <= np.spacing(np.abs(v).astype(F32)).astype(np.float64)).sum())


def main():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"# crafted weights drawn with seed {seed}")
    rng = np.random.default_rng(seed)
    model = os.path.join(TMP, "model.h5")
    # q_proj 128x128, gate/up 512x128, down 128x512: 16384-65536 elements, 4 DQ groups at bs 64
    run([f"{BIN}/shardlora-init", model, "--hidden", "128", "--intermediate", "512", "--layers", "1",
         "--heads", "4", "--kv-heads", "2", "--vocab", "64"])
    for kind, bs, dq in [("nf4", 64, False), ("nf4", 64, True), ("nf4", 256, True), ("fp4", 64, False),
                         ("fp4", 64, True), ("fp4", 256, False), ("int8", 64, False), ("int8", 4096, False)]:
        label = f"{kind}{'-dq' if dq else ''}-bs{bs}"
        ws = {}
        with h5py.File(model, "r+") as f:
            for w in WEIGHTS:
                d = f[f"model/layers/0/{w}/weight"]
                ws[w] = crafted(rng, d.size, bs, kind, dq).reshape(d.shape)
                d[...] = ws[w]
        out = os.path.join(TMP, f"{label}.h5")
        run([f"{BIN}/shardlora-quantize", model, out, "--quant", kind, "--blocksize", str(bs)]
            + (["--double-quant"] if dq else []))
        bad = near = total = nbad_u8 = 0
        with h5py.File(out, "r") as q:
            for w, x in ws.items():
                grp = q[f"model/layers/0/{w}/weight"]
                off = float(grp.attrs["offset"]) if dq else None
                want = bnb.encode(x, kind, bs, dq, DYN, offset=off)
                member = "codes" if kind == "int8" else "packed"
                got = grp[member][:]
                if kind == "int8":
                    bad += int((got != want[member]).sum())
                else:  # count nibbles
                    bad += int(((got >> 4) != (want[member] >> 4)).sum() + ((got & 15) != (want[member] & 15)).sum())
                near += near_count(x.reshape(-1), bs, kind)
                total += x.size
                if dq:
                    nbad_u8 += int((grp["absmax"][:] != want["absmax"]).sum())
                    check(f"{label} {w}: nested absmax bit-identical",
                          grp["nested_absmax"][:].tobytes() == want["nested_absmax"].tobytes())
                else:
                    check(f"{label} {w}: absmax bit-identical", grp["absmax"][:].tobytes() == want["absmax"].tobytes())
        print(f"# {label}: {near} of {total} elements within an ulp of a threshold; {bad} codes differ")
        check(f"{label}: every code as bitsandbytes' arithmetic gives it ({bad} of {total} differ)", bad == 0)
        if dq:
            check(f"{label}: every absmax code as bitsandbytes' arithmetic gives it ({nbad_u8} differ)", nbad_u8 == 0)
    finish()


main()
