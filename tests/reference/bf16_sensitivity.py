"""Which bf16 roundings move a LoRA training step's gradients, on the model and data shape of
tests/gpu/test_step_cuda.py (NF4 + double quantization, r 8, alpha 16, a loss mask, random A and B):
the float64 autograd reference (lora_ref.py) run exactly and with chosen values rounded to bf16, as
a bf16 backend stores them (norm statistics, softmax and the loss stay float64, as the CUDA backend
keeps them in fp32). Each rounding site is a switch:

  x    the forward residual stream, after the embedding and after every residual add
  dx   the backward residual stream: the gradient of x, rounded where each add lands in it
  y    every projection's output (q, k, v, o, gate, up, down; base + LoRA) and the rotated q, k
  dy   the gradients of those outputs (the inputs of the backward GEMMs)
  h    every GEMM's activation input (normed x, attention output, silu(gate) * up, final norm)
  dh   the gradients of those inputs (the dgrad GEMMs' outputs, before the norm backward)
  W    the dequantized frozen weights
  dlog the gradient of the logits
  u    the LoRA intermediates A x (forward) and their gradients du (backward)

It prints, for each configuration (one switch on; all on; all on but one or two), the loss and the
median and maximum relative norm error over the LoRA gradients, each over several data draws.
Measured (6 draws, 2026-12-01): all sites 1.43e-2 median / 2.23e-2 max; the forward sites alone
(x, y, h, W) give 1.35e-2 / 2.14e-2, the backward ones alone 5.3e-3 / 7.3e-3; keeping x and dx in
fp32 leaves 1.34e-2 / 2.05e-2, and the bf16 GEMM operands h and W alone give 1.06e-2 / 1.66e-2.
usage: bf16_sensitivity.py [--seeds N]   (from a scratch directory; needs bin/, torch, h5py)"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lora_ref  # noqa: E402
from dequant_ref import dequantized  # noqa: E402
from testlib import BIN, run  # noqa: E402

SITES = ["x", "dx", "y", "dy", "h", "dh", "W", "dlog", "u"]
# site -> (lora_ref hook kind, round forward values, round backward gradients)
HOOKS = {"x": ("x", 1, 0), "dx": ("x", 0, 1), "y": ("y", 1, 0), "dy": ("y", 0, 1), "h": ("h", 1, 0),
         "dh": ("h", 0, 1), "dlog": ("logits", 0, 1), "u": ("u", 1, 1)}


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


class Round(torch.autograd.Function):
    """Identity that rounds the value forward and/or the gradient backward to bf16."""

    @staticmethod
    def forward(ctx, x, fwd, bwd):
        ctx.bwd = bwd
        return bf16(x) if fwd else x.clone()

    @staticmethod
    def backward(ctx, g):
        return (bf16(g) if ctx.bwd else g), None, None


def hook(on):
    """lora_ref's at(kind, t) for the set of switched-on sites."""
    modes = {}
    for site in on:
        if site in HOOKS:
            kind, f, b = HOOKS[site]
            m = modes.setdefault(kind, [0, 0])
            m[0], m[1] = m[0] | f, m[1] | b
    return lambda kind, t: Round.apply(t, *modes[kind]) if kind in modes and any(modes[kind]) else t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="data and adapter draws (default 3)")
    args = ap.parse_args()
    run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--intermediate",
         "688", "--layers", "2", "--vocab", "512", "--max-pos", "256", "--std", "0.05", "--seed", "3"])
    weights, cfg = dequantized("model.h5", ["--quant", "nf4", "--double-quant"])
    w16 = {k: bf16(torch.as_tensor(v).to(torch.float64)) for k, v in weights.items()}
    draws = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(11 + seed)
        docs = [np.concatenate([[1], rng.integers(3, 512, rng.integers(8, 120))]) for _ in range(8)]
        masks = [(np.arange(len(d)) >= len(d) // 3).astype(np.uint8) for d in docs]
        adapter = lora_ref.write_adapter(f"init{seed}.h5", cfg, 8, 16.0, list(lora_ref.PROJ), rng)
        draws.append((docs, masks, adapter, lora_ref.loss_and_grads(weights, cfg, adapter, 2.0, docs, masks)))

    def measure(on):
        errs, lerr = [], []
        for docs, masks, adapter, (exact_loss, exact) in draws:
            loss, got = lora_ref.loss_and_grads(w16 if "W" in on else weights, cfg, adapter, 2.0, docs, masks,
                                                at=hook(on))
            lerr.append(abs(loss - exact_loss) / exact_loss)
            errs += [float(np.linalg.norm(got[k] - exact[k]) / np.linalg.norm(exact[k])) for k in exact]
        return max(lerr), float(np.median(errs)), max(errs)

    configs = [("none (float64)", [])] + [(f"{s} only", [s]) for s in SITES] + [("all", SITES)]
    configs += [(f"all but {s}", [t for t in SITES if t != s]) for s in SITES]
    pairs = [("x", "dx"), ("dx", "dy"), ("dx", "dh"), ("dy", "dh"), ("x", "h"), ("dx", "u"), ("dx", "dlog"),
             ("h", "dh"), ("dx", "y"), ("h", "dy")]
    configs += [(f"all but {a}, {b}", [t for t in SITES if t not in (a, b)]) for a, b in pairs]
    groups = {"forward only": ["x", "y", "h", "W", "u"], "backward only": ["dx", "dy", "dh", "dlog", "u"],
              "GEMM operands h, W only": ["h", "W"], "all but x, dx, u": ["y", "dy", "h", "dh", "W", "dlog"],
              "all but x, y": ["dx", "dy", "h", "dh", "W", "dlog", "u"],
              "all but x, y, h": ["dx", "dy", "dh", "W", "dlog", "u"]}
    configs += list(groups.items())
    print(f"{len(draws)} draws x 14 gradients (2 layers x 7 projections); relative norm error against float64")
    print(f"| {'bf16 sites':<22} | loss (max) | grad median | grad max |")
    print(f"|{'-' * 24}|-----------:|------------:|---------:|")
    for name, on in configs:
        lr, med, mx = measure(on)
        print(f"| {name:<22} | {lr:10.1e} | {med:11.2e} | {mx:8.2e} |", flush=True)


if __name__ == "__main__":
    main()
