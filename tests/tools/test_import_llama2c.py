"""shardlora-import llama2c: the real stories260K model; its logits from an independent llama2.c-style
forward (adjacent-pair rotary, weights straight from the .bin) must equal the HF-convention reference
forward on the imported file, so the wq/wk row permutation is right."""
import os
import shutil
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, SHARED, check, expect_fail, finish, run  # noqa: E402
from reference import llama_ref  # noqa: E402

IMPORT = os.path.join(BIN, "shardlora-import")
MODEL = os.path.join(SHARED, "models", "stories260K.bin")


def read_llama2c(path):
    """The header and the float32 arrays of a legacy llama2.c checkpoint, in file order."""
    dim, hidden, layers, heads, kv_heads, vocab, seq = (int(v) for v in np.fromfile(path, "<i4", 7))
    hd = dim // heads
    kv_dim = kv_heads * hd
    data = np.fromfile(path, "<f4", offset=28).astype(np.float64)
    shapes = [("emb", (abs(vocab), dim)), ("att_norm", (layers, dim)), ("wq", (layers, dim, dim)),
              ("wk", (layers, kv_dim, dim)), ("wv", (layers, kv_dim, dim)), ("wo", (layers, dim, dim)),
              ("ffn_norm", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
              ("w3", (layers, hidden, dim)), ("norm", (dim,)), ("rope", (seq * hd,))]
    w, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = data[at:at + n].reshape(shape)
        at += n
    w["cls"] = w["emb"] if vocab > 0 else data[at:].reshape(-vocab, dim)
    hdr = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=abs(vocab), seq=seq)
    return hdr, w


def rope_adjacent(x, pos, hd):
    """llama2.c rotary: element 2i rotates with 2i+1, frequency 10000^(-2i/hd). x: [heads, hd]."""
    i = np.arange(hd // 2)
    angle = pos * 10000.0 ** (-2.0 * i / hd)
    c, s = np.cos(angle), np.sin(angle)
    even, odd = x[:, 0::2].copy(), x[:, 1::2].copy()
    out = np.empty_like(x)
    out[:, 0::2], out[:, 1::2] = even * c - odd * s, even * s + odd * c
    return out


def llama2c_logits(hdr, w, ids):
    """A token-by-token forward with a KV cache, as llama2.c's run.c does it (float64)."""
    def rms(x, g):
        return x / np.sqrt(np.mean(x * x) + 1e-5) * g
    H, KVH, hd = hdr["heads"], hdr["kv_heads"], hdr["dim"] // hdr["heads"]
    kcache = [[] for _ in range(hdr["layers"])]
    vcache = [[] for _ in range(hdr["layers"])]
    out = []
    for pos, tok in enumerate(ids):
        x = w["emb"][tok].copy()
        for l in range(hdr["layers"]):
            h = rms(x, w["att_norm"][l])
            q = rope_adjacent((w["wq"][l] @ h).reshape(H, hd), pos, hd)
            kcache[l].append(rope_adjacent((w["wk"][l] @ h).reshape(KVH, hd), pos, hd))
            vcache[l].append((w["wv"][l] @ h).reshape(KVH, hd))
            K, V = np.stack(kcache[l]), np.stack(vcache[l])  # [pos+1, KVH, hd]
            att = np.empty((H, hd))
            for head in range(H):
                kv = head // (H // KVH)
                scores = K[:, kv] @ q[head] / np.sqrt(hd)
                p = np.exp(scores - scores.max())
                att[head] = (p / p.sum()) @ V[:, kv]
            x = x + w["wo"][l] @ att.reshape(-1)
            h = rms(x, w["ffn_norm"][l])
            g = w["w1"][l] @ h
            x = x + w["w2"][l] @ (g / (1 + np.exp(-g)) * (w["w3"][l] @ h))
        out.append(w["cls"] @ rms(x, w["norm"]))
    return np.stack(out)


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


hdr, w = read_llama2c(MODEL)
ids = [1] + [int(t) for t in np.random.default_rng(7).integers(3, hdr["vocab"], 39)]
want = llama2c_logits(hdr, w, ids)

out = "stories.h5"
p = run([IMPORT, "llama2c", MODEL, out])
check("import prints architecture, parameters, dtype and output",
      all(s in p.stdout for s in ("llama", "260032", "float32", out)), p.stdout)
with h5py.File(out, "r") as f:
    c = dict(f["config"].attrs)
    want_cfg = dict(architecture="llama", hidden_size=64, intermediate_size=172, num_hidden_layers=5,
                    num_attention_heads=8, num_key_value_heads=4, head_dim=8, vocab_size=512,
                    max_position_embeddings=512, tie_word_embeddings=1, attention_bias=0,
                    bos_token_id=1, eos_token_id=2)
    got_cfg = {k: (c[k].decode() if isinstance(c[k], bytes) else c[k]) for k in want_cfg}
    check("config attributes of stories260K", got_cfg == want_cfg, f"{got_cfg}\nwant {want_cfg}")
    check("rope_theta 10000, rms_norm_eps 1e-5", c["rope_theta"] == 10000.0 and abs(c["rms_norm_eps"] - 1e-5) < 1e-12)
    check("root attributes", f.attrs["shardlora_kind"] == "model" and f.attrs["format_version"] == 1
          and f.attrs["source_format"] == "llama2c" and f.attrs["model_name"] == "stories260K"
          and f.attrs["source"] == os.path.realpath(MODEL), dict(f.attrs))
    check("tied model stores no lm_head", "lm_head" not in f)
    check("embedding copied exactly", np.array_equal(f["model/embed_tokens/weight"][...], w["emb"]))
    check("v_proj of layer 3 copied unpermuted", np.array_equal(f["model/layers/3/self_attn/v_proj/weight"][...],
                                                               w["wv"][3]))

weights, cfg = llama_ref.load_h5(out)
got = llama_ref.logits(weights, cfg, torch.tensor(ids)).numpy()
check("logits are not trivial", np.std(want) > 0.5, f"std {np.std(want)}")
check("HF-convention logits of the import equal llama2.c-convention logits", max_rel(got, want) < 1e-6,
      f"max relative difference {max_rel(got, want):.2e}")
# The same reference on unpermuted wq/wk must disagree, or the comparison above proves nothing.
for l in range(hdr["layers"]):
    weights[f"model.layers.{l}.self_attn.q_proj.weight"] = torch.from_numpy(w["wq"][l])
    weights[f"model.layers.{l}.self_attn.k_proj.weight"] = torch.from_numpy(w["wk"][l])
unpermuted = llama_ref.logits(weights, cfg, torch.tensor(ids)).numpy()
check("without the rotary permutation the logits differ", max_rel(unpermuted, want) > 1e-3,
      f"relative difference {max_rel(unpermuted, want):.2e}")

run([IMPORT, "llama2c", MODEL, "stories_f16.h5", "--dtype", "f16"])
with h5py.File("stories_f16.h5", "r") as f:
    wq = f["model/layers/0/self_attn/q_proj/weight"]
    check("--dtype f16 stores 2-byte floats", wq.id.get_type().get_size() == 2)
    check("--dtype f16 rounds like numpy", np.array_equal(np.asarray(f["model/layers/4/mlp/up_proj/weight"][...],
                                                                    np.float32), w["w3"][4].astype(np.float16).astype(np.float32)))

size = os.path.getsize(MODEL)
with open(MODEL, "rb") as src, open("truncated.bin", "wb") as dst:
    dst.write(src.read(size - 100))
expect_fail("truncated .bin", [IMPORT, "llama2c", "truncated.bin", "t.h5"],
            rf"truncated.bin: file is truncated: expected {size} bytes .* found {size - 100}")
check("no output file after a failure", not os.path.exists("t.h5") and not os.path.exists("t.h5.partial"))
with open("short.bin", "wb") as f:
    f.write(b"\x40\0\0\0")
expect_fail("header shorter than 28 bytes", [IMPORT, "llama2c", "short.bin", "t.h5"],
            r"short.bin: file is 4 bytes, shorter than the 28-byte llama2.c header")
expect_fail("missing .bin", [IMPORT, "llama2c", "nope.bin", "t.h5"], r"cannot open llama2.c checkpoint nope.bin")
finish()
