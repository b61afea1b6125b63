"""Checkpoints and restart: 20 + 20 steps equal 40 straight (bit for bit on the same rank count,
within 1e-5 on another), damaged and partial checkpoints are reported and skipped, and options
that must match the checkpoint are checked."""
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_fail, finish, run  # noqa: E402

SL = f"{BIN}/shardlora"
rng = np.random.default_rng(2)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "48", "--heads", "4", "--kv-heads", "2", "--intermediate", "96",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--std", "0.1", "--seed", "6"])
docs = [np.concatenate([[1], 3 + (rng.integers(0, 61) + rng.integers(1, 4) * np.arange(rng.integers(10, 30))) % 61])
        for _ in range(200)]
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.concatenate(docs).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(64)
common = ["--model=model.h5", "--data=data.h5", "--seq-len=32", "--micro-batch=2", "--global-batch=8", "--quant=nf4",
          "--double-quant", "--lora-r=8", "--lr=2e-3", "--warmup-steps=5", "--log-every=1"]
# a constant schedule after warmup: a run told --steps=20 then resumed to 40 sees the same rates


def train(out, steps, np_, *extra):
    return run([SL, "train", *common, f"--out={out}", f"--steps={steps}", *extra], np=np_)


def losses(out):
    with h5py.File(f"{out}/metrics.h5", "r") as f:
        return f["metrics/loss"][:], f["metrics/step"][:]


def adapter(out):
    with h5py.File(f"{out}/adapter.h5", "r") as f:
        got = {}
        f["lora"].visititems(lambda k, o: got.__setitem__(k, o[...]) if isinstance(o, h5py.Dataset) else None)
        return got


train("straight", 40, 2)
ref_loss, _ = losses("straight")
ref_adapter = adapter("straight")
train("halves", 20, 2, "--ckpt-every=10")
train("halves", 40, 2, "--resume=auto")
loss, steps = losses("halves")
check("resumed run's metrics.h5 continues at step 21", list(steps) == list(range(1, 41)), steps)
check("steps 21-40 after a resume equal the straight run bit for bit (2 ranks)", np.array_equal(loss, ref_loss),
      np.max(np.abs(loss - ref_loss)))
got = adapter("halves")
check("final adapter after a resume equals the straight run bit for bit",
      all(np.array_equal(got[k], ref_adapter[k]) for k in ref_adapter))

for first, second in ((2, 4), (4, 1)):
    out = f"reshard_{first}_{second}"
    train(out, 20, first, "--ckpt-every=20")
    train(out, 40, second, "--resume=auto")
    loss, _ = losses(out)
    rel = np.max(np.abs(loss[20:] - ref_loss[20:]) / np.abs(ref_loss[20:]))
    check(f"resumed on {second} ranks after {first}: steps 21-40 within 1e-5 (max {rel:.1e})", rel <= 1e-5)

# damage: flipped bytes in the newest checkpoint, and a partial one newer still
shutil.copytree("halves/checkpoints", "damaged/checkpoints")
newest, valid = sorted(os.listdir("damaged/checkpoints"))[-1], sorted(os.listdir("damaged/checkpoints"))[-2]
with h5py.File(f"damaged/checkpoints/{newest}", "r+") as f:
    d = f["optim/exp_avg/lora/model/layers/1/mlp/up_proj/lora_B"]
    a = d[...]
    a.view(np.uint32)[3, 2] ^= 0x00010000
    d[...] = a
with open("damaged/checkpoints/step_00000050.h5", "wb") as f:
    f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
p = run([SL, "train", *common, "--out=damaged", "--steps=45", "--resume=auto"], np=2)
check("a truncated checkpoint is reported and skipped", "skipping checkpoint damaged/checkpoints/step_00000050.h5" in p.stderr, p.stderr)
check("flipped bytes are detected by checksum, reported and skipped",
      f"skipping checkpoint damaged/checkpoints/{newest}: checksum mismatch in dataset /optim/exp_avg/lora/model/layers/1/mlp/up_proj/lora_B" in p.stderr,
      p.stderr)
check("resume takes the newest valid checkpoint instead", f"resume: from damaged/checkpoints/{valid}" in p.stdout, p.stdout)

expect_fail("resume with another LoRA rank", [SL, "train", *common, "--out=halves", "--steps=50", "--resume=auto", "--lora-r=4"],
            r"--lora-r is 8 in the checkpoint but 4 in this run, and it must match", np=2)
expect_fail("resume with another quantization", [SL, "train", *common, "--out=halves", "--steps=50", "--resume=auto", "--quant=fp4"],
            r"--quant is nf4 in the checkpoint but fp4 in this run, and it must match", np=2)
run([f"{BIN}/shardlora-init", "other.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "96",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "6"])
expect_fail("resume from a checkpoint of a different model",
            [SL, "train", *common, "--model=other.h5", "--out=halves", "--steps=50", "--resume=auto"],
            r"made with a different model: llama hidden=48 .*but this run has llama hidden=32", np=2)
expect_fail("resume from a file that is not a checkpoint", [SL, "train", *common, "--out=x", "--steps=5", "--resume=data.h5"],
            r"cannot resume from data.h5: .*not a checkpoint|shardlora_kind", np=2)
expect_fail("unwritable output directory", [SL, "train", *common, "--out=/proc/nope", "--steps=5"],
            r"cannot create output directory '/proc/nope'", np=2)
finish()
