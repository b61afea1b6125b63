"""How far bf16 arithmetic alone moves a LoRA training step from float64, on the model and data shape
of tests/gpu/test_step_cuda.py: the float64 autograd reference (lora_ref.py) run once exactly and once
with every matrix product's inputs, output and gradients rounded to bf16 (norms, softmax and the loss
stay float64). The CUDA backend's distance from the CPU backend should be no larger than this.
usage: bf16_sensitivity.py   (from a scratch directory; needs bin/shardlora-init, torch, h5py)"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llama_ref  # noqa: E402
import lora_ref  # noqa: E402
from testlib import BIN, run  # noqa: E402


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


class RoundBf16(torch.autograd.Function):
    """Identity that rounds values forward and gradients backward, as bf16 tensors hold them."""

    @staticmethod
    def forward(ctx, x):
        return bf16(x)

    @staticmethod
    def backward(ctx, g):
        return bf16(g)


run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--intermediate",
     "688", "--layers", "2", "--vocab", "512", "--max-pos", "256", "--std", "0.05", "--seed", "3"])
weights, cfg = llama_ref.load_h5("model.h5")
rng = np.random.default_rng(11)
docs = [np.concatenate([[1], rng.integers(3, 512, rng.integers(8, 120))]) for _ in range(8)]
masks = [(np.arange(len(d)) >= len(d) // 3).astype(np.uint8) for d in docs]
adapter = lora_ref.write_adapter("init.h5", cfg, 8, 16.0, list(lora_ref.PROJ), rng)
exact_loss, exact = lora_ref.loss_and_grads(weights, cfg, adapter, 2.0, docs, masks)
matmul = torch.Tensor.__matmul__
torch.Tensor.__matmul__ = lambda a, b: RoundBf16.apply(matmul(RoundBf16.apply(a), RoundBf16.apply(b)))
w16 = {k: bf16(torch.as_tensor(v).to(torch.float64)).numpy() for k, v in weights.items()}
loss, got = lora_ref.loss_and_grads(w16, cfg, adapter, 2.0, docs, masks)
torch.Tensor.__matmul__ = matmul
errs = sorted((float(np.linalg.norm(got[k] - exact[k]) / np.linalg.norm(exact[k])), k) for k in exact)
print(f"loss: float64 {exact_loss:.6f}, bf16 products {loss:.6f} (relative {abs(loss - exact_loss) / exact_loss:.1e})")
print(f"{len(errs)} gradients, relative norm error: median {errs[len(errs) // 2][0]:.2e}, "
      f"max {errs[-1][0]:.2e} ({errs[-1][1]})")
