"""shardlora-init's weights follow the rule of tools/init/main.c bit for bit: element i of a matrix is
float32(std) * normal i of rng_normals(seed, FNV-1a of the matrix's path), rounded to bf16 with
--dtype bf16; norms are ones and biases zeros. The reference is a numpy transcription of src/rng.c
(Philox4x32-10, then Box-Muller with its float32 operations in their order). Each matrix is
normal(0, std): mean, standard deviation and kurtosis within five standard errors. A layer and the
embeddings are the same in a file with fewer layers."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, finish, run  # noqa: E402

F = np.float32
MASK = np.uint64(0xFFFFFFFF)
LANES = 64  # RNG_NORMAL_LANES


def philox(c, key):
    """Philox4x32-10 of the counters c (four arrays of 32-bit values in uint64) under key (two ints)."""
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    x0, x1, x2, x3 = c
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * x0, np.uint64(0xCD9E8D57) * x2
        x0, x1, x2, x3 = (p1 >> np.uint64(32)) ^ x1 ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ x3 ^ k1, p0 & MASK
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & MASK, (k1 + np.uint64(0xBB67AE85)) & MASK
    return x0, x1, x2, x3


def log_unit(u):
    """rng.c's log_unit: Cephes' logf, operation for operation in float32."""
    b = u.view(np.uint32)
    mant = b & np.uint32(0x7FFFFF)
    below = mant < np.uint32(0x3504F3)
    e = (b >> np.uint32(23)).astype(np.int32) - 126 - below.astype(np.int32)
    m = (mant | np.where(below, np.uint32(0x3F800000), np.uint32(0x3F000000))).view(np.float32) - F(1)
    z, fe = m * m, e.astype(np.float32)
    y = F(7.0376836292E-2) * m - F(1.1514610310E-1)
    for c in (1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1, 2.0000714765E-1,
              -2.4999993993E-1, 3.3333331174E-1):
        y = y * m + F(c) if c > 0 else y * m - F(-c)
    y = y * m * z
    y = y + F(-2.12194440e-4) * fe
    y = y + F(-0.5) * z
    return m + y + F(0.693359375) * fe


def box_muller(a, b):
    """rng.c's box_muller of the word arrays a (radius) and b (angle): (r cos t, r sin t) in float32."""
    u = ((a >> np.uint64(1)).astype(np.int32).astype(np.float32) + F(0.5)) * F(2.0 ** -31)
    r = np.sqrt(F(-2) * log_unit(u))
    k = (b >> np.uint64(8)).astype(np.int32)
    q = (k + (1 << 21)) >> 22
    x = (k - q * (1 << 22)).astype(np.float32) * F(float.fromhex("0x1.921fb6p-22"))
    z = x * x
    s = ((F(-1.9515295891E-4) * z + F(8.3321608736E-3)) * z - F(1.6666654611E-1)) * z * x + x
    c = ((F(2.443315711809948E-5) * z - F(1.388731625493765E-3)) * z + F(4.166664568298827E-2)) * z * z
    c = c - F(0.5) * z + F(1)
    odd = (q & 1) == 1
    c_q, s_q = np.where(odd, s, c), np.where(odd, c, s)
    return r * np.where((q + 1) & 2, -c_q, c_q), r * np.where(q & 2, -s_q, s_q)


def normals(seed, stream, n):
    """rng_normals(seed, stream, 0, n): group g of 4 * LANES numbers holds lane j's four at s * LANES + j."""
    groups = -(-n // (4 * LANES))
    c = np.arange(groups * LANES, dtype=np.uint64)
    x = philox((c & MASK, c >> np.uint64(32), np.full_like(c, stream & 0xFFFFFFFF), np.full_like(c, stream >> 32)),
               (seed & 0xFFFFFFFF, seed >> 32))
    parts = box_muller(x[0], x[1]) + box_muller(x[2], x[3])
    return np.stack([p.reshape(groups, LANES) for p in parts], axis=1).reshape(-1)[:n]


def fnv1a(path):
    h = 0xCBF29CE484222325
    for ch in path.encode():
        h = ((h ^ ch) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def to_bf16(w):
    u = w.view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)) << np.uint64(16)).astype(
        np.uint32).view(np.float32)


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__("/" + name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


shape = ["--hidden", "128", "--heads", "4", "--kv-heads", "2", "--intermediate", "344", "--vocab", "3000",
         "--max-pos", "64"]
cases = [("f32", "llama", 5, 0.02), ("bf16", "qwen2", 9, 0.05)]
for dtype, arch, seed, std in cases:
    name = f"{arch}.{dtype}.h5"
    run([f"{BIN}/shardlora-init", name, *shape, "--layers", "2", "--arch", arch, "--dtype", dtype, "--seed", str(seed),
         "--std", str(std)])
    got = datasets(name)
    exact, stats, others = [], [], []
    for path, w in got.items():
        if path.startswith("/config"):
            continue
        if w.ndim != 2:
            others.append((path, np.all(w == (1.0 if path.endswith("norm/weight") else 0.0))))
            continue
        want = (normals(seed, fnv1a(path), w.size) * F(std)).reshape(w.shape)
        if dtype == "bf16":
            want = to_bf16(want)
        exact.append((path, np.array_equal(w.view(np.uint32), want.view(np.uint32))))
        x = w.astype(np.float64).reshape(-1)
        n, mean, var = x.size, x.mean(), x.var()
        kurt = ((x - mean) ** 4).mean() / var ** 2
        bf16_var = (std * 2 ** -9) ** 2 / 3 if dtype == "bf16" else 0  # rounding adds at most this much
        stats.append((path, abs(mean) < 5 * std / np.sqrt(n),
                      abs(np.sqrt(var) - std) < 5 * std / np.sqrt(2 * n) + bf16_var / std,
                      abs(kurt - 3) < 5 * np.sqrt(24 / n), np.count_nonzero(x == 0) <= 1e-4 * n,
                      f"{path}: n {n}, mean {mean:.3g}, std {np.sqrt(var):.6g}, kurtosis {kurt:.4f}"))
    bad = [p for p, same in exact if not same]
    check(f"init --dtype {dtype} --arch {arch}: all {len(exact)} matrices are the documented stream, bit for bit",
          exact and not bad, f"differ: {bad}")
    bad = [s[-1] for s in stats if not all(s[1:5])]
    check(f"init --dtype {dtype}: every matrix is normal(0, {std}) by mean, std and kurtosis (five standard errors)",
          not bad, "\n".join(bad))
    bad = [p for p, same in others if not same]
    check(f"init --arch {arch}: {len(others)} norms are ones and biases zeros", others and not bad, f"not: {bad}")

run([f"{BIN}/shardlora-init", "one_layer.h5", *shape, "--layers", "1", "--seed", "5"])
one, two = datasets("one_layer.h5"), datasets("llama.f32.h5")
shared = [p for p in one if p.startswith("/model/") and p != "/model/norm/weight"]
check(f"a 1-layer file's {len(shared)} weights equal the 2-layer file's (each value a function of its name)",
      shared and all(np.array_equal(one[p], two[p]) for p in shared))
finish()
