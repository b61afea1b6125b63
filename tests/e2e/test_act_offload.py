"""--act-offload moves the layer inputs that --act-ckpt keeps into host memory and changes no number: a
real pretrained model (stories260K, 5 layers, so 3 of its inputs leave the ring of 2) trains with
--act-ckpt alone and with --act-offload to the same losses and step-1 LoRA gradients bit for bit,
on 1 and 2 ranks, with LoRA dropout (masks drawn again in the recompute) and 4 or 2 micro-steps per
step (the ring reused). --act-offload turns --act-ckpt on and contradicts --act-ckpt=false; the
--dry-run plan shows the ring in the activations and the host area in a row of its own."""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, SHARED, check, expect_exit, finish, read_grads, read_metrics, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
V, LAYERS, HIDDEN = 512, 5, 64
run([f"{BIN}/shardlora-import", "llama2c", f"{SHARED}/models/stories260K.bin", "stories.h5"])
rng = np.random.default_rng(7)
# documents of 20-200 tokens in windows of 128: micro-batches of different row counts
write_tokens("data.h5", [np.concatenate([[1], rng.integers(3, V, rng.integers(20, 200))]) for _ in range(64)], V)
common = [SL, "train", "--model=stories.h5", "--data=data.h5", "--seq-len=128", "--micro-batch=2", "--global-batch=8",
          "--quant=nf4", "--double-quant", "--lora-r=8", "--lora-alpha=16", "--lora-dropout=0.1", "--lr=2e-3",
          "--steps=4", "--log-every=1", "--dump-grads"]


def same_grads(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


for np_ in (1, 2):
    run(common + [f"--out=ckpt_{np_}", "--act-ckpt=true"], np=np_)
    p = run(common + [f"--out=offload_{np_}", "--act-offload"], np=np_)
    if np_ == 1:
        check("--act-offload alone turns --act-ckpt on and says where the inputs go",
              "activations: recomputed (--act-ckpt=true), layer inputs copied host to host (--act-offload" in p.stdout,
              p.stdout + p.stderr)
    a, b = read_metrics(f"ckpt_{np_}"), read_metrics(f"offload_{np_}")
    check(f"{np_} rank(s): --act-offload gives the losses of --act-ckpt bit for bit over 4 steps",
          len(a) == 4 and np.array_equal(a, b), (a, b))
    ga, gb = read_grads(f"ckpt_{np_}"), read_grads(f"offload_{np_}")
    check(f"{np_} rank(s): --act-offload gives all {len(ga)} LoRA gradients of --act-ckpt bit for bit",
          len(ga) > 0 and same_grads(ga, gb))

expect_exit("--act-offload with --act-ckpt=false is refused, naming both", common + ["--out=o", "--act-ckpt=false",
            "--act-offload=true"], 2, r"options --act-offload=true and --act-ckpt=false contradict each other")


def plan(*extra):
    """The --dry-run rows (label: MiB) at a larger micro-batch, or None for a build without the backend."""
    p = run([SL, "train", "--model=stories.h5", "--data=data.h5", "--seq-len=512", "--micro-batch=8", "--quant=nf4",
                          "--out=dry", "--dry-run", *extra], np=1, check_rc=False)
    if "this build has no CUDA backend" in p.stderr:
        return None
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return {m[1]: float(m[2]) for m in re.finditer(r"^  (\S.*?) +([0-9.]+) MiB$", p.stdout, re.M)}


T = 8 * 512
for device, act_bytes in (("cpu", 4), ("cuda", 2)):
    ckpt, off = plan(f"--device={device}", "--act-ckpt"), plan(f"--device={device}", "--act-offload")
    if ckpt is None:
        check(f"# skip: a CPU-only build has no {device} plan", True)
        continue
    slot = T * HIDDEN * act_bytes / 2**20  # one layer input, MiB
    saved = ckpt["activations (--act-ckpt), scratch, heads"] - off["activations (--act-offload), scratch, heads"]
    check(f"{device} plan: the activations shrink by the {LAYERS - 2} inputs that leave the device "
          f"({saved:.1f} MiB, {LAYERS - 2} x {slot:.1f})", abs(saved - (LAYERS - 2) * slot) <= 0.1, (ckpt, off))
    host = off.get("offloaded layer inputs (host to host)" if device == "cpu" else
                   "pinned host memory: offloaded layer inputs")
    check(f"{device} plan: a host row holds those {LAYERS - 2} inputs ({host} MiB)",
          host is not None and abs(host - (LAYERS - 2) * slot) <= 0.1, off)
finish()
