"""Bad input to shardlora eval and its options: each gets a clear error naming the file, dataset
or option, what was expected and what was found, and every rank exits (no hang, nonzero status)."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_fail, finish, run  # noqa: E402

SL = f"{BIN}/shardlora"


def make_inputs():
    run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "48", "--layers", "2", "--vocab", "64", "--max-pos", "128", "--seed", "3"])
    rng = np.random.default_rng(3)
    with h5py.File("data.h5", "w") as f:
        f["tokens"] = rng.integers(0, 64, 300).astype(np.int32)
        f["doc_offsets"] = np.array([0, 100, 300], dtype=np.int64)
        f.attrs["vocab_size"] = 64


def variant(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def evaluate(model="model.h5", data="data.h5", *extra):
    return [SL, "eval", f"--model={model}", f"--data={data}", "--seq-len=32", "--out=out.h5", *extra]


def replace(f, name, value):
    del f[name]
    f[name] = value


make_inputs()
run(evaluate(), np=2)
check("good inputs evaluate", os.path.exists("out.h5"))

expect_fail("missing model file", evaluate("nope.h5"), r"model file 'nope.h5': No such file", np=2)
with open("text.h5", "w") as f:
    f.write("this is not HDF5\n" * 10)
expect_fail("model file that is not HDF5", evaluate("text.h5"), r"'text.h5' is not an HDF5 file", np=2)
expect_fail("data file that is not HDF5", evaluate(data="text.h5"), r"dataset file 'text.h5' is not an HDF5 file", np=2)
variant("model.h5", "no_q.h5", lambda f: f.__delitem__("model/layers/1/self_attn/q_proj/weight"))
expect_fail("missing weight dataset", evaluate("no_q.h5"), r"no_q.h5: dataset /model/layers/1/self_attn/q_proj/weight is missing", np=2)
variant("model.h5", "shape.h5", lambda f: replace(f, "model/layers/0/mlp/up_proj/weight", np.ones((48, 31), np.float32)))
expect_fail("weight of the wrong shape", evaluate("shape.h5"),
            r"dataset /model/layers/0/mlp/up_proj/weight has the wrong shape \(expected \[48, 32\], found \[48, 31\]\)", np=2)
variant("model.h5", "dtype.h5", lambda f: replace(f, "model/norm/weight", np.ones(32, np.int32)))
expect_fail("weight of the wrong dtype", evaluate("dtype.h5"), r"/model/norm/weight has type int32 \(expected float32, float16 or bfloat16\)", np=2)


def poison(f):
    w = f["model/layers/1/mlp/down_proj/weight"]
    a = w[...]
    a[5, 7] = np.nan
    w[...] = a


variant("model.h5", "nan.h5", poison)
expect_fail("non-finite weights", evaluate("nan.h5"),
            r"dataset /model/layers/1/mlp/down_proj/weight holds a non-finite value \(nan\) at element 247", np=2)


def poison_layers(f):  # a bad value in each of two layers: the load reads both, then names the first
    poison(f)
    o = f["model/layers/0/self_attn/o_proj/weight"]
    a = o[...]
    a[2, 9] = -np.inf
    o[...] = a


variant("model.h5", "two_layers.h5", poison_layers)
expect_fail("non-finite weights in two layers: the first read is named", evaluate("two_layers.h5"),
            r"dataset /model/layers/0/self_attn/o_proj/weight holds a non-finite value \(-inf\) at element 73", np=1)

# big enough for the finiteness checks to run on several threads: of two bad values the first is named
run([f"{BIN}/shardlora-init", "wide.h5", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "1152",
     "--layers", "1", "--vocab", "8192", "--max-pos", "128", "--seed", "4"])


def poison_two(name, first, second):
    def edit(f):
        a = f[name][...]
        a[first], a[second] = np.inf, np.nan
        f[name][...] = a
    return edit


variant("wide.h5", "wide_emb.h5", poison_two("model/embed_tokens/weight", (300, 5), (7000, 1)))
variant("wide.h5", "wide_up.h5", poison_two("model/layers/0/mlp/up_proj/weight", (10, 3), (1000, 0)))
os.environ["OMP_NUM_THREADS"] = "2"
expect_fail("non-finite embedding on 2 threads: the first of two is named", evaluate("wide_emb.h5", "data.h5", "--threads=2"),
            r"dataset /model/embed_tokens/weight holds a non-finite value \(inf\) at element 19205", np=1)
expect_fail("non-finite projection quantized at load on 2 threads: the first of two is named",
            evaluate("wide_up.h5", "data.h5", "--quant=nf4", "--threads=2"),
            r"dataset /model/layers/0/mlp/up_proj/weight holds a non-finite value \(inf\) at element 643", np=1)
os.environ["OMP_NUM_THREADS"] = "1"


def poison_adapter(f):
    b = f["lora/model/layers/1/self_attn/v_proj/lora_B"]
    a = b[...]
    a[9, 4] = -np.inf
    b[...] = a


run([SL, "train", "--model=model.h5", "--data=data.h5", "--seq-len=32", "--steps=2", "--out=run"])
variant("run/adapter.h5", "inf_adapter.h5", poison_adapter)
expect_fail("non-finite adapter weight, on the last rank's shard", evaluate("model.h5", "data.h5", "--adapter=inf_adapter.h5"),
            r"inf_adapter.h5: dataset /lora/model/layers/1/self_attn/v_proj/lora_B holds a non-finite value \(-inf\) at "
            r"element 148 \(expected finite weights\)", np=2)
variant("model.h5", "arch.h5", lambda f: f["config"].attrs.__setitem__("architecture", "gpt2"))
expect_fail("unknown architecture", evaluate("arch.h5"), r"unknown architecture 'gpt2'.*expected llama, mistral, qwen2 or qwen3", np=2)

variant("data.h5", "no_tokens.h5", lambda f: f.__delitem__("tokens"))
expect_fail("missing /tokens", evaluate(data="no_tokens.h5"), r"no_tokens.h5: dataset /tokens is missing", np=2)
variant("data.h5", "float_tokens.h5", lambda f: replace(f, "tokens", np.zeros(300, np.float32) + 1.5))
expect_fail("/tokens of the wrong dtype", evaluate(data="float_tokens.h5"), r"/tokens has type float32 \(expected int32\)", np=2)
variant("data.h5", "bad_offsets.h5", lambda f: replace(f, "doc_offsets", np.array([0, 200, 100, 300], np.int64)))
expect_fail("decreasing /doc_offsets", evaluate(data="bad_offsets.h5"), r"/doc_offsets must not decrease", np=2)
variant("data.h5", "vocab.h5", lambda f: f.attrs.__setitem__("vocab_size", 32000))
expect_fail("vocabulary mismatch", evaluate(data="vocab.h5"),
            r"vocabulary mismatch: the dataset's vocab_size is 32000 but the model's is 64", np=2)


def out_of_range(f):
    t = f["tokens"][...]
    t[250] = 70
    f["tokens"][...] = t


variant("data.h5", "range.h5", out_of_range)
expect_fail("token id out of range", evaluate(data="range.h5"),
            r"token id 70 at index 250 \(document 1\) is outside the vocabulary \[0, 64\) of model model.h5", np=2)

expect_fail("unknown option", evaluate() + ["--seq-lenn=3"], r"unknown option '--seq-lenn' \(did you mean --seq-len\?\)", np=2)
expect_fail("malformed option value", evaluate() + ["--micro-batch=two"], r"--micro-batch: expected an integer >= 1, found 'two'", np=2)
expect_fail("bad choice", evaluate() + ["--quant=nf5"], r"--quant: expected one of none\|nf4\|fp4\|int8, found 'nf5'", np=2)
expect_fail("seq-len beyond the model's positions", evaluate() + ["--seq-len=4096"],
            r"--seq-len=4096 exceeds the model's max_position_embeddings \(128\)", np=2)
expect_fail("missing required option", [SL, "eval", "--model=model.h5", "--out=o.h5"], r"option --data is required", np=2)
expect_fail("unwritable output", [SL, "eval", "--model=model.h5", "--data=data.h5", "--seq-len=32", "--out=/nonexistent/dir/o.h5"],
            r"cannot create eval result file '/nonexistent/dir/o.h5'", np=2)
env = dict(os.environ, SHARDLORA_MICRO_BATCH="zero")

p = subprocess.run(evaluate(), capture_output=True, text=True, env=env)
check("malformed environment variable is named", p.returncode != 0 and "SHARDLORA_MICRO_BATCH" in p.stderr, p.stderr)
finish()
