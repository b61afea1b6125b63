"""Command-line mistakes that used to pass silently or with the wrong status: an option value that is
really the next option, SHARDLORA_* environment variables that name no option, and the tools'
usage errors (exit status 2, as shardlora's)."""
import os
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_exit, finish, run  # noqa: E402

SL = f"{BIN}/shardlora"
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "3"])
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.random.default_rng(9).integers(0, 64, 300).astype(np.int32)
    f["doc_offsets"] = np.array([0, 100, 300], dtype=np.int64)
    f.attrs["vocab_size"] = np.int64(64)
train = [SL, "train", "--model=model.h5", "--data=data.h5", "--seq-len=16", "--micro-batch=2", "--steps=1"]

expect_exit("--out followed by another option is an error naming --out", train + ["--out", "--lr=3e-3"], 2,
            r"option --out: expected a value, found '--lr=3e-3', which is an option \(write --out=VALUE\)", np=2)
expect_exit("--model followed by another option is an error naming --model",
            [SL, "eval", "--model", "--data=data.h5", "--out=e.h5"], 2,
            r"option --model: expected a value, found '--data=data.h5', which is an option", np=2)
expect_exit("--resume=--lr is an error too", train + ["--out=o", "--resume=--lr=1"], 2,
            r"option --resume: expected a value, found '--lr=1'", np=2)
check("no directory named after the option was made", not os.path.exists("--lr=3e-3"))
good = train + ["--out=envrun", "--dry-run"]
p = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", *good], capture_output=True, text=True,
                   env=dict(os.environ, SHARDLORA_MICRO_BATHC="4", SHARDLORA_LORA_RANK="8"))
check("an unknown SHARDLORA_* variable is warned about, naming the closest option",
      p.returncode == 0 and "environment variable SHARDLORA_MICRO_BATHC names no option (did you mean "
      "SHARDLORA_MICRO_BATCH, for --micro-batch?)" in p.stderr, f"{p.returncode}\n{p.stderr}")
check("each unknown variable is named", "SHARDLORA_LORA_RANK names no option (did you mean SHARDLORA_LORA_R" in p.stderr,
      p.stderr)
check("rank 0 alone warns", p.stderr.count("SHARDLORA_MICRO_BATHC") == 1, p.stderr)
p = subprocess.run(["mpirun", "-np", "1", *good], capture_output=True, text=True,
                   env=dict(os.environ, SHARDLORA_ZZZZZZZZ="1", SHARDLORA_ROOT="/x", SHARDLORA_PROFILE="1"))
check("a variable close to no option is still named; the project's own variables are not",
      "environment variable SHARDLORA_ZZZZZZZZ names no option; 'shardlora train --help' lists them" in p.stderr
      and "SHARDLORA_ROOT" not in p.stderr and "SHARDLORA_PROFILE" not in p.stderr, p.stderr)
TOOL_USAGE = [
    ("shardlora-init", ["m.h5", "--layers", "two"], r"option --layers: expected a positive integer, found 'two'"),
    ("shardlora-init", ["m.h5", "--colour", "red"], r"unknown option '--colour'"),
    ("shardlora-quantize", ["model.h5", "q.h5"], r"option --quant is required"),
    ("shardlora-quantize", ["model.h5", "q.h5", "--quant", "nf4", "--blocksize", "x"],
     r"option --blocksize: expected a positive integer, found 'x'"),
    ("shardlora-tokenize", ["--jsonl", "a.jsonl", "--out", "d.h5", "--frobnicate"], r"unknown argument '--frobnicate'"),
    ("shardlora-tokenize", ["--jsonl", "a.jsonl", "--out", "d.h5", "--vocab-size", "-3"],
     r"option --vocab-size: expected an integer from 1"),
    ("shardlora-export", ["peft", "adapter.h5"], r"expected a format \(peft\), an adapter file and an output directory"),
    ("shardlora-export", ["gguf", "adapter.h5", "dir"], r"unknown export format 'gguf'"),
    ("shardlora-inspect", [], r"expected one HDF5 file name, found 0 arguments"),
    ("shardlora-plot", ["metrics.h5"], r"expected a metrics file and an output PNG, found 1 arguments"),
]
for tool, argv, pattern in TOOL_USAGE:
    expect_exit(f"{tool} {' '.join(argv)}: a usage error exits with status 2", [f"{BIN}/{tool}", *argv], 2, pattern)
expect_exit("shardlora's own usage errors exit with status 2", [SL, "train", "--lr=fast"], 2,
            r"--lr: expected a number >= 0, found 'fast'")
expect_exit("--act-ckpt takes true, auto or false", train + ["--out=o", "--act-ckpt=maybe"], 2,
            r"option --act-ckpt: expected true, auto or false, found 'maybe'")
expect_exit("a plain boolean takes no auto", train + ["--out=o", "--rslora=auto"], 2,
            r"option --rslora: expected true or false, found 'auto'")
p = run(train + ["--out=ckpt_auto", "--act-ckpt=auto"], np=1)
check("--act-ckpt=auto on the CPU backend keeps the activations, and says so",
      "activations: kept (--act-ckpt=auto)" in p.stderr + p.stdout, p.stderr)
# The GPU plan is made where users plan, on a login node without a GPU.
p = run(train + ["--out=gpu_plan", "--device=cuda", "--dry-run"], np=1, check_rc=False)
if "this build has no CUDA backend" in p.stderr:
    check("# skip: a CPU-only build has no GPU plan to print", True)
else:
    out = p.stdout + p.stderr
    check("--device=cuda --dry-run without a GPU prints the plan for the GPU: bf16 buffers, workspaces, host memory",
          p.returncode == 0 and "memory plan per rank on the cuda backend" in out and "total on each GPU" in out
          and "attention and GEMM workspaces" in out and "host memory" in out, out)
finish()
