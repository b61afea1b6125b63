"""shardlora-merge against transformers: tiny models of each architecture, and the pretrained
stories260K, get an adapter trained for a few steps; the merged Hugging Face checkpoint, loaded
with AutoModelForCausalLM.from_pretrained, gives the loss shardlora eval --adapter computes on the
unmerged pair (1e-5 for float32, 1e-3 for bf16); the merged weights equal W + scale * B A
computed here in float64; a quantized base is dequantized first; 2 and 3 ranks write the same
files as 1; and bad inputs are refused by name. Sequence classification (eval --task seq_cls) is
in test_eval_seq_cls.py."""
import json
import os
import sys

import h5py
import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, SHARED, check, eval_windows, expect_exit, finish, rel_err, run, write_tokens  # noqa: E402

SL, MERGE, INIT, QUANTIZE = f"{BIN}/shardlora", f"{BIN}/shardlora-merge", f"{BIN}/shardlora-init", f"{BIN}/shardlora-quantize"
V, SEQ = 96, 24
SHAPE = ["--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "96", "--layers", "2",
         "--vocab", str(V), "--max-pos", "64", "--std", "0.1"]
torch.set_num_threads(1)


def check_loss(name, got, want, rtol):
    """check_close with the measured relative difference in the case's line."""
    err = rel_err(got, want)
    return check(f"{name} (relative difference {err:.1e}, within {rtol:.0e})", err <= rtol, f"got {got!r}, want {want!r}")


def make_model(path, arch, dtype="f32", seed=5, extra=()):
    run([INIT, path, "--arch", arch, "--seed", str(seed), "--dtype", dtype] + SHAPE + list(extra))


def make_data(path, seed):
    rng = np.random.default_rng(seed)
    write_tokens(path, [np.concatenate([[1], rng.integers(3, V, rng.integers(8, 60))]) for _ in range(12)], V)


def train(model, data, out, extra=()):
    """A few steps at a high rate, so every B is far from its zero start."""
    run([SL, "train", f"--model={model}", f"--data={data}", f"--out={out}", f"--seq-len={SEQ}", "--micro-batch=4",
         "--steps=6", "--lr=2e-2", "--lora-r=4", "--lora-alpha=8", "--device=cpu", "--overwrite"] + list(extra))
    return f"{out}/adapter.h5"


def sl_loss(model, data, out, adapter=None):
    run([SL, "eval", f"--model={model}", f"--data={data}", f"--out={out}", f"--seq-len={SEQ}", "--device=cpu"]
        + ([f"--adapter={adapter}"] if adapter else []))
    with h5py.File(out, "r") as f:
        return float(f["eval/loss"][()])


def hf_loss(hf_dir, data):
    """Mean next-token cross-entropy of the checkpoint over shardlora eval's windows, in float32
    weights and float64 sums."""
    model, info = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, output_loading_info=True)
    model.eval()
    check(f"{hf_dir}: transformers finds every weight it needs and no other", not any(info.values()), info)
    with h5py.File(data, "r") as f:
        tokens, offsets = f["tokens"][:], f["doc_offsets"][:]
    total, count = 0.0, 0
    with torch.no_grad():
        for s, n in eval_windows(offsets, SEQ):
            ids = torch.tensor(tokens[s:s + n], dtype=torch.long)[None]
            logits = model(input_ids=ids[:, :-1]).logits.double()
            total += float(torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
            count += n - 1
    return total / count


def adapted_weights(model, adapter):
    """From the two HDF5 files, in float64: {HF name: W + scale * B A}, {HF name: W} of the same
    projections, and {HF name: W} of the tensors without an adapter."""
    out, base, plain = {}, {}, {}
    with h5py.File(model, "r") as m, h5py.File(adapter, "r") as a:
        scale = float(a.attrs["lora_alpha"]) / float(a.attrs["lora_r"])
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset) or not (name.startswith("model/") or name.startswith("lm_head")):
                return
            w = obj[()].astype(np.float64)
            lora = "lora/" + name[:-len("/weight")]
            hf = name.replace("/", ".")
            if lora + "/lora_A" in a:
                base[hf] = w
                out[hf] = w + scale * a[lora + "/lora_B"][()].astype(np.float64) @ a[lora + "/lora_A"][()].astype(np.float64)
            else:
                plain[hf] = w
        m.visititems(visit)
    return out, base, plain


def check_weights(label, hf_dir, model, adapter):
    st = {}
    for name in sorted(os.listdir(hf_dir)):
        if name.endswith(".safetensors"):
            st.update(load_file(f"{hf_dir}/{name}"))
    merged, base, plain = adapted_weights(model, adapter)
    check(f"{label}: the checkpoint holds every tensor of the model file ({len(merged) + len(plain)})",
          set(st) == set(merged) | set(plain), sorted(set(st) ^ (set(merged) | set(plain))))
    worst = max(float(np.max(np.abs(st[k].astype(np.float64) - w)) / float(np.max(np.abs(w)))) for k, w in merged.items())
    check(f"{label}: {len(merged)} adapted projections are W + scale * B A (float64 reference), max error {worst:.1e}",
          len(merged) > 0 and worst < 2e-7, worst)
    changed = min(float(np.max(np.abs(st[k].astype(np.float64) - base[k]))) for k in merged)
    check(f"{label}: every adapted projection differs from the base (smallest change {changed:.2e})", changed > 1e-4, changed)
    check(f"{label}: tensors without an adapter are copied exactly", all(np.array_equal(st[k], w.astype(np.float32))
                                                                       for k, w in plain.items()))


def random_biases(path):
    """shardlora-init's biases are zero; make qwen2's q/k/v biases count."""
    rng = np.random.default_rng(11)
    with h5py.File(path, "r+") as f:
        f.visititems(lambda name, o: o.write_direct(rng.normal(0, 0.1, o.shape).astype(o.dtype))
                     if isinstance(o, h5py.Dataset) and name.endswith("/bias") else None)


def float32_architectures():
    for seed, arch in enumerate(("llama", "mistral", "qwen2", "qwen3"), 5):
        label = f"{arch} float32"
        make_model(f"{arch}.h5", arch, seed=seed)
        if arch == "qwen2":
            random_biases(f"{arch}.h5")
        adapter = train(f"{arch}.h5", "data.h5", f"run_{arch}")
        out = run([MERGE, f"{arch}.h5", adapter, f"merged_{arch}.h5", "--hf", f"hf_{arch}", "--dtype", "f32"]).stdout
        with open(f"hf_{arch}/config.json") as f:
            config = json.load(f)
        check(f"{label}: config.json names {arch} and its CausalLM class",
              config["model_type"] == arch and config["architectures"][0].endswith("ForCausalLM"), config)
        want = sl_loss(f"{arch}.h5", "data.h5", f"eval_{arch}.h5", adapter)
        check_loss(f"{label}: transformers' loss of the merged checkpoint equals eval --adapter's", hf_loss(f"hf_{arch}", "data.h5"),
                    want, 1e-5)
        check_loss(f"{label}: eval of the merged model file equals eval --adapter's",
                    sl_loss(f"merged_{arch}.h5", "data.h5", f"eval_merged_{arch}.h5"), want, 1e-5)
        if arch == "llama":
            check_weights(label, f"hf_{arch}", f"{arch}.h5", adapter)
            check(f"{label}: the summary names the adapter and the output", "merged 14 adapters" in out and
                  f"wrote hf_{arch}" in out, out)


def pretrained():
    """stories260K, a real pretrained llama (tied head, 5 layers), imported from llama2.c."""
    run([f"{BIN}/shardlora-import", "llama2c", f"{SHARED}/models/stories260K.bin", "stories.h5"])
    rng = np.random.default_rng(13)
    write_tokens("stories_data.h5", [np.concatenate([[1], rng.integers(3, 512, rng.integers(20, 80))]) for _ in range(8)], 512)
    adapter = train("stories.h5", "stories_data.h5", "run_stories", ["--lora-targets=q_proj,k_proj,o_proj,up_proj"])
    run([MERGE, "stories.h5", adapter, "merged_stories.h5", "--hf", "hf_stories", "--dtype", "f32"])
    check_loss("stories260K: transformers' loss of the merged checkpoint equals eval --adapter's",
               hf_loss("hf_stories", "stories_data.h5"), sl_loss("stories.h5", "stories_data.h5", "eval_stories.h5", adapter),
               1e-5)


def bfloat16():
    make_model("bf16.h5", "llama", "bf16")
    adapter = train("bf16.h5", "data.h5", "run_bf16")
    run([MERGE, "bf16.h5", adapter, "merged_bf16.h5", "--hf", "hf_bf16"])
    with open("hf_bf16/model.safetensors", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        dtypes = {v["dtype"] for k, v in json.loads(f.read(n)).items() if k != "__metadata__"}
    check("bf16: every tensor of the default output is BF16", dtypes == {"BF16"}, dtypes)
    with open("hf_bf16/config.json") as f:
        check("bf16: config.json says dtype bfloat16", json.load(f)["dtype"] == "bfloat16")
    with h5py.File("merged_bf16.h5", "r") as f:
        stored = f["model/layers/0/self_attn/q_proj/weight"].id.get_type()
        check("bf16: the merged model file stores 2-byte floats", stored.get_size() == 2, stored.get_size())
    want = sl_loss("bf16.h5", "data.h5", "eval_bf16.h5", adapter)
    got = hf_loss("hf_bf16", "data.h5")
    # rounding W + scale B A to bf16 moves each weight by at most half a bf16 step (2^-9 relative):
    # the bf16 tolerance of DESIGN.md (1e-3)
    check_loss("bf16: transformers' loss of the bf16 merge is eval --adapter's within bf16's tolerance", got, want, 1e-3)
    check("bf16: the bf16 merge is not the float32 one (the rounding is real)", abs(got - want) > 0, (got, want))


def quantized_base():
    run([QUANTIZE, "llama.h5", "llama_nf4.h5", "--quant", "nf4", "--double-quant"])
    adapter = train("llama_nf4.h5", "data.h5", "run_nf4")
    out = run([MERGE, "llama_nf4.h5", adapter, "merged_nf4.h5", "--hf", "hf_nf4", "--dtype", "f32"]).stdout
    check("nf4 base: the merge says the base was dequantized and the result is a float model",
          "stored quantized (nf4-dq-bs64)" in out and "dequantized" in out and "float model" in out, out)
    with h5py.File("merged_nf4.h5", "r") as f:
        check("nf4 base: the merged model file is not quantized", "quantization" not in f.attrs and
              isinstance(f["model/layers/0/self_attn/q_proj/weight"], h5py.Dataset))
    want = sl_loss("llama_nf4.h5", "data.h5", "eval_nf4.h5", adapter)
    check_loss("nf4 base: transformers' loss of the merge equals eval --adapter's on the quantized pair",
                hf_loss("hf_nf4", "data.h5"), want, 1e-5)
    check("nf4 base: and differs from the float base's (the dequantized weights are used)",
          abs(want - sl_loss("llama.h5", "data.h5", "eval_f32_nf4adapter.h5", adapter)) > 1e-4)


def ranks_agree():
    """Tied embeddings, several shards: 2 ranks write the same files as 1."""
    make_model("tied.h5", "llama", extra=["--tie"])
    adapter = train("tied.h5", "data.h5", "run_tied", ["--lora-targets=q_proj,v_proj,down_proj"])
    args = ["tied.h5", adapter]
    run([MERGE] + args + ["one.h5", "--hf", "hf_one", "--max-shard-size", "40KB"])
    run([MERGE] + args + ["two.h5", "--hf", "hf_two", "--max-shard-size", "40KB"], np=2)
    run([MERGE] + args + ["three.h5", "--hf", "hf_three", "--max-shard-size", "40KB"], np=3)
    names = sorted(os.listdir("hf_one"))
    shards = [n for n in names if n.endswith(".safetensors")]
    check(f"2 ranks: the checkpoint is cut into {len(shards)} shards with an index", len(shards) > 2 and
          "model.safetensors.index.json" in names, names)
    check("2 ranks: the same file names as 1 rank", names == sorted(os.listdir("hf_two")), os.listdir("hf_two"))
    same = [n for n in names if open(f"hf_one/{n}", "rb").read() == open(f"hf_two/{n}", "rb").read()]
    check("2 ranks: every file of the checkpoint byte-identical to 1 rank's (cmp)", same == names, set(names) - set(same))
    diff = run(["h5diff", "one.h5", "two.h5"], check_rc=False)
    check("2 ranks: the merged model file equals 1 rank's (h5diff)", diff.returncode == 0, diff.stdout[-2000:])
    same3 = [n for n in names if open(f"hf_one/{n}", "rb").read() == open(f"hf_three/{n}", "rb").read()]
    diff3 = run(["h5diff", "one.h5", "three.h5"], check_rc=False)
    check("3 ranks (not dividing the tensor count): the same checkpoint bytes and model file as 1 rank",
          same3 == names and diff3.returncode == 0, (set(names) - set(same3), diff3.stdout[-2000:]))
    with open("hf_one/model.safetensors.index.json") as f:
        index = json.load(f)
    check("2 ranks: the index maps every tensor to its shard, without lm_head (tied)",
          set(index["weight_map"].values()) == set(shards) and "lm_head.weight" not in index["weight_map"], index)
    check_loss("2 ranks: the sharded, tied checkpoint loads and gives eval --adapter's loss", hf_loss("hf_two", "data.h5"),
                sl_loss("tied.h5", "data.h5", "eval_tied.h5", adapter), 1e-3)


def errors():
    make_model("wide.h5", "llama", extra=["--intermediate", "128"])
    adapter = "run_llama/adapter.h5"
    expect_exit("an adapter of another model shape is refused, naming the dataset and both shapes",
                [MERGE, "wide.h5", adapter, "x.h5"], 1,
                r"run_llama/adapter.h5: dataset /lora/model/layers/0/mlp/gate_proj/lora_B has the wrong shape "
                r"\(expected \[128, 4\], found \[96, 4\]\)")
    expect_exit("a dataset file as ADAPTER is refused, naming what it is",
                [MERGE, "llama.h5", "data.h5", "x.h5"], 1, r"data.h5: not an adapter file \(expected shardlora_kind 'adapter'")
    expect_exit("a missing model file is named", [MERGE, "nope.h5", adapter, "x.h5"], 1, r"cannot open model file 'nope.h5'")
    expect_exit("--dtype outside bf16, f16, f32 is a usage error", [MERGE, "llama.h5", adapter, "x.h5", "--dtype", "f8"], 2,
                r"option --dtype: expected bf16, f16 or f32, found 'f8'")
    expect_exit("a bad --max-shard-size is a usage error", [MERGE, "llama.h5", adapter, "x.h5", "--max-shard-size", "5XB"], 2,
                r"option --max-shard-size: expected a positive size in bytes .* found '5XB'")
    expect_exit("two arguments are a usage error", [MERGE, "llama.h5", adapter], 2,
                r"expected a model file, an adapter file and an output file, found 2 arguments")
    expect_exit("--hf naming a directory that holds a checkpoint is refused", [MERGE, "llama.h5", adapter, "x.h5", "--hf", "hf_llama"],
                1, r"option --hf: 'hf_llama' already holds a checkpoint \(config.json\)")
    check("a refused merge leaves no output", not os.path.exists("x.h5") and not os.path.exists("x.h5.partial"))
    make_model("big.h5", "llama", seed=5)
    with h5py.File("big.h5", "r+") as f:
        f["model/norm/weight"][3] = 7e4
    expect_exit("a value beyond float16's range with --dtype f16 is an error naming the tensor and index",
                [MERGE, "big.h5", adapter, "x.h5", "--dtype", "f16"], 1,
                r"big.h5: /model/norm/weight: merged value 70000 at flat index 3 is beyond the range of float16 \(use --dtype f32\)")
    check("a merge stopped by an error removes its partial output", not os.path.exists("x.h5.partial"), os.listdir("."))


make_data("data.h5", 7)
float32_architectures()
pretrained()
bfloat16()
quantized_base()
ranks_agree()
errors()
finish()
