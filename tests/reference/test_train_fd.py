"""Finite-difference check of shardlora's LoRA gradients through shardlora itself: the step-1
gradient that train --dump-grads writes, against central differences of the loss that eval
--adapter computes with one adapter entry moved by +-h. Both run in fp32, independently of PyTorch.

Tolerance: eval's loss is an fp32 forward summed in double, reproducible to about 1e-6 absolute
at this size. Central differences at h = 1e-2 and h/2, combined by Richardson extrapolation
((4 D(h/2) - D(h)) / 3) to cancel the O(h^2) truncation term, carry at most ~4/3 * 1e-6 / h = 1.3e-4
of that noise. So each estimate must match the gradient within 3e-4 absolute + 1% relative, on the
entries with the largest gradients (0.02 to 0.5 here), where a wrong gradient cannot hide."""
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llama_ref  # noqa: E402
import lora_ref  # noqa: E402
from testlib import BIN, check, check_close, finish, run  # noqa: E402

H = 1e-2
rng = np.random.default_rng(21)
docs = [rng.integers(0, 64, n) for n in (33, 20, 27, 33)]
masks = [(rng.random(len(d)) > 0.25).astype(np.uint8) for d in docs]
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.concatenate(docs).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    f["loss_mask"] = np.concatenate(masks)
    f.attrs["vocab_size"] = np.int64(64)


def fd_check(arch, keys):
    """The step-1 gradient of the picked entries of an `arch` model against central differences."""
    model, init = f"model_{arch}.h5", f"init_{arch}.h5"
    run([f"{BIN}/shardlora-init", model, "--arch", arch, "--hidden", "32", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "64", "--layers", "2", "--vocab", "64", "--max-pos", "64", "--std", "0.2", "--seed", "8"])
    _, cfg = llama_ref.load_h5(model)
    lora_ref.write_adapter(init, cfg, 4, 24.0, list(lora_ref.PROJ), rng, std=0.08)
    common = [f"--model={model}", "--data=data.h5", "--seq-len=32", "--quant=nf4", "--double-quant"]
    run([f"{BIN}/shardlora", "train", *common, f"--out=out_{arch}", f"--adapter={init}", "--lora-r=4",
         "--lora-alpha=24", "--micro-batch=4", "--steps=1", "--dump-grads", "--log-every=1", "--lr=0"], np=1)

    def eval_loss(adapter):
        run([f"{BIN}/shardlora", "eval", *common, f"--adapter={adapter}", "--out=ev.h5"], np=1)
        with h5py.File("ev.h5", "r") as f:
            return float(f["eval/loss"][()])

    with h5py.File(f"out_{arch}/metrics.h5", "r") as f:
        train_loss = float(f["metrics/loss"][0])
    check_close(f"{arch}: eval --adapter loss equals train's step-1 loss on the same windows", eval_loss(init),
                train_loss, 1e-6)
    with h5py.File(f"out_{arch}/grads_step1.h5", "r") as g:
        grads = {}
        g["lora"].visititems(lambda k, o: grads.__setitem__("lora/" + k, o[...]) if isinstance(o, h5py.Dataset) else None)

    def moved_loss(key, idx, delta):
        shutil.copy(init, "moved.h5")
        with h5py.File("moved.h5", "r+") as f:
            value = f[key][...]
            value[idx] += delta
            f[key][...] = value
        return eval_loss("moved.h5")

    def central(key, idx, h):
        return (moved_loss(key, idx, h) - moved_loss(key, idx, -h)) / (2 * h)

    for key in keys:  # the two largest entries of each: where a wrong gradient cannot hide
        flat = np.abs(grads[key]).ravel()
        for i in np.argsort(flat)[-2:]:
            idx = np.unravel_index(i, grads[key].shape)
            fd = (4 * central(key, idx, H / 2) - central(key, idx, H)) / 3
            got = float(grads[key][idx])
            check(f"{arch}: d loss / d {key.split('layers/')[1]}{list(map(int, idx))}: finite difference {fd:.6f} "
                  f"vs gradient {got:.6f}", abs(fd - got) <= 3e-4 + 0.01 * abs(got) and abs(got) > 1e-3)


fd_check("llama", ("lora/model/layers/0/self_attn/q_proj/lora_A", "lora/model/layers/1/mlp/down_proj/lora_B",
                   "lora/model/layers/0/mlp/gate_proj/lora_B", "lora/model/layers/1/self_attn/v_proj/lora_A"))
# Qwen3: q and k pass through their per-head RMSNorm, whose backward these gradients go through
fd_check("qwen3", ("lora/model/layers/0/self_attn/q_proj/lora_A", "lora/model/layers/0/self_attn/k_proj/lora_B",
                   "lora/model/layers/1/self_attn/q_proj/lora_B"))
finish()
