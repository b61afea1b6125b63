"""The CUDA backend against the CPU backend on the same inputs (run on a GPU host): one training
step's loss and every LoRA gradient (NF4 + double quantization with a loss mask, an INT8 base,
sequence classification, LoRA dropout, Qwen3's per-head q/k norms), eval --task seq_cls of that
classifier, eval of the real stories260K model, 2 ranks on one GPU, checkpoints moving between the backends and bit-identical resumed GPU runs. The 300-step stories260K curve
against the CPU's is test_hf_curve.py's, bounded by how far bf16 strays in transformers + PEFT.
Tolerances: bf16 compute against the fp32 CPU backend, loss 2e-3 relative, gradients 2e-2 relative
norm at the median and 3e-2 at worst (bf16 reaches no better: see the gradient check)."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, SHARED, check, expect_fail, finish, run, write_tokens  # noqa: E402
from testlib import read_grads as grads, read_metrics as metrics  # noqa: E402

SL = f"{BIN}/shardlora"
V = 512
rng = np.random.default_rng(11)


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# head_dim 64: the shapes cuDNN's fused attention takes
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--intermediate",
     "688", "--layers", "2", "--vocab", str(V), "--max-pos", "256", "--std", "0.05", "--seed", "3"])
run([f"{BIN}/shardlora-init", "qwen3.h5", "--arch", "qwen3", "--hidden", "256", "--heads", "4", "--kv-heads", "2",
     "--intermediate", "688", "--layers", "2", "--vocab", str(V), "--max-pos", "256", "--std", "0.05", "--seed", "4"])
docs = [np.concatenate([[1], rng.integers(3, V, rng.integers(8, 120))]) for _ in range(64)]
# the first third of each document is prompt: no loss there
write_tokens("lm.h5", docs, V, loss_mask=[np.arange(len(d)) >= len(d) // 3 for d in docs])
write_tokens("cls.h5", docs, V, labels=list(rng.integers(0, 3, len(docs))), num_labels=3)

one_step = ["--seq-len=128", "--micro-batch=4", "--global-batch=8", "--lora-r=8",
            "--lora-alpha=16", "--steps=1", "--dump-grads", "--log-every=1"]
cases = {"nf4 + double quant, masked causal LM": ["--model=model.h5", "--data=lm.h5", "--quant=nf4", "--double-quant"],
         "int8 base": ["--model=model.h5", "--data=lm.h5", "--quant=int8", "--blocksize=256"],
         "sequence classification": ["--model=model.h5", "--data=cls.h5", "--quant=nf4", "--task=seq_cls",
                                     "--num-labels=3"],
         "LoRA dropout 0.1 (the same masks)": ["--model=model.h5", "--data=lm.h5", "--quant=nf4", "--lora-dropout=0.1"],
         "qwen3 (per-head q/k norms), nf4": ["--model=qwen3.h5", "--data=lm.h5", "--quant=nf4", "--double-quant"]}
trained = {}
for name, extra in cases.items():
    outs = trained[name] = {}
    for dev in ("cpu", "cuda"):
        outs[dev] = f"step_{dev}_{len(outs)}_{abs(hash(name)) % 1000}"
        run([SL, "train", *one_step, *extra, f"--device={dev}", f"--out={outs[dev]}"], np=1)
    lc, lg = metrics(outs["cpu"])[0], metrics(outs["cuda"])[0]
    check(f"{name}: GPU loss {lg:.6f} equals CPU {lc:.6f} within 2e-3", abs(lg - lc) <= 2e-3 * abs(lc))
    gc, gg = grads(outs["cpu"]), grads(outs["cuda"])
    for k in sorted(gc):
        if k in gg and np.linalg.norm(gc[k]) > 0:
            print(f"# {name}: {k}: relative error {rel(gg[k], gc[k]):.2e}")
    errors = sorted(rel(gg[k], gc[k]) for k in gc if k in gg)
    worst = max((rel(gg[k], gc[k]), k) for k in gc if k in gg)
    # bf16 itself: the float64 reference with bf16 GEMM operands (tests/reference/bf16_sensitivity.py)
    # and Hugging Face + PEFT in bf16 (test_hf_peft_step.py) land 1.4e-2 median, up to 2.2e-2..2.5e-2,
    # from fp32 on this shape; so the median must meet 2e-2 and the worst 3e-2.
    check(f"{name}: {len(gc)} gradients, median {np.median(errors):.2e} within 2e-2 and worst {worst[0]:.2e} "
          f"({worst[1]}) within 3e-2 relative norm", set(gc) == set(gg) and np.median(errors) <= 2e-2 and worst[0] <= 3e-2)

# eval --task seq_cls of the classifier trained on the CPU: the GPU's logits, loss and accuracy
cls_eval = {}
for dev in ("cpu", "cuda"):
    run([SL, "eval", "--task=seq_cls", "--model=model.h5", "--data=cls.h5", "--quant=nf4", "--seq-len=128",
         f"--adapter={trained['sequence classification']['cpu']}/adapter.h5", f"--device={dev}", f"--out=cls_{dev}.h5"], np=1)
    with h5py.File(f"cls_{dev}.h5", "r") as f:
        cls_eval[dev] = {k: f["eval"][k][()] for k in ("loss", "logits", "correct")}
c, g = cls_eval["cpu"], cls_eval["cuda"]
check(f"eval --task seq_cls on the GPU: loss {float(g['loss']):.6f} equals the CPU's {float(c['loss']):.6f} within 2e-3, "
      f"logits within 2e-2 relative norm ({rel(g['logits'], c['logits']):.2e}), correct documents {int(g['correct'])} "
      f"within 2 of {int(c['correct'])}", abs(float(g["loss"]) - float(c["loss"])) <= 2e-3 * float(c["loss"]) and
      rel(g["logits"], c["logits"]) <= 2e-2 and abs(int(g["correct"]) - int(c["correct"])) <= 2)

# eval of a real pretrained model (stories260K: head_dim 8, the fallback attention)
run([f"{BIN}/shardlora-import", "llama2c", f"{SHARED}/models/stories260K.bin", "stories.h5"])
sdocs = [np.concatenate([[1], rng.integers(3, 512, rng.integers(20, 200))]) for _ in range(16)]
write_tokens("stories_data.h5", sdocs, V)
ev = {}
for dev in ("cpu", "cuda"):
    run([SL, "eval", "--model=stories.h5", "--data=stories_data.h5", "--seq-len=256", f"--device={dev}",
         f"--out=ev_{dev}.h5"], np=1)
    with h5py.File(f"ev_{dev}.h5", "r") as f:
        ev[dev] = float(f["eval/loss"][()])
check(f"stories260K eval on the GPU {ev['cuda']:.6f} equals the CPU {ev['cpu']:.6f} within 2e-3",
      abs(ev["cuda"] - ev["cpu"]) <= 2e-3 * ev["cpu"])

# 2 ranks on one GPU (the comm layer's MPI path) equal 1 rank
common = ["--model=model.h5", "--data=lm.h5", "--seq-len=128", "--micro-batch=2", "--global-batch=8", "--quant=nf4",
          "--double-quant", "--lora-r=8", "--lr=2e-3", "--log-every=1", "--device=cuda"]
run([SL, "train", *common, "--steps=10", "--out=r1"], np=1)
run([SL, "train", *common, "--steps=10", "--out=r2"], np=2)
a, b = metrics("r1"), metrics("r2")
check(f"2 ranks on one GPU follow 1 rank within 2e-3 over 10 steps (max {np.max(np.abs(b - a) / a):.1e})",
      np.max(np.abs(b - a) / a) <= 2e-3)
check("2 ranks on one GPU all-gathered and reduce-scattered (staged through host memory)",
      metrics("r2", "allgather_bytes")[-1] > 0 and metrics("r2", "reduce_scatter_bytes")[-1] > 0)

# Both GPU transports on one rank: named, they run every gather and reduce-scatter (NCCL through a
# 1-rank communicator on its own stream, prefetching the next unit) and must give the bits of the
# run without collectives.
for comm in ("nccl", "mpi"):
    run([SL, "train", *common, "--steps=10", f"--comm={comm}", f"--out=comm_{comm}"], np=1)
    c = metrics(f"comm_{comm}")
    check(f"--comm={comm} on one rank equals the run without collectives bit for bit, "
          f"{metrics(f'comm_{comm}', 'allgather_bytes')[-1]:.0f} bytes gathered per step", np.array_equal(c, a), (c, a))
expect_fail("--comm=nccl with 2 ranks on one GPU is refused naming why",
            [SL, "train", *common, "--steps=1", "--comm=nccl", "--out=comm_refused"], "ranks 0 and 1 share one GPU", np=2)

# a resumed GPU run is bit-identical; checkpoints move between the backends
run([SL, "train", *common, "--steps=20", "--out=straight"], np=1)
run([SL, "train", *common, "--steps=10", "--ckpt-every=10", "--out=resumed"], np=1)
run([SL, "train", *common, "--steps=20", "--resume=auto", "--out=resumed"], np=1)
s, r = metrics("straight"), metrics("resumed")
check("10 + 10 resumed GPU steps equal 20 straight bit for bit", len(r) == 20 and np.array_equal(s, r), (s, r))
run([SL, "train", *common, "--steps=10", "--ckpt-every=10", "--out=g2c"], np=1)
run([SL, "train", *common[:-1], "--device=cpu", "--steps=20", "--resume=auto", "--out=g2c"], np=1)
run([SL, "train", *common[:-1], "--device=cpu", "--steps=10", "--ckpt-every=10", "--out=c2g"], np=1)
run([SL, "train", *common, "--steps=20", "--resume=auto", "--out=c2g"], np=1)
for out in ("g2c", "c2g"):
    m = metrics(out)
    check(f"checkpoint {out}: resumed on the other backend, steps 11-20 within 2e-2 of the GPU run "
          f"(max {np.max(np.abs(m[10:] - s[10:]) / s[10:]):.1e})", len(m) == 20 and np.max(np.abs(m[10:] - s[10:]) / s[10:]) <= 2e-2)

finish()
