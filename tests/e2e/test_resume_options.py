"""Resume refuses every option that changes what is trained or the data of a step (the LoRA shape
and scale, the task, the windows, the seed, the base quantization, the global batch), with a message
naming the checkpoint, the option, both values and what to pass; options that do not change the run
(--steps, --log-every, the rank count with --global-batch fixed, the same targets spelt out) resume,
and a new learning rate is warned about."""
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_exit, finish, read_metrics, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
rng = np.random.default_rng(11)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "4"])
docs = [rng.integers(3, 64, rng.integers(12, 30)) for _ in range(120)]
write_tokens("data.h5", docs, 64)
write_tokens("cls2.h5", docs, 64, labels=rng.integers(0, 2, len(docs)), num_labels=2)
write_tokens("cls3.h5", docs, 64, labels=rng.integers(0, 3, len(docs)), num_labels=3)
# the run resumed from: 2 ranks x 2 windows x 2 micro-steps = a global batch of 8
base = ["--model=model.h5", "--seq-len=16", "--micro-batch=2", "--grad-accum=2", "--quant=nf4", "--double-quant",
        "--lora-r=4", "--lora-alpha=8", "--seed=5", "--lr=1e-3", "--log-every=1"]
CKPT = "base/checkpoints/step_00000004.h5"
NEW_RUN = "to continue that run, or start a new one in another --out (or with --overwrite)"


def train(out, *extra, np_=2, data="data.h5", check_rc=True):
    return run([SL, "train", *base, f"--data={data}", f"--out={out}", *extra], np=np_, check_rc=check_rc)


def metrics_steps(out):
    return list(read_metrics(out, "step"))


def refused(name, extra, message, np_=2, data="data.h5", run_dir="base"):
    """Resuming a copy of run_dir with the base options and extra is an error (status 1, every rank
    stops, no hang) whose message is exactly 'cannot resume from CKPT: ' + message; a copy, so that a
    resume that goes ahead leaves the next case its checkpoint."""
    shutil.rmtree("try", ignore_errors=True)
    shutil.copytree(run_dir, "try")
    ckpt = "try/checkpoints/" + sorted(os.listdir("try/checkpoints"))[-1]
    cmd = [SL, "train", *base, f"--data={data}", "--out=try", "--steps=8", "--resume=auto", *extra]
    expect_exit(name, ["mpirun", "-np", str(np_), "--oversubscribe", "--bind-to", "none"] + cmd, 1,
                "error: " + re.escape(f"cannot resume from {ckpt}: {message}") + "\n", timeout=120)


train("base", "--steps=4")
check("the run to resume from wrote its checkpoint", os.path.exists(CKPT), os.listdir("base/checkpoints"))


def must_match(option, then, now, why):
    return f"--{option} is {then} in the checkpoint but {now} in this run, and it must match ({why})"


def fix(*options):
    return f"; pass {' '.join(options)} {NEW_RUN}"


refused("resume with another --lora-r is refused", ["--lora-r=8"],
        must_match("lora-r", 4, 8, "it sets the shape of every adapter") + fix("--lora-r=4"))
refused("resume with another --lora-alpha is refused", ["--lora-alpha=16"],
        must_match("lora-alpha", 8, 16, "it scales every adapter's update") + fix("--lora-alpha=8"))
refused("resume with fewer --lora-targets is refused (the checkpoint's other adapters would be dropped)",
        ["--lora-targets=q_proj,v_proj"],
        must_match("lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "q_proj,v_proj",
                   "it sets which projections have adapters")
        + fix("--lora-targets=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"))
refused("resume with --rslora is refused", ["--rslora"],
        must_match("rslora", "false", "true", "it sets the scale of every adapter's update") + fix("--rslora=false"))
refused("resume with another --lora-dropout is refused", ["--lora-dropout=0.1"],
        must_match("lora-dropout", 0, 0.1, "it sets the dropout on every adapter's input") + fix("--lora-dropout=0"))
refused("resume with another --seq-len is refused", ["--seq-len=24"],
        must_match("seq-len", 16, 24, "it sets the windows the documents are cut into") + fix("--seq-len=16"))
refused("resume with another --seed is refused", ["--seed=6"],
        must_match("seed", 5, 6, "it sets the data order and the dropout masks") + fix("--seed=5"))
refused("resume with another --quant is refused", ["--quant=fp4"],
        must_match("quant", "nf4", "fp4", "it sets the frozen base weights") + fix("--quant=nf4"))
refused("resume without --double-quant is refused", ["--double-quant=false"],
        must_match("double-quant", "true", "false", "it sets the frozen base weights") + fix("--double-quant=true"))
refused("resume with another --blocksize is refused", ["--blocksize=128"],
        must_match("blocksize", 64, 128, "it sets the frozen base weights") + fix("--blocksize=64"))
refused("resume with another --task is refused", ["--task=seq_cls", "--num-labels=2"],
        must_match("task", "causal_lm", "seq_cls", "it sets the loss and the trained head") + fix("--task=causal_lm"),
        data="cls2.h5")
refused("resume on another rank count without --global-batch is refused, saying --global-batch keeps the batch",
        [], "the global batch is 8 windows in the checkpoint (--micro-batch=2 x 2 ranks x --grad-accum=2) but 4 in "
        "this run (--micro-batch=2 x 1 rank x --grad-accum=2), and it must match (it sets the windows of every step; "
        "another rank count is fine when --global-batch keeps the batch the same)" + fix("--global-batch=8"), np_=1)
refused("resume with another --grad-accum is refused (another global batch)", ["--grad-accum=4"],
        "the global batch is 8 windows in the checkpoint (--micro-batch=2 x 2 ranks x --grad-accum=2) but 16 in "
        "this run (--micro-batch=2 x 2 ranks x --grad-accum=4), and it must match (it sets the windows of every step)"
        + fix("--global-batch=8"))
refused("resume on a rank count the global batch cannot be split over names one it can",
        ["--micro-batch=4", "--grad-accum=1"], "the global batch is 8 windows in the checkpoint (--micro-batch=2 x 2 ranks x "
        "--grad-accum=2) but 12 in this run (--micro-batch=4 x 3 ranks x --grad-accum=1), and it must match (it sets "
        "the windows of every step; another rank count is fine when --global-batch keeps the batch the same)"
        + fix("--global-batch=8 on a rank count that divides 8"), np_=3)
refused("resume with several options changed names them all", ["--lora-r=8", "--seed=6"],
        must_match("lora-r", 4, 8, "it sets the shape of every adapter") + "; "
        + must_match("seed", 5, 6, "it sets the data order and the dropout masks") + fix("--lora-r=4", "--seed=5"))

# --num-labels: a seq_cls run, resumed with a dataset of three classes
train("cls", "--steps=2", "--task=seq_cls", "--num-labels=2", data="cls2.h5")
refused("resume with another --num-labels is refused", ["--task=seq_cls", "--num-labels=3"],
        must_match("num-labels", 2, 3, "it sets the shape of the classification head") + fix("--num-labels=2"),
        data="cls3.h5", run_dir="cls")

# allowed: more steps, another --log-every and --ckpt-every, the same targets spelt out, a new rate
shutil.copytree("base", "more")
p = train("more", "--resume=auto", "--steps=8", "--log-every=2", "--ckpt-every=6", "--threads=1",
          "--lora-targets=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--lr=5e-4", check_rc=False)
check("resume with more --steps, another --log-every, the targets spelt out and a new --lr continues",
      p.returncode == 0 and "resume: from more/checkpoints/step_00000004.h5 (step 4)" in p.stdout, p.stdout + p.stderr)
check("its metrics continue at step 5, every 2 steps", p.returncode == 0 and metrics_steps("more") == [1, 2, 3, 4, 6, 8],
      metrics_steps("more") if p.returncode == 0 else "")
check("a new --lr is warned about, naming both rates and the step it applies from",
      "warning: resuming from more/checkpoints/step_00000004.h5 with --lr=0.0005, where the checkpoint's run had "
      "--lr=0.001; it applies from step 5 on" in p.stderr, p.stderr)
check("options that must match are not warned about", p.stderr.count("warning:") == 1, p.stderr)

# allowed: 2 ranks -> 1 rank with --global-batch keeping the batch of 8 (--grad-accum becomes 4)
shutil.copytree("base", "one_rank")
p = train("one_rank", "--resume=auto", "--steps=6", "--global-batch=8", np_=1, check_rc=False)
check("resume on 1 rank after 2 with --global-batch=8 continues",
      p.returncode == 0 and "1 ranks x 2 micro-batch x 4 accumulation" in p.stdout, p.stdout + p.stderr)
check("its metrics continue at step 5", p.returncode == 0 and metrics_steps("one_rank") == [1, 2, 3, 4, 5, 6],
      metrics_steps("one_rank") if p.returncode == 0 else "")
# allowed: a pre-quantized model sets the format; --quant left out, then named as stored, is one run
run([f"{BIN}/shardlora-quantize", "model.h5", "model_nf4.h5", "--quant", "nf4", "--double-quant"])
pre = [SL, "train", "--model=model_nf4.h5", "--data=data.h5", "--seq-len=16", "--micro-batch=2", "--lora-r=4",
       "--log-every=1", "--out=prequant"]
run(pre + ["--steps=2"], np=2)
p = run(pre + ["--steps=3", "--resume=auto", "--quant=nf4", "--double-quant"], np=2, check_rc=False)
check("a pre-quantized model's run resumes with --quant naming its stored format",
      p.returncode == 0 and "resume: from prequant/checkpoints/step_00000002.h5 (step 2)" in p.stdout, p.stdout + p.stderr)
finish()
