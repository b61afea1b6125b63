"""Whole training runs on the CPU backend: loss trajectories that do not depend on the number
of ranks or the sharding strategy, a learnable task whose eval loss falls by more than half, and
the training errors users meet first."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_fail, finish, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
V = 64


def progression_docs(n_docs, rng):
    """BOS, then a, a+d, a+2d, ... over ids 3..V-1: predictable after two tokens."""
    docs = []
    for _ in range(n_docs):
        a, d, n = rng.integers(0, V - 3), rng.integers(1, 4), rng.integers(12, 30)
        docs.append(np.concatenate([[1], 3 + (a + d * np.arange(n)) % (V - 3)]))
    return docs


def losses(out):
    with h5py.File(f"{out}/metrics.h5", "r") as f:
        return f["metrics/loss"][:], f["metrics/step"][:]


rng = np.random.default_rng(1)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "128",
     "--layers", "2", "--vocab", str(V), "--max-pos", "64", "--std", "0.1", "--seed", "4"])
write_tokens("train.h5", progression_docs(400, rng), V)
write_tokens("heldout.h5", progression_docs(60, rng), V)
common = ["--model=model.h5", "--data=train.h5", "--seq-len=32", "--micro-batch=2", "--global-batch=8",
          "--quant=nf4", "--double-quant", "--lora-r=8", "--lora-alpha=16", "--lr=3e-3", "--log-every=1"]

# the same 20 steps on 1, 2 and 4 ranks, and with every sharding strategy
curves = {}
for np_, shard in ((1, "full"), (2, "full"), (4, "full"), (2, "grad_op"), (2, "none")):
    out = f"run_{np_}_{shard}"
    run([SL, "train", *common, f"--out={out}", "--steps=20", f"--shard={shard}"], np=np_)
    curves[(np_, shard)], steps = losses(out)
    check(f"metrics.h5 has 20 steps at np={np_} --shard={shard}", list(steps) == list(range(1, 21)), steps)
base = curves.pop((1, "full"))
for key, curve in curves.items():
    rel = np.max(np.abs(curve - base) / np.abs(base))
    check(f"20-step loss trajectory at np={key[0]} --shard={key[1]} equals np=1 within 1e-5 (max {rel:.1e})",
          rel <= 1e-5, f"{curve} vs {base}")
check("loss falls over 20 steps", base[-1] < base[0] - 0.1, base)

# a learnable task: 300 steps halve the held-out loss
def heldout_loss(adapter=None):
    extra = [f"--adapter={adapter}"] if adapter else []
    run([SL, "eval", "--model=model.h5", "--data=heldout.h5", "--seq-len=32", "--quant=nf4", "--double-quant",
         "--out=ev.h5", *extra], np=2)
    with h5py.File("ev.h5", "r") as f:
        return float(f["eval/loss"][()])


before = heldout_loss()
run([SL, "train", *common, "--out=long", "--steps=300", "--schedule=cosine", "--warmup-steps=20", "--log-every=50"], np=2)
after = heldout_loss("long/adapter.h5")
check(f"300 steps lower held-out eval loss by at least half ({before:.3f} -> {after:.3f})", after <= before / 2)

# training errors
write_tokens("cls.h5", progression_docs(16, rng), V, labels=list(rng.integers(0, 3, 16)), num_labels=3)
expect_fail("LoRA target that matches no module", [SL, "train", *common, "--out=e", "--lora-targets=q_proj,qkv_proj"],
            r"--lora-targets: 'qkv_proj' matches no module", np=2)
expect_fail("LoRA rank 0", [SL, "train", *common, "--out=e", "--lora-r=0"], r"--lora-r: expected an integer >= 1, found '0'", np=2)
expect_fail("seq_cls without /labels", [SL, "train", *common, "--out=e", "--task=seq_cls", "--num-labels=3"],
            r"train.h5: dataset has no /labels, which --task=seq_cls needs", np=2)
expect_fail("num-labels mismatch", [SL, "train", *common, "--data=cls.h5", "--out=e", "--task=seq_cls", "--num-labels=4"],
            r"--num-labels=4 does not match cls.h5, whose num_labels attribute is 3", np=2)
expect_fail("seq-len beyond the model's positions", [SL, "train", *common, "--out=e", "--seq-len=100"],
            r"--seq-len=100 exceeds the model's max_position_embeddings \(64\)", np=2)
expect_fail("global batch that does not divide", [SL, "train", *common, "--out=e", "--global-batch=6"],
            r"--global-batch=6 is not a multiple of --micro-batch \(2\) x ranks \(2\)", np=2)
expect_fail("int8 with double quantization", [SL, "train", *common[:-6], "--quant=int8", "--double-quant", "--out=e"],
            r"--quant=int8", np=2)
finish()
