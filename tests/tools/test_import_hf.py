"""shardlora-import hf: random LLaMA (GQA, untied) and Qwen2 (biases, tied) checkpoints written as
safetensors (sharded with an index, or single), imported and compared tensor by tensor and by the
logits of the float64 reference forward; then one case per kind of bad input."""
import json
import os
import shutil
import struct
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, check, expect_fail, finish, run  # noqa: E402
from reference import llama_ref  # noqa: E402

IMPORT = os.path.join(BIN, "shardlora-import")
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}

LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=96,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
             max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, hidden_act="silu", rope_scaling=None)
QWEN2 = dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=64, intermediate_size=80,
             num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, vocab_size=256,
             max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
             bos_token_id=None, eos_token_id=[7, 8], hidden_act="silu")


def random_model(cfg, dtype, seed):
    """HF-named random tensors of the config's shapes (norm weights near 1; biases where transformers
    builds them: qwen2's on q, k and v, those of llama and qwen3 with attention_bias on q, k, v and o)."""
    g = torch.Generator().manual_seed(seed)
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or D // cfg["num_attention_heads"]
    Q, KV = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd

    def rnd(*shape, scale=0.2, mean=0.0):
        return (mean + scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)
    biased = ("q_proj", "k_proj", "v_proj") if cfg["model_type"] == "qwen2" else \
        ("q_proj", "k_proj", "v_proj", "o_proj") if cfg["model_type"] in ("llama", "qwen3") and cfg.get("attention_bias") \
        else ()
    w = {"model.embed_tokens.weight": rnd(V, D, scale=1.0), "model.norm.weight": rnd(D, mean=1.0, scale=0.1)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = rnd(D, mean=1.0, scale=0.1)
        w[p + "post_attention_layernorm.weight"] = rnd(D, mean=1.0, scale=0.1)
        for name, shape in (("q_proj", (Q, D)), ("k_proj", (KV, D)), ("v_proj", (KV, D)), ("o_proj", (D, Q))):
            w[p + f"self_attn.{name}.weight"] = rnd(*shape)
            if name in biased:
                w[p + f"self_attn.{name}.bias"] = rnd(shape[0], scale=0.5)
        if cfg["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = rnd(hd, mean=1.0, scale=0.3)
            w[p + "self_attn.k_norm.weight"] = rnd(hd, mean=1.0, scale=0.3)
        for name, shape in (("gate_proj", (F, D)), ("up_proj", (F, D)), ("down_proj", (D, F))):
            w[p + f"mlp.{name}.weight"] = rnd(*shape)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rnd(V, D)
    return w


def write_safetensors(path, tensors, edit_header=None):
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        data = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    header["__metadata__"] = {"format": "pt"}
    if edit_header:
        edit_header(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_checkpoint(d, cfg, tensors, shards=1, edit_header=None):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    if shards == 1:
        return write_safetensors(os.path.join(d, "model.safetensors"), tensors, edit_header)
    names = list(tensors)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        write_safetensors(os.path.join(d, fname), {n: tensors[n] for n in part})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)


def stored(ds):
    """(size in bytes, mantissa bits) of a dataset's HDF5 float type."""
    t = ds.id.get_type()
    return t.get_size(), t.get_fields()[4]


def check_tensors(label, out, src, file_dtype):
    """Every source tensor is in the file, exactly, with the expected stored type; nothing else is."""
    bits = {torch.float32: (4, 23), torch.float16: (2, 10), torch.bfloat16: (2, 7)}[file_dtype]
    bad = []
    with h5py.File(out, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name, t in src.items():
            ds = f["/" + name.replace(".", "/")]
            want = t.to(file_dtype).to(torch.float64).numpy()
            if stored(ds) != bits or not np.array_equal(np.asarray(ds[...], np.float64), want):
                bad.append(f"{name}: stored {stored(ds)}")
    check(f"{label}: {len(src)} tensors equal the source exactly", not bad and len(names) == len(src),
          "\n".join(bad) + f"\n{len(names)} datasets for {len(src)} tensors")


def check_logits(label, out, src, cfg):
    ids = torch.tensor(np.random.default_rng(3).integers(0, cfg["vocab_size"], 24))
    hf_cfg = dict(cfg, head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])
    want = llama_ref.logits(src, hf_cfg, ids)
    weights, h5cfg = llama_ref.load_h5(out)
    got = llama_ref.logits(weights, h5cfg, ids)
    err = float((got - want).abs().max() / want.abs().max())
    check(f"{label}: logits from the file equal logits from the safetensors", want.std() > 0.1 and err < 1e-12,
          f"relative difference {err:.2e}, std {want.std():.3f}")


def eval_docs(cfg):
    rng = np.random.default_rng(8)
    return [rng.integers(0, cfg["vocab_size"], n) for n in (40, 17, 33)]


def reference_loss(src, cfg):
    """Mean next-token loss of the float64 reference over eval_docs."""
    hf_cfg = dict(cfg, head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])
    total, count = 0.0, 0
    for doc in eval_docs(cfg):
        ids = torch.tensor(doc)
        logp = llama_ref.logits(src, hf_cfg, ids[:-1]).log_softmax(-1)
        total -= float(logp[torch.arange(len(doc) - 1), ids[1:]].sum())
        count += len(doc) - 1
    return total / count


def check_eval_loss(label, out, src, cfg):
    """shardlora eval of the imported file (2 ranks) against the reference on the source tensors."""
    docs = eval_docs(cfg)
    data = f"{out}.data.h5"
    with h5py.File(data, "w") as f:
        f["tokens"] = np.concatenate(docs).astype(np.int32)
        f["doc_offsets"] = np.array([0, 40, 57, 90], dtype=np.int64)
        f.attrs["vocab_size"] = np.int64(cfg["vocab_size"])
    run([os.path.join(BIN, "shardlora"), "eval", f"--model={out}", f"--data={data}", "--seq-len=64",
         f"--out={out}.eval.h5"], np=2)
    with h5py.File(f"{out}.eval.h5", "r") as f:
        got = float(f["eval/loss"][()])
    want = reference_loss(src, cfg)
    check(f"{label}: shardlora eval loss of the imported model equals the reference ({got:.6f} vs {want:.6f})",
          abs(got - want) <= 1e-5 * abs(want))


def attrs(out, obj):
    with h5py.File(out, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f[obj].attrs.items()}


# --- LLaMA with GQA and an untied head, bf16, two shards plus an unused tensor ---
llama = random_model(LLAMA, torch.bfloat16, seed=1)
extra = {"model.layers.0.self_attn.rotary_emb.inv_freq": torch.rand(8)}
write_checkpoint("llama-gqa", LLAMA, {**llama, **extra}, shards=2)
p = run([IMPORT, "hf", "llama-gqa", "llama.h5"])
check("llama: summary names architecture, parameters, dtype, output and ignored tensors",
      all(s in p.stdout for s in ("llama", "bfloat16", "llama.h5", "ignored 1 tensor",
                                  str(sum(t.numel() for t in llama.values())))), p.stdout)
check_tensors("llama bf16", "llama.h5", llama, torch.bfloat16)
c = attrs("llama.h5", "config")
want = dict(architecture="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=300, max_position_embeddings=128, rope_theta=10000.0,
            rms_norm_eps=1e-5, tie_word_embeddings=0, attention_bias=0, bos_token_id=1, eos_token_id=2,
            o_proj_bias=0, rope_type="default", sliding_window=0, qk_norm=0)
check("llama: /config attributes", c == want, f"{c}\nwant {want}")
r = attrs("llama.h5", "/")
check("llama: root attributes", r == dict(shardlora_kind="model", format_version=1, source_format="hf-safetensors",
                                          model_name="llama-gqa", source=os.path.realpath("llama-gqa")), r)
check_logits("llama", "llama.h5", llama, LLAMA)
check_eval_loss("llama", "llama.h5", llama, LLAMA)
run([IMPORT, "hf", "llama-gqa/", "llama32.h5", "--dtype=f32"])
check_tensors("llama --dtype f32", "llama32.h5", llama, torch.float32)
check("trailing slash: model_name is the directory name", attrs("llama32.h5", "/")["model_name"] == "llama-gqa")

# --- Qwen2 with q/k/v biases and tied embeddings, fp32, two shards ---
qwen = random_model(QWEN2, torch.float32, seed=2)
write_checkpoint("qwen2-tied", QWEN2, qwen, shards=2)
run([IMPORT, "hf", "qwen2-tied", "qwen.h5"])
check_tensors("qwen2 f32", "qwen.h5", qwen, torch.float32)
c = attrs("qwen.h5", "config")
check("qwen2: biases, tied, theta, eos list and bos default",
      (c["architecture"], c["attention_bias"], c["tie_word_embeddings"], c["rope_theta"], c["eos_token_id"],
       c["bos_token_id"], c["head_dim"], c["rms_norm_eps"]) == ("qwen2", 1, 1, 1e6, 7, 1, 8, 1e-6), c)
check_logits("qwen2", "qwen.h5", qwen, QWEN2)
check_eval_loss("qwen2", "qwen.h5", qwen, QWEN2)
run([IMPORT, "hf", "qwen2-tied", "qwen_bf16.h5", "--dtype", "bf16"])
check_tensors("qwen2 --dtype bf16 rounds like torch", "qwen_bf16.h5", qwen, torch.bfloat16)

# --- LLaMA in f16, a single model.safetensors, architecture from 'architectures' only ---
cfg16 = {k: v for k, v in LLAMA.items() if k not in ("model_type", "rope_scaling")}
llama16 = random_model(LLAMA, torch.float16, seed=4)
write_checkpoint("llama-f16", cfg16, llama16)
run([IMPORT, "hf", "llama-f16", "llama16.h5"])
check_tensors("llama f16 single file", "llama16.h5", llama16, torch.float16)
check_logits("llama f16", "llama16.h5", llama16, LLAMA)

# --- rope types, each in both config layouts: transformers 4 (rope_theta, rope_scaling) and 5
# (rope_parameters, holding rope_theta). Short original contexts, so 64-token windows see the scaling. ---
V5 = {k: v for k, v in LLAMA.items() if k not in ("rope_theta", "rope_scaling")}
ROPES = [("default, theta 5e5", 500000.0, {"rope_type": "default"}),
         ("linear", 10000.0, {"type": "linear", "factor": 4.0}),
         ("llama3", 10000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 32}),
         ("yarn", 10000.0, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                            "beta_fast": 32, "beta_slow": 1}),
         ("yarn with mscale", 20000.0, {"rope_type": "yarn", "factor": 8.0, "mscale": 1.0, "mscale_all_dim": 0.5,
                                        "truncate": False})]


def same_rope(a, b):
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-12 * abs(b[k]) if isinstance(b[k], float)
                                        else a[k] == b[k] for k in b)


rope_model = random_model(LLAMA, torch.float32, seed=6)
plain, plain_loss = llama_ref.rope_ref.params(LLAMA), reference_loss(rope_model, LLAMA)
for name, theta, scaling in ROPES:
    v4 = dict(LLAMA, rope_theta=theta, rope_scaling=scaling)
    v5 = dict(V5, rope_parameters=dict(scaling, rope_theta=theta))
    want = llama_ref.rope_ref.params(v4)
    change = abs(reference_loss(rope_model, v4) / plain_loss - 1)
    check(f"rope {name}: the reference reads both layouts alike; the loss moves {change:.1e} from the plain rope's",
          same_rope(llama_ref.rope_ref.params(v5), want) and not same_rope(want, plain) and change > 1e-3, f"{want}")
    for layout, cfg in (("transformers 4", v4), ("transformers 5", v5)):
        d = f"rope-{name.split(',')[0].replace(' ', '-')}-{layout[-1]}"
        write_checkpoint(d, cfg, rope_model)
        run([IMPORT, "hf", d, f"{d}.h5"])
        got = llama_ref.rope_ref.params(attrs(f"{d}.h5", "config"))
        check(f"rope {name} ({layout}): /config holds the rope type and its fields", same_rope(got, want),
              f"{got}\nwant {want}")
        check_eval_loss(f"rope {name} ({layout})", f"{d}.h5", rope_model, cfg)
write_checkpoint("no-theta", V5, rope_model)
p = run([IMPORT, "hf", "no-theta", "no-theta.h5"])
check("no rope_theta anywhere: llama's documented default 10000, said in the log",
      attrs("no-theta.h5", "config")["rope_theta"] == 10000.0 and "using llama's default, 10000" in p.stdout + p.stderr,
      p.stdout + p.stderr)

# --- Qwen3: per-head RMSNorm of q and k (random norm weights), no q/k/v bias, head_dim 32 apart from
# hidden / heads = 16, GQA ---
QWEN3 = dict(QWEN2, model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=32, tie_word_embeddings=False,
             attention_bias=False)
qwen3 = random_model(QWEN3, torch.float32, seed=8)
write_checkpoint("qwen3", QWEN3, qwen3)
run([IMPORT, "hf", "qwen3", "qwen3.h5"])
check_tensors("qwen3", "qwen3.h5", qwen3, torch.float32)
c3 = attrs("qwen3.h5", "config")
check("qwen3: /config has qk_norm, head_dim 32 and no attention bias",
      c3["qk_norm"] == 1 and c3["head_dim"] == 32 and c3["attention_bias"] == 0, c3)
check_logits("qwen3", "qwen3.h5", qwen3, QWEN3)
check_eval_loss("qwen3", "qwen3.h5", qwen3, QWEN3)
no_norm = dict(qwen3)
no_norm["model.layers.0.self_attn.q_norm.weight"] = torch.ones_like(no_norm["model.layers.0.self_attn.q_norm.weight"])
check("qwen3: the reference's loss depends on the q/k norm weights (the check above can fail)",
      abs(reference_loss(no_norm, QWEN3) / reference_loss(qwen3, QWEN3) - 1) > 1e-4)

# --- attention_bias: llama's (and qwen3's) covers o_proj too, unlike qwen2's; MistralAttention has none,
# whatever the config says ---
for name, cfg, biases in (("llama", dict(LLAMA, attention_bias=True), 4),
                          ("qwen3", dict(QWEN3, attention_bias=True), 4),
                          ("mistral", dict(LLAMA, model_type="mistral", attention_bias=True), 0)):
    tensors = random_model(cfg, torch.float32, seed=9)
    d = f"{name}-attention-bias"
    write_checkpoint(d, cfg, tensors)
    run([IMPORT, "hf", d, f"{d}.h5"])
    c = attrs(f"{d}.h5", "config")
    check(f"{name} with attention_bias: {biases} biases a layer, /config attention_bias and o_proj_bias say so",
          sum(k.startswith("model.layers.0.") and k.endswith(".bias") for k in tensors) == biases
          and (c["attention_bias"], c["o_proj_bias"]) == ((1, 1) if biases else (0, 0)), c)
    check_tensors(f"{name} with attention_bias", f"{d}.h5", tensors, torch.float32)
    check_eval_loss(f"{name} with attention_bias", f"{d}.h5", tensors, cfg)

# --- sliding windows: Mistral's is recorded (null: none), Qwen2's only with use_sliding_window; windows
# longer than it are refused by name (windowed attention is not implemented), shorter ones evaluate
# as the reference (which, within the window, is plain causal attention) ---
MISTRAL = dict(LLAMA, model_type="mistral", architectures=["MistralForCausalLM"])
window_model = random_model(LLAMA, torch.float32, seed=7)
for name, cfg, want in (("mistral, window 64", dict(MISTRAL, sliding_window=64), 64),
                        ("mistral, window 32", dict(MISTRAL, sliding_window=32), 32),
                        ("mistral, window null", dict(MISTRAL, sliding_window=None), 0),
                        ("qwen2-style use_sliding_window false", dict(LLAMA, sliding_window=16, use_sliding_window=False), 0)):
    d = name.split(",")[-1].strip().replace(" ", "-")
    write_checkpoint(d, cfg, window_model)
    run([IMPORT, "hf", d, f"{d}.h5"])
    got = attrs(f"{d}.h5", "config")["sliding_window"]
    check(f"sliding window, {name}: /config holds {want} (found {got})", got == want)
    if want == 64:
        check_eval_loss(f"sliding window {want}, seq-len 64", f"{d}.h5", window_model, cfg)
    if want == 32:
        with h5py.File("window.data.h5", "w") as f:
            f["tokens"] = np.arange(100, dtype=np.int32) % cfg["vocab_size"]
            f["doc_offsets"] = np.array([0, 100], dtype=np.int64)
            f.attrs["vocab_size"] = np.int64(cfg["vocab_size"])
        expect_fail("a window longer than the model's sliding_window is refused, naming both",
                    [os.path.join(BIN, "shardlora"), "eval", f"--model={d}.h5", "--data=window.data.h5",
                     "--seq-len=64", "--out=w.h5"],
                    r"option --seq-len=64 exceeds the model's sliding_window \(32\) in window-32\.h5: sliding-window "
                    r"attention is not implemented.*use --seq-len=32 or less")

# --- bad inputs: each a fresh copy of a small f32 LLaMA with one thing wrong ---
base = random_model(LLAMA, torch.float32, seed=5)


def bad_case(name, pattern, cfg=LLAMA, tensors=None, edit_header=None, raw=None):
    d = "bad-" + name.replace(" ", "-")
    write_checkpoint(d, cfg, base if tensors is None else tensors, edit_header=edit_header)
    if raw is not None:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(raw)
    expect_fail(name, [IMPORT, "hf", d, "bad.h5"], pattern)
    shutil.rmtree(d)


def without(name):
    return {k: v for k, v in base.items() if k != name}


def edit_entry(name, **fields):
    return lambda h: h[name].update(fields)


nan = dict(base)
nan["model.layers.1.mlp.down_proj.weight"] = base["model.layers.1.mlp.down_proj.weight"].clone()
nan["model.layers.1.mlp.down_proj.weight"].view(-1)[100] = float("nan")
longer = struct.pack("<Q", 9999999) + b"{}"
expect_fail("missing directory", [IMPORT, "hf", "nope", "bad.h5"], r"model directory nope: No such file")
os.makedirs("empty")
expect_fail("missing config.json", [IMPORT, "hf", "empty", "bad.h5"], r"cannot open model config empty/config.json")
bad_case("unknown architecture", r"unknown architecture 'gpt2' in .*config.json \(supported: llama, mistral, qwen2, qwen3\)",
         cfg=dict(LLAMA, model_type="gpt2"))
bad_case("truncated header", r"model.safetensors: file is 5 bytes, shorter than the 8-byte header", raw=b"\x10\0\0\0\0")
bad_case("header length beyond file", r"model.safetensors: header length 9999999 exceeds file size 10", raw=longer)
bad_case("malformed JSON header", r"model.safetensors: the 8-byte header is not a valid JSON object",
         raw=struct.pack("<Q", 8) + b'{"a": [1')
bad_case("missing dtype field", r"tensor model.norm.weight: 'dtype' is missing",
         edit_header=lambda h: h["model.norm.weight"].pop("dtype"))
bad_case("offsets beyond the data area", r"tensor model.norm.weight: data_offsets \[0, 99999999\] lie outside",
         edit_header=edit_entry("model.norm.weight", data_offsets=[0, 99999999]))
bad_case("size not shape times itemsize", r"tensor model.norm.weight: data_offsets span 256 bytes, expected 128",
         edit_header=edit_entry("model.norm.weight", shape=[32]))
bad_case("tensor missing", r"model.safetensors: tensor model.layers.1.mlp.up_proj.weight is missing",
         tensors=without("model.layers.1.mlp.up_proj.weight"))
bad_case("untied model without lm_head", r"tensor lm_head.weight is missing .*tie_word_embeddings false",
         tensors=without("lm_head.weight"))
bad_case("wrong shape", r"tensor model.layers.0.self_attn.k_proj.weight has shape \[64, 64\], expected \[32, 64\]",
         tensors=dict(base, **{"model.layers.0.self_attn.k_proj.weight": torch.ones(64, 64)}))
bad_case("unsupported dtype", r"tensor model.norm.weight has dtype I64 \(supported: F32, F16, BF16\)",
         tensors=dict(base, **{"model.norm.weight": torch.ones(64, dtype=torch.int64)}))
bad_case("NaN in a weight", r"tensor model.layers.1.mlp.down_proj.weight: value nan at flat index 100 \(row 1, column 4\)",
         tensors=nan)
bad_case("rope type dynamic", r"config.json: rope type 'dynamic' is not supported \(supported: default, linear, "
         r"llama3, yarn\)", cfg=dict(LLAMA, rope_scaling={"type": "dynamic", "factor": 2.0}))
bad_case("rope type longrope (transformers 5)", r"bad-rope-type-longrope.*/config.json: rope type 'longrope' is not",
         cfg=dict(V5, rope_parameters={"rope_type": "longrope", "rope_theta": 1e4, "factor": 2.0}))
bad_case("llama3 without low_freq_factor", r"config.json: 'rope_scaling.low_freq_factor' is missing",
         cfg=dict(LLAMA, rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 32}))
bad_case("both rope layouts", r"config.json: both rope_parameters \(transformers 5\) and rope_scaling",
         cfg=dict(V5, rope_parameters={"rope_type": "default", "rope_theta": 1e4},
                  rope_scaling={"rope_type": "linear", "factor": 2.0}))
bad_case("scaling factor below 1", r"config.json: the rope scaling factor must be at least 1",
         cfg=dict(LLAMA, rope_scaling={"rope_type": "linear", "factor": 0.5}))
bad_case("partial rotary factor", r"'rope_parameters.partial_rotary_factor' other than 1 is not supported",
         cfg=dict(V5, rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}))
bad_case("rope parameters per layer type", r"rope_parameters per layer type \('full_attention'\) is not supported",
         cfg=dict(V5, rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e4}}))
bad_case("partial rotary factor (transformers 4)", r"config.json: 'partial_rotary_factor' other than 1",
         cfg=dict(LLAMA, partial_rotary_factor=0.5))
with open("empty/config.json", "w") as f:
    json.dump(LLAMA, f)
expect_fail("no safetensors", [IMPORT, "hf", "empty", "bad.h5"],
            r"empty: neither model.safetensors nor model.safetensors.index.json found")
huge = dict(base, **{"model.norm.weight": torch.full((64,), 1e6)})
write_checkpoint("huge", LLAMA, huge)
expect_fail("--dtype f16 overflow", [IMPORT, "hf", "huge", "bad.h5", "--dtype", "f16"],
            r"tensor model.norm.weight: value inf at flat index 0 after conversion to float16")
check("no output file after failures", not os.path.exists("bad.h5") and not os.path.exists("bad.h5.partial"))
expect_fail("unknown --dtype", [IMPORT, "hf", "llama-gqa", "bad.h5", "--dtype", "f64"], r"--dtype: unknown type 'f64'")
finish()
