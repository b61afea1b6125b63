"""Errors found inside an HDF5 iteration (shardlora-quantize walking a model, shardlora-export
walking an adapter's /lora group) end the tool with its message and exit status 1, not a crash."""
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, expect_exit, finish, run, write_tokens  # noqa: E402

QUANTIZE, EXPORT = f"{BIN}/shardlora-quantize", f"{BIN}/shardlora-export"
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "3"])


def variant(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def replace(f, name, value):
    del f[name]
    f[name] = value


def poison(f):
    w = f["model/layers/1/mlp/down_proj/weight"]
    a = w[...]
    a[3, 4] = np.nan
    w[...] = a


variant("model.h5", "nan.h5", poison)
expect_exit("quantize: a NaN weight is reported, exit status 1", [QUANTIZE, "nan.h5", "q.h5", "--quant", "nf4"], 1,
            r"/model/layers/1/mlp/down_proj/weight: value nan at flat index 148 is not finite")


def poison_two(f):  # elements 148 and 1100 of 1536: on 2 threads each half holds one; the first is named
    w = f["model/layers/1/mlp/down_proj/weight"]
    a = w[...]
    a[3, 4], a[22, 44] = np.inf, np.nan
    w[...] = a


variant("model.h5", "nan2.h5", poison_two)
os.environ["OMP_NUM_THREADS"] = "2"
expect_exit("quantize on 2 threads: of two non-finite weights the first is reported", [QUANTIZE, "nan2.h5", "q.h5",
            "--quant", "nf4"], 1, r"/model/layers/1/mlp/down_proj/weight: value inf at flat index 148 is not finite")
os.environ["OMP_NUM_THREADS"] = "1"
variant("model.h5", "int.h5", lambda f: replace(f, "model/layers/0/self_attn/q_proj/weight", np.ones((32, 32), np.int32)))
expect_exit("quantize: an int32 weight is reported, exit status 1", [QUANTIZE, "int.h5", "q.h5", "--quant", "nf4"], 1,
            r"/model/layers/0/self_attn/q_proj/weight has type int32")
expect_exit("quantize: no partial output is left", ["test", "-e", "q.h5.partial"], 1, r"")

V = 64
rng = np.random.default_rng(5)
docs = [rng.integers(3, V, rng.integers(12, 30)) for _ in range(40)]
write_tokens("data.h5", docs, V)
run([f"{BIN}/shardlora", "train", "--model=model.h5", "--data=data.h5", "--out=run", "--seq-len=16", "--micro-batch=2",
     "--lora-r=4", "--steps=2"], np=1)
LORA_B = "lora/model/layers/0/self_attn/q_proj/lora_B"
variant("run/adapter.h5", "shape.h5", lambda f: replace(f, LORA_B, np.ones((32, 5), np.float32)))
expect_exit("export: a LoRA matrix of the wrong rank is reported, exit status 1", [EXPORT, "peft", "shape.h5", "out_shape"],
            1, r"/lora/model/layers/0/self_attn/q_proj/lora_B has shape \[32, 5\] but lora_r is 4")
variant("run/adapter.h5", "dims.h5", lambda f: replace(f, LORA_B, np.ones((32, 4, 1), np.float32)))
expect_exit("export: a 3-D LoRA dataset is reported, exit status 1", [EXPORT, "peft", "dims.h5", "out_dims"], 1,
            r"lora_B has 3 dimensions \(expected a 2-D matrix\)")
variant("run/adapter.h5", "dtype.h5", lambda f: replace(f, LORA_B, np.ones((32, 4), np.int32)))
expect_exit("export: an int32 LoRA matrix is reported, exit status 1", [EXPORT, "peft", "dtype.h5", "out_dtype"], 1,
            r"lora_B is not a float dataset")
variant("run/adapter.h5", "name.h5", lambda f: f.__setitem__("lora/model/layers/0/self_attn/q_proj/lora_C",
                                                             np.ones((4, 4), np.float32)))
expect_exit("export: a dataset not named lora_A or lora_B is reported, exit status 1",
            [EXPORT, "peft", "name.h5", "out_name"], 1, r"lora_C is not a LoRA matrix")
finish()
