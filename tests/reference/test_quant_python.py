"""shardlora-quantize and shardlora-import --quantize against an independent numpy encoder written
from the format description (shared/quant/README.md, DESIGN.md section 4): absmax per block, codes
by bitsandbytes' arithmetic (x * (1/absmax) and its thresholds, bnb_encode_ref.py), high nibble first, double quantization with the exact mean offset
and the signed dynamic code in groups of 256 blocks. Fresh Gaussian weights every run."""
import os
import sys
from fractions import Fraction

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bnb_encode_ref as bnb  # noqa: E402
from testlib import BIN, SHARED, TMP, check, expect_fail, finish, run  # noqa: E402

F32 = np.float32
PROJ = ["self_attn/q_proj", "self_attn/k_proj", "self_attn/v_proj", "self_attn/o_proj",
        "mlp/gate_proj", "mlp/up_proj", "mlp/down_proj"]
with h5py.File(os.path.join(SHARED, "quant", "bnb_golden.h5"), "r") as g:
    NF4 = g["nf4_code"][:].astype(F32)
    DYNAMIC = g["dynamic_code_signed"][:].astype(F32)


def nearest(v, table):
    """The code bitsandbytes' kernels give the scaled value v (NF4 or the signed dynamic code)."""
    return bnb.nf4(v) if table.size == 16 else bnb.dynamic(v, table)


def scaled(x, absmax):
    """x * (1.0f / absmax), and 0 in all-zero blocks."""
    return bnb.scaled(x, bnb.scale_factor(absmax))


def blockwise(x, bs, table):
    n = x.size
    nb = -(-n // bs)
    padded = np.zeros(nb * bs, F32)
    padded[:n] = x
    absmax = np.abs(padded.reshape(nb, bs)).max(axis=1).astype(F32)
    codes = nearest(scaled(x, np.repeat(absmax, bs)[:n]), table)
    return codes, absmax


def float32_round(q):
    """The float32 nearest the rational q, ties to even."""
    f = F32(float(q))
    cands = [np.nextafter(f, F32(-np.inf)), f, np.nextafter(f, F32(np.inf))]
    best = min(abs(Fraction(float(c)) - q) for c in cands)
    ties = [c for c in cands if abs(Fraction(float(c)) - q) == best]
    return min(ties, key=lambda c: int(np.array(c).view(np.uint32)) & 1)


def double_quant(absmax):
    nb = absmax.size
    total = float32_round(sum(Fraction(float(a)) for a in absmax))
    offset = F32(total * (F32(1) / F32(nb)))
    centred = (absmax - offset).astype(F32)
    groups = -(-nb // 256)
    nested = np.array([np.abs(centred[g * 256:(g + 1) * 256]).max() for g in range(groups)], F32)
    u8 = nearest(scaled(centred, np.repeat(nested, 256)[:nb]), DYNAMIC)
    return u8, nested, offset


def encode(x, kind, bs, dq):
    """The expected group members for a weight (flat float32)."""
    x = x.reshape(-1).astype(F32)
    if kind == "int8":
        codes, absmax = blockwise(x, bs, DYNAMIC)
        return {"codes": codes, "absmax": absmax}
    nib, absmax = blockwise(x, bs, NF4)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    out = {"packed": (nib[0::2] << 4 | nib[1::2]).astype(np.uint8), "absmax": absmax}
    if dq:
        out["absmax"], out["nested_absmax"], out["offset"] = double_quant(absmax)
    return out


def decode(grp):
    """Dequantize a stored group with the README's rules."""
    code = grp["code"][:]
    if "packed" in grp:
        p = grp["packed"][:]
        c = np.stack([p >> 4, p & 15], axis=1).reshape(-1)
    else:
        c = grp["codes"][:]
    bs = int(grp.attrs["blocksize"])
    absmax = grp["absmax"][:]
    if "nested_absmax" in grp:
        nested = np.repeat(grp["nested_absmax"][:], 256)[:absmax.size]
        absmax = ((grp["nested_code"][:][absmax] * nested).astype(F32) + F32(grp.attrs["offset"])).astype(F32)
    shape = tuple(grp.attrs["shape"])
    n = shape[0] * shape[1]
    return (code[c[:n]] * np.repeat(absmax, bs)[:n]).astype(F32).reshape(shape)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_group(label, grp, w, kind, bs, dq):
    want = encode(w, kind, bs, dq)
    for name in ("packed", "codes", "absmax", "nested_absmax"):
        if name in want:
            check(f"{label}: {name} bit-identical", name in grp and same_bits(grp[name][:], want[name]),
                  f"{name} differs from the numpy encoding")
    if dq:
        stored = grp.attrs.get("offset")
        check(f"{label}: offset is the exact mean as float32", stored is not None and
              float(stored) == float(want["offset"]), f"stored {stored!r}, expected {float(want['offset'])!r}")
    attrs_ok = (grp.attrs["quant_type"] == kind and int(grp.attrs["blocksize"]) == bs
                and tuple(grp.attrs["shape"]) == w.shape)
    check(f"{label}: attributes quant_type, blocksize, shape", attrs_ok, dict(grp.attrs))
    y = decode(grp)
    rel = float(np.sqrt(np.sum((y - w) ** 2, dtype=np.float64) / np.sum(w.astype(np.float64) ** 2)))
    bound = 0.02 if kind == "int8" else 0.12
    check(f"{label}: dequantized weight within {kind} error ({rel:.4f} <= {bound})", rel <= bound)


def check_quantized_file(label, plain, quant, kind, bs, dq):
    with h5py.File(plain, "r") as p, h5py.File(quant, "r") as q:
        layers = int(p["config"].attrs["num_hidden_layers"])
        fmt = f"{kind}{'-dq' if dq else ''}-bs{bs}"
        check(f"{label}: root attribute quantization = {fmt}", q.attrs.get("quantization") == fmt,
              q.attrs.get("quantization"))
        linear = set()
        for layer in range(layers):
            for proj in PROJ:
                path = f"model/layers/{layer}/{proj}/weight"
                linear.add(path)
                check_group(f"{label} {path}", q[path], p[path][:].astype(F32), kind, bs, dq)
        others = []
        p.visititems(lambda name, obj: others.append(name) if isinstance(obj, h5py.Dataset) else None)
        unchanged = all(n in linear or (n in q and same_bits(p[n][:], q[n][:])) for n in others)
        check(f"{label}: other datasets copied unchanged", unchanged)
        config_same = dict(p["config"].attrs).keys() == dict(q["config"].attrs).keys() and all(
            np.array_equal(p["config"].attrs[k], q["config"].attrs[k]) for k in p["config"].attrs)
        roots_same = all(np.array_equal(p.attrs[k], q.attrs[k]) for k in p.attrs)
        check(f"{label}: /config and root attributes copied", config_same and roots_same)


def make_model():
    path = os.path.join(TMP, "model.h5")
    # q_proj 72x72 and down_proj 72x300: partial last blocks at 64 and 256, 338 blocks (2 DQ groups)
    run([f"{BIN}/shardlora-init", path, "--hidden", "72", "--intermediate", "300", "--layers", "1",
         "--heads", "4", "--kv-heads", "2", "--vocab", "128"])
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"# weights drawn with seed {seed}")
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r+") as f:
        for proj in ("self_attn/q_proj", "mlp/down_proj"):
            d = f[f"model/layers/0/{proj}/weight"]
            d[...] = rng.standard_normal(d.shape).astype(F32)
        f["model/layers/0/self_attn/v_proj/weight"][:4] = 0  # all-zero blocks encode as code 0.0
    return path


def check_encoder_on_golden():
    """The numpy encoder itself reproduces bitsandbytes' golden encodings (no double quantization,
    whose offsets bitsandbytes rounds differently in some groups)."""
    with h5py.File(os.path.join(SHARED, "quant", "bnb_golden.h5"), "r") as g:
        for shape, group, kind, bs in [("w_64x512", "nf4_bs64_nodq", "nf4", 64),
                                       ("w_odd_300x77", "nf4_bs256_nodq", "nf4", 256),
                                       ("w_odd_300x77", "int8_dynamic_bs256", "int8", 256)]:
            want = g[f"{shape}/f32/{group}"]
            got = encode(g[f"{shape}/f32/input_f32"][:], kind, bs, False)
            same = all(same_bits(got[m], want[m][:]) for m in got)
            check(f"numpy encoder matches bitsandbytes golden {shape}/{group}", same)


def main():
    check_encoder_on_golden()
    model = make_model()
    quantize = f"{BIN}/shardlora-quantize"
    for kind, bs, dq in [("nf4", 64, True), ("nf4", 256, False), ("int8", 256, False)]:
        out = os.path.join(TMP, f"{kind}-{bs}-{dq}.h5")
        run([quantize, model, out, "--quant", kind, "--blocksize", str(bs)] + (["--double-quant"] if dq else []))
        check_quantized_file(f"quantize {kind} bs{bs}{' dq' if dq else ''}", model, out, kind, bs, dq)

    src = os.path.join(SHARED, "models", "stories260K.bin")
    plain, direct, after = (os.path.join(TMP, n) for n in ("s.h5", "s-import-q.h5", "s-quantize.h5"))
    run([f"{BIN}/shardlora-import", "llama2c", src, plain])
    run([f"{BIN}/shardlora-import", "llama2c", src, direct, "--quantize", "nf4", "--double-quant"])
    run([quantize, plain, after, "--quant", "nf4", "--double-quant"])
    check_quantized_file("import --quantize nf4 --double-quant", plain, direct, "nf4", 64, True)
    with h5py.File(direct, "r") as a, h5py.File(after, "r") as b:
        paths = [f"model/layers/{layer}/{proj}/weight" for layer in a["model/layers"] for proj in PROJ]
        same = all(same_bits(a[w][m][:], b[w][m][:]) and a[w].attrs["offset"] == b[w].attrs["offset"]
                   for w in paths for m in ("packed", "absmax", "nested_absmax"))
        check("import --quantize equals import + shardlora-quantize bit for bit", same)

    bad = os.path.join(TMP, "bad.h5")
    expect_fail("bad --quant value is rejected", [quantize, model, bad, "--quant", "nf5"], r"--quant nf5.*nf4, fp4 or int8")
    expect_fail("int8 with --double-quant is rejected", [quantize, model, bad, "--quant", "int8", "--double-quant"],
                r"double quantization applies to nf4 and fp4 only")
    expect_fail("blocksize not allowed for the type is rejected", [quantize, model, bad, "--quant", "nf4",
                "--blocksize", "4096"], r"blocksize must be 64, 128 or 256")
    expect_fail("missing input file is rejected", [quantize, os.path.join(TMP, "none.h5"), bad, "--quant", "nf4"],
                r"none\.h5")
    q = os.path.join(TMP, "nf4-64-True.h5")
    expect_fail("already quantized input is rejected", [quantize, q, bad, "--quant", "nf4"], r"already quantized")
    with h5py.File(q, "r+") as f:
        del f.attrs["quantization"]
    expect_fail("a group at a weight path is rejected", [quantize, q, bad, "--quant", "int8"],
                r"q_proj/weight is a group.*already quantized")
    check("failed runs leave neither OUT nor OUT.partial", not os.path.exists(bad) and not os.path.exists(bad + ".partial"))
    finish()


if __name__ == "__main__":
    main()
