"""The rope types' inverse frequencies and (cos, sin) tables (kernels/cpu/rope.c, through
rope_driver.c compiled here against the kernel alone) against rope_ref, an independent numpy
transcription of the published formulas: Llama 3.1's (factor 8, low 1, high 4, original 8192,
theta 500000, head_dim 128) and YaRN as Qwen configures it (factor 4, original 32768, beta 32 and
1, theta 1e6, head_dim 128), plus linear, default and an untruncated yarn. inv_freq is compared
within 1e-6 relative both to the float64 formulas and to the same formulas with theta^(2i/d) in
float32 (transformers computes its tables in float32 on torch); the tables within 1e-6 of their
largest value, over positions past the original context."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import CC, ROOT, TMP, check, finish, run  # noqa: E402
from reference import rope_ref  # noqa: E402

TOL = 1e-6
LLAMA3 = dict(type="llama3", theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=8192)
YARN = dict(type="yarn", theta=1e6, factor=4.0, original_max_position_embeddings=32768, beta_fast=32.0,
            beta_slow=1.0, truncate=True, attention_factor=0.1 * np.log(4.0) + 1)
CASES = [("llama3", LLAMA3, 128, 20000), ("yarn", YARN, 128, 40000),
         ("yarn untruncated, attention factor given", dict(YARN, truncate=False, attention_factor=1.25), 128, 3000),
         ("linear", dict(type="linear", theta=10000.0, factor=2.5), 64, 3000),
         ("default", dict(type="default", theta=10000.0), 96, 3000)]


def build_driver():
    exe = os.path.join(TMP, "rope_driver")
    run([*CC, "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-fopenmp", f"-I{ROOT}/kernels",
         os.path.join(ROOT, "tests/reference/rope_driver.c"), os.path.join(ROOT, "kernels/cpu/rope.c"),
         "-o", exe, "-lm"])
    return exe


def driver(exe, rope, head_dim, positions):
    table = os.path.join(TMP, "table.bin")
    args = [rope["type"], rope["theta"], head_dim, positions, rope.get("factor", 1.0), rope.get("low_freq_factor", 0),
            rope.get("high_freq_factor", 0), rope.get("original_max_position_embeddings", 0),
            rope.get("beta_fast", 0), rope.get("beta_slow", 0), int(rope.get("truncate", 0)),
            rope.get("attention_factor", 1.0), table]
    out = subprocess.run([exe] + [repr(a) if isinstance(a, float) else str(a) for a in args], capture_output=True,
                         text=True, check=True).stdout
    inv = np.array([float(x) for x in out.split()])
    cs = np.fromfile(table, dtype=np.float32).reshape(positions, head_dim // 2, 2).astype(np.float64)
    return inv, cs[..., 0], cs[..., 1]


exe = build_driver()
for name, rope, hd, positions in CASES:
    inv, cos, sin = driver(exe, rope, hd, positions)
    want = rope_ref.inv_freq(rope, hd)
    want32 = rope_ref.inv_freq(rope, hd, np.float32)
    err, err32 = np.max(np.abs(inv - want) / want), np.max(np.abs(inv - want32) / want32)
    check(f"{name}: inv_freq equals the formulas in float64 ({err:.1e}) and in float32 ({err32:.1e})",
          len(inv) == hd // 2 and err <= TOL and err32 <= TOL, f"got {inv}\nwant {want}")
    if rope["type"] != "default":
        plain = rope_ref.inv_freq(dict(type="default", theta=rope["theta"]), hd)
        check(f"{name}: the scaling changes some frequencies and keeps others",
              np.any(np.abs(inv / plain - 1) > 0.1) and (rope["type"] == "linear" or np.any(inv == plain)))
    wc, ws = rope_ref.cos_sin(rope, hd, positions)
    scale = rope_ref.attention_factor(rope)
    terr = max(np.max(np.abs(cos - wc)), np.max(np.abs(sin - ws))) / scale
    check(f"{name}: (cos, sin) table over {positions} positions equals the reference ({terr:.1e})",
          terr <= TOL and np.max(np.abs(wc)) > 0.99 * scale)
finish()
