"""shardlora-export peft: adapters from tiny training runs (causal LM, sequence classification, a
checkpoint) written as PEFT's adapter_model.safetensors and adapter_config.json. The safetensors
file is parsed here with a few lines of Python, independently of the exporter; values are
compared exactly with the adapter's datasets read by h5py."""
import glob
import json
import os
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_exit, expect_fail, finish, run  # noqa: E402

SL, EXPORT = f"{BIN}/shardlora", f"{BIN}/shardlora-export"
V = 64
PREFIX = "base_model.model."


def write_data(path, rng, n_docs, num_labels=0):
    docs = [np.concatenate([[1], rng.integers(3, V, rng.integers(12, 30))]) for _ in range(n_docs)]
    with h5py.File(path, "w") as f:
        f["tokens"] = np.concatenate(docs).astype(np.int32)
        f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        f.attrs["vocab_size"] = np.int64(V)
        if num_labels:
            f["labels"] = rng.integers(0, num_labels, n_docs).astype(np.int32)
            f.attrs["num_labels"] = np.int64(num_labels)


def read_safetensors(path):
    """(header dict, data bytes, header length) as the safetensors format defines them."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header_text = blob[8:8 + n].decode("utf-8")
    return json.loads(header_text), blob[8 + n:], n, header_text


def expected_tensors(adapter):
    """PEFT name -> array, from the HDF5 file (every lora_A/lora_B, and the score head)."""
    want = {}
    with h5py.File(adapter, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                want[PREFIX + name[len("lora/"):].replace("/", ".") + ".weight"] = obj[()]
        f["lora"].visititems(lambda n, o: visit("lora/" + n, o))
        if "score" in f:
            want[PREFIX + "score.weight"] = f["score/weight"][()]
        attrs = dict(f.attrs)
    return want, attrs


def check_export(label, adapter, out, task_type, base_name):
    run([EXPORT, "peft", adapter, out])
    st_path, cfg_path = f"{out}/adapter_model.safetensors", f"{out}/adapter_config.json"
    if not check(f"{label}: both files written", os.path.isfile(st_path) and os.path.isfile(cfg_path)):
        return
    check(f"{label}: no temporary files left", sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors"],
          os.listdir(out))
    header, data, n, text = read_safetensors(st_path)
    check(f"{label}: header length is a multiple of 8", n % 8 == 0, n)
    check(f"{label}: header is the JSON object then space padding", text.rstrip(" ").endswith("}"), repr(text[-12:]))
    check(f"{label}: __metadata__ format pt", header.get("__metadata__") == {"format": "pt"}, header.get("__metadata__"))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    want, attrs = expected_tensors(adapter)
    check(f"{label}: tensor names are the PEFT names of every dataset ({len(want)})", set(tensors) == set(want),
          sorted(set(tensors) ^ set(want)))
    check(f"{label}: header entries sorted by name", list(tensors) == sorted(tensors), list(tensors))
    check(f"{label}: every dtype F32", all(t["dtype"] == "F32" for t in tensors.values()))
    spans = sorted(tuple(t["data_offsets"]) for t in tensors.values())
    contiguous = spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == len(data)
    check(f"{label}: offsets contiguous from 0 to the end of the file ({len(data)} bytes)", contiguous, spans[:4])
    r = int(attrs["lora_r"])
    bad_shape, bad_value = [], []
    for name, arr in want.items():
        t = tensors.get(name)
        if t is None:
            continue
        begin, end = t["data_offsets"]
        if t["shape"] != list(arr.shape) or end - begin != arr.size * 4 or end > len(data):
            bad_shape.append((name, t["shape"], arr.shape))
            continue
        got = np.frombuffer(data[begin:end], dtype="<f4").reshape(arr.shape)
        if not np.array_equal(got, arr.astype(np.float32)):
            bad_value.append(name)
        if ".lora_A." in name and arr.shape[0] != r or ".lora_B." in name and arr.shape[1] != r:
            bad_shape.append((name, "rank", arr.shape))
    check(f"{label}: shapes are the datasets' shapes (lora_A [r, in], lora_B [out, r])", not bad_shape, bad_shape)
    check(f"{label}: values equal the adapter's datasets exactly", not bad_value, bad_value)
    check(f"{label}: LoRA matrices are nonzero after training", any(np.any(a != 0) for k, a in want.items() if "lora_B" in k))

    with open(cfg_path) as f:
        cfg = json.load(f)
    seq_cls = task_type == "SEQ_CLS"
    expect = {"peft_type": "LORA", "task_type": task_type, "r": r, "lora_alpha": float(attrs["lora_alpha"]),
              "lora_dropout": float(attrs["lora_dropout"]), "target_modules": attrs["target_modules"].split(","),
              "use_rslora": bool(attrs["rslora"]), "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
              "init_lora_weights": True, "modules_to_save": ["score"] if seq_cls else None,
              "base_model_name_or_path": base_name, "revision": None}
    wrong = {k: (cfg.get(k, "<missing>"), v) for k, v in expect.items() if cfg.get(k, "<missing>") != v}
    check(f"{label}: adapter_config.json fields", not wrong, f"(got, want): {wrong}")
    check(f"{label}: score head present exactly for seq_cls", (PREFIX + "score.weight" in tensors) == seq_cls)


rng = np.random.default_rng(3)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "128",
     "--layers", "2", "--vocab", str(V), "--max-pos", "64", "--std", "0.1", "--seed", "4"])
model_name = "model.h5"  # not imported from Hugging Face: base_model_name_or_path is the model file path
write_data("train.h5", rng, 64)
write_data("cls.h5", rng, 64, num_labels=3)
common = ["--model=model.h5", "--seq-len=32", "--micro-batch=2", "--global-batch=4", "--lr=1e-2", "--steps=3"]

run([SL, "train", *common, "--data=train.h5", "--out=run", "--lora-r=4", "--lora-alpha=8", "--lora-dropout=0.05",
     "--ckpt-every=3"], np=2)
check_export("causal_lm adapter", "run/adapter.h5", "peft_lm", "CAUSAL_LM", model_name)

ckpts = sorted(glob.glob("run/checkpoints/*.h5"))
if check("the run wrote a checkpoint to export", len(ckpts) > 0, os.listdir("run")):
    check_export("checkpoint", ckpts[-1], "peft_ckpt/nested", "CAUSAL_LM", model_name)
    from_ckpt, from_adapter = (read_safetensors(f"{d}/adapter_model.safetensors")[1] for d in ("peft_ckpt/nested", "peft_lm"))
    check("the step-3 checkpoint exports the same bytes as the step-3 adapter", from_ckpt == from_adapter)

run([SL, "train", *common, "--data=cls.h5", "--out=cls", "--task=seq_cls", "--num-labels=3", "--lora-r=8",
     "--lora-alpha=16", "--lora-targets=q_proj,v_proj", "--rslora"], np=2)
check_export("seq_cls adapter", "cls/adapter.h5", "peft_cls", "SEQ_CLS", model_name)
score = read_safetensors("peft_cls/adapter_model.safetensors")[0].get(PREFIX + "score.weight", {})
check("seq_cls: score.weight is [num_labels, hidden] = [3, 64]", score.get("shape") == [3, 64], score)

# without the base model file, base_model_name_or_path falls back to the stored path
os.rename("model.h5", "moved.h5")
run([EXPORT, "peft", "run/adapter.h5", "peft_nomodel"])
with open("peft_nomodel/adapter_config.json") as f:
    check("base model file unreadable: base_model_name_or_path is the adapter's base_model attribute",
          json.load(f)["base_model_name_or_path"] == "model.h5")



def write_hf_dir(d):
    """A one-layer LLaMA in the Hugging Face layout (config.json, model.safetensors)."""
    os.makedirs(d, exist_ok=True)
    h, inter, v = 8, 16, 16
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h),
              "model.layers.0.input_layernorm.weight": (h,), "model.layers.0.post_attention_layernorm.weight": (h,)}
    for p in ("q", "k", "v", "o"):
        shapes[f"model.layers.0.self_attn.{p}_proj.weight"] = (h, h)
    shapes.update({"model.layers.0.mlp.gate_proj.weight": (inter, h), "model.layers.0.mlp.up_proj.weight": (inter, h),
                   "model.layers.0.mlp.down_proj.weight": (h, inter)})
    header, blobs, at = {}, [], 0
    for name, shape in shapes.items():
        b = (rng.standard_normal(shape) * 0.1).astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": v,
                   "max_position_embeddings": 32, "rms_norm_eps": 1e-5}, f)


# imported from a Hugging Face directory: export names that directory (also through shardlora-quantize)
write_hf_dir("hf/tiny-llama")
run([f"{BIN}/shardlora-import", "hf", "hf/tiny-llama", "hf.h5"])
run([f"{BIN}/shardlora-quantize", "hf.h5", "hfq.h5", "--quant", "nf4"])
hf_dir = os.path.realpath("hf/tiny-llama")
for base in ("hf.h5", "hfq.h5"):
    with h5py.File("run/adapter.h5", "r") as src, h5py.File(f"adapter-{base}", "w") as dst:
        for k in src:
            src.copy(k, dst)
        for k, val in src.attrs.items():
            dst.attrs[k] = val
        dst.attrs["base_model"] = base
    run([EXPORT, "peft", f"adapter-{base}", f"peft-{base}"])
    with open(f"peft-{base}/adapter_config.json") as f:
        got = json.load(f)["base_model_name_or_path"]
    check(f"base imported from an HF directory ({base}): base_model_name_or_path is that directory",
          got == hf_dir, f"got {got!r}, expected {hf_dir!r}")
run([EXPORT, "peft", "adapter-hf.h5", "peft-override", "--base-model", "meta-llama/Llama-3.2-1B"])
with open("peft-override/adapter_config.json") as f:
    cfg = json.load(f)
check("--base-model NAME overrides base_model_name_or_path", cfg["base_model_name_or_path"] == "meta-llama/Llama-3.2-1B",
      cfg["base_model_name_or_path"])
run([EXPORT, "peft", "--base-model=org/name", "adapter-hf.h5", "peft-override2"])
with open("peft-override2/adapter_config.json") as f:
    check("--base-model=NAME before the arguments works too", json.load(f)["base_model_name_or_path"] == "org/name")
expect_exit("--base-model without a value is a usage error", [EXPORT, "peft", "adapter-hf.h5", "o", "--base-model"],
            2, r"--base-model: expected a value")

# errors
expect_fail("missing adapter file", [EXPORT, "peft", "missing.h5", "out_missing"], r"missing\.h5'.*No such file")
expect_fail("a dataset file is not an adapter", [EXPORT, "peft", "train.h5", "out_data"],
            r"train\.h5: not an adapter or a checkpoint \(root attribute shardlora_kind is 'none'")
expect_fail("a model file is not an adapter", [EXPORT, "peft", "moved.h5", "out_model"], r"shardlora_kind is 'model'")
with open("notes.txt", "w") as f:
    f.write("not HDF5\n")
expect_fail("a text file is not HDF5", [EXPORT, "peft", "notes.txt", "out_notes"], r"notes\.txt' is not an HDF5 file")
expect_fail("output directory under a file", [EXPORT, "peft", "run/adapter.h5", "notes.txt/sub"],
            r"cannot create output directory 'notes\.txt/sub'")
expect_fail("unknown format", [EXPORT, "gguf", "run/adapter.h5", "x"], r"unknown export format 'gguf'")
left = [d for d in ("out_missing", "out_data", "out_model", "out_notes") if os.path.exists(d)]
check("a failed export creates no output directory", not left, left)
finish()
