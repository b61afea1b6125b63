"""Inputs that are not regular files (a FIFO, a directory) given as --model, --data, --adapter or
--resume, or to shardlora-tokenize, are errors naming the option, the path and what it is, checked
with stat() before anything opens them (opening a FIFO blocks until a writer comes: every rank hung)."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, SHARED, expect_exit, finish, run  # noqa: E402

SL, TOKENIZE = f"{BIN}/shardlora", f"{BIN}/shardlora-tokenize"
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "3"])
rng = np.random.default_rng(8)
with h5py.File("data.h5", "w") as f:
    f["tokens"] = rng.integers(0, 64, 300).astype(np.int32)
    f["doc_offsets"] = np.array([0, 100, 300], dtype=np.int64)
    f.attrs["vocab_size"] = np.int64(64)
os.mkfifo("fifo")
os.mkdir("adir")
good = {"model": "model.h5", "data": "data.h5"}


def args(command, **over):
    paths = dict(good, **over)
    out = "run" if command == "train" else "eval.h5"
    return [SL, command, *(f"--{k}={v}" for k, v in paths.items()), f"--out={out}", "--seq-len=16", "--micro-batch=2",
            *(["--steps=1"] if command == "train" else [])]


for command in ("train", "eval"):
    for option in ("model", "data"):
        expect_exit(f"{command} --{option} naming a FIFO", args(command, **{option: "fifo"}), 1,
                    rf"option --{option}: 'fifo' is a FIFO \(named pipe\), not a regular file", np=2, timeout=60)
    expect_exit(f"{command} --model naming a directory", args(command, model="adir"), 1,
                r"option --model: 'adir' is a directory, not a regular file", np=2, timeout=60)
    expect_exit(f"{command} --adapter naming a FIFO", args(command, adapter="fifo"), 1,
                r"option --adapter: 'fifo' is a FIFO \(named pipe\), not a regular file", np=2, timeout=60)
expect_exit("train --resume naming a FIFO", args("train", resume="fifo"), 1,
            r"option --resume: 'fifo' is a FIFO \(named pipe\), not a regular file", np=2, timeout=60)
expect_exit("train --data naming /dev/null", args("train", data="/dev/null"), 1,
            r"option --data: '/dev/null' is a character device, not a regular file", np=2, timeout=60)

with open("tiny.txt", "w") as f:
    f.write("Once upon a time.\n")
TOKENIZER = f"{SHARED}/data/llama2c_tokenizer.bin"
expect_exit("tokenize --text naming a FIFO", [TOKENIZE, "--text", "tiny.txt", "fifo", "--tokenizer", TOKENIZER,
                                              "--out", "t.h5"], 1,
            r"option --text: 'fifo' is a FIFO \(named pipe\), not a regular file", timeout=60)
expect_exit("tokenize --tokenizer naming a FIFO", [TOKENIZE, "--text", "tiny.txt", "--tokenizer", "fifo", "--out", "t.h5"],
            1, r"option --tokenizer: 'fifo' is a FIFO \(named pipe\), not a regular file", timeout=60)
expect_exit("tokenize --jsonl naming a directory", [TOKENIZE, "--jsonl", "adir", "--vocab-size", "10", "--out", "t.h5"],
            1, r"option --jsonl: 'adir' is a directory, not a regular file", timeout=60)
expect_exit("tokenize --tokens-u16 naming a FIFO", [TOKENIZE, "--tokens-u16", "fifo", "--vocab-size", "10", "--out",
                                                    "t.h5"], 1,
            r"option --tokens-u16: 'fifo' is a FIFO \(named pipe\), not a regular file", timeout=60)
finish()
