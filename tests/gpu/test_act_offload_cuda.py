"""--act-offload on the GPU (run on a GPU host): the layer inputs that --act-ckpt keeps go to pinned
host memory on the copy stream and come back one layer ahead, and no number changes: the losses
and step-1 LoRA gradients equal --act-ckpt's bit for bit on one rank, beside NCCL's stream
(--comm=nccl on one rank) and with 2 ranks sharing the GPU. The shape makes a layer input (8192
rows x 1024, 16 MiB) take about as long to copy as the layer takes to compute, so a buffer
written before its copy to the host had left, or read before its copy back had arrived, would
show in the bits. The copies ran (the profile's copy stream), and the pool's peak fell by about
the 6 inputs of 8 that no longer stay on the GPU."""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, finish, run, write_tokens  # noqa: E402
from testlib import read_grads as grads, read_metrics as metrics  # noqa: E402

SL = f"{BIN}/shardlora"
V, LAYERS, HIDDEN, T = 512, 8, 1024, 8 * 1024
rng = np.random.default_rng(13)
# head_dim 64 (cuDNN's fused attention); a small MLP keeps the compute of a layer near its copy time
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", str(HIDDEN), "--heads", "16", "--kv-heads", "4", "--intermediate",
     "1024", "--layers", str(LAYERS), "--vocab", str(V), "--max-pos", "1024", "--std", "0.02", "--seed", "7"])
# documents of 200-1500 tokens: windows of different lengths, micro-batches of different row counts
write_tokens("lm.h5", [np.concatenate([[1], rng.integers(3, V, rng.integers(200, 1500))]) for _ in range(160)], V)
common = [SL, "train", "--model=model.h5", "--data=lm.h5", "--seq-len=1024", "--micro-batch=8", "--global-batch=16",
          "--quant=nf4", "--double-quant", "--lora-r=8", "--lora-alpha=16", "--lora-dropout=0.1", "--lr=1e-3",
          "--steps=6", "--log-every=1", "--dump-grads", "--device=cuda"]


def train(out, np_, *extra):
    p = run(common + [f"--out={out}", *extra], np=np_)
    return p.stdout + p.stderr


def peak_gib(log):
    m = re.search(r"cuda: peak memory of the buffers ([0-9.]+) GiB", log)
    return float(m[1]) if m else None


def same(a, b):
    ga, gb = grads(a), grads(b)
    return (np.array_equal(metrics(a), metrics(b)) and len(ga) > 0 and set(ga) == set(gb)
            and all(np.array_equal(ga[k], gb[k]) for k in ga))


os.environ["SHARDLORA_PROFILE"] = "1"
log_ckpt, log_off = train("ckpt", 1, "--act-ckpt=true"), train("offload", 1, "--act-offload")
del os.environ["SHARDLORA_PROFILE"]
check("one rank: --act-offload gives --act-ckpt's 6 losses and every LoRA gradient bit for bit", same("ckpt", "offload"),
      (metrics("ckpt"), metrics("offload")))
copies = re.search(r"profile: +offload copies +([0-9.]+)", log_off)
check(f"the inputs went over the copy stream ({copies[1] if copies else '?'} ms per step)",
      copies is not None and float(copies[1]) > 0, log_off)
saved = (LAYERS - 2) * T * HIDDEN * 2 / 2**30
p_ckpt, p_off = peak_gib(log_ckpt), peak_gib(log_off)
check(f"the pool's peak falls from {p_ckpt} to {p_off} GiB (the {LAYERS - 2} inputs that leave: {saved:.3f} GiB)",
      p_ckpt is not None and p_off is not None and p_ckpt - p_off >= saved / 2, (log_ckpt, log_off))
for name in ("ckpt", "offload"):
    print(f"# {name}: tokens/s {metrics(name, 'tokens_per_s')[1:]}")

for label, np_, extra in (("beside NCCL's stream (--comm=nccl, one rank)", 1, ["--comm=nccl"]),
                          ("2 ranks on one GPU (staged collectives)", 2, [])):
    tag = f"np{np_}{''.join(extra)}".replace("-", "").replace("=", "")
    train(f"ckpt_{tag}", np_, "--act-ckpt=true", *extra)
    train(f"offload_{tag}", np_, "--act-offload", *extra)
    check(f"{label}: --act-offload gives --act-ckpt's losses and gradients bit for bit",
          same(f"ckpt_{tag}", f"offload_{tag}"), (metrics(f"ckpt_{tag}"), metrics(f"offload_{tag}")))
finish()
