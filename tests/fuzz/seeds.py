"""Seed inputs of the fuzz targets (tests/fuzz/fuzz_*.c), written under DIR/TARGET/: small valid
inputs in each format, made here from the formats' specifications and the project's shared files,
for libFuzzer to mutate.   usage: seeds.py DIR [TARGET...]"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("SHARDLORA_SHARED") or os.path.join(os.path.dirname(ROOT), "shared")
SEEDS = {}


def seed(target):
    def register(fn):
        SEEDS[target] = fn
        return fn
    return register


def safetensors_bytes(tensors, metadata=None):
    """tensors: (name, dtype, shape, item size) in file order; the data area holds a distinct
    byte pattern per tensor."""
    header, data = {}, b""
    for name, dtype, shape, item in tensors:
        n = item
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((len(data) + i) % 251 for i in range(n))
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + data


@seed("safetensors")
def safetensors_seeds():
    yield "two_f32", safetensors_bytes([("a.weight", "F32", [2, 3], 4), ("b.bias", "F32", [3], 4)],
                                       {"format": "pt"})
    yield "bf16_f16", safetensors_bytes([("x", "BF16", [4, 2], 2), ("y", "F16", [1, 1, 2], 2)])
    yield "int_and_scalar", safetensors_bytes([("ids", "I64", [3], 8), ("s", "F32", [], 4),
                                               ("empty", "U8", [0, 5], 1)])


LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
         "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False,
         "mlp_bias": False, "torch_dtype": "bfloat16"}


@seed("hfconfig")
def hfconfig_seeds():
    yield "llama", json.dumps(LLAMA, indent=2)
    yield "llama3_rope", json.dumps(dict(LLAMA, eos_token_id=[2, 3], head_dim=16, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 128}))
    yield "mistral_window", json.dumps(dict(LLAMA, architectures=["MistralForCausalLM"], model_type="mistral",
                                            sliding_window=32, rope_scaling={"type": "linear", "factor": 2.0}))
    yield "qwen2_yarn", json.dumps(dict(LLAMA, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                                        use_sliding_window=False, sliding_window=None, tie_word_embeddings=True,
                                        rope_scaling={"rope_type": "yarn", "factor": 4.0, "beta_fast": 32,
                                                      "mscale": 1.0, "mscale_all_dim": 0.5}))
    no_type = {k: v for k, v in LLAMA.items() if k not in ("model_type", "rope_theta")}
    yield "qwen3_rope_parameters", json.dumps(dict(no_type, architectures=["Qwen3ForCausalLM"], rope_parameters={
        "rope_type": "yarn", "rope_theta": 1e6, "factor": 2.0, "original_max_position_embeddings": 128,
        "attention_factor": 1.1, "truncate": False}))


def llama2c_bytes(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=True):
    """A legacy llama2.c checkpoint (shared/models/README.md) with small distinct weights."""
    head_dim = dim // heads
    kv = kv_heads * head_dim
    floats = (vocab * dim + layers * (dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hidden * dim)
              + dim + seq_len * head_dim + (0 if shared else vocab * dim))
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq_len)
    return header + struct.pack(f"<{floats}f", *((i % 17 - 8) / 16 for i in range(floats)))


@seed("llama2c")
def llama2c_seeds():
    yield "tiny_shared", llama2c_bytes(8, 16, 1, 2, 1, 32, 8)
    yield "tiny_classifier", llama2c_bytes(8, 12, 2, 2, 2, 16, 4, shared=False)


def vocab_bytes(pieces, max_len=None):
    """A llama2.c tokenizer file: <unk>, <s>, </s>, the 256 byte-fallback pieces, then pieces
    (bytes, score)."""
    entries = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    entries += [(f"<0x{b:02X}>".encode(), 0.0) for b in range(256)] + pieces
    max_len = max_len or max(len(p) for p, _ in entries)
    return struct.pack("<i", max_len) + b"".join(struct.pack("<fi", s, len(p)) + p for p, s in entries)


@seed("vocab")
def vocab_seeds():
    words = [b" ", b"e", b"t", b"a", b"o", b"n", b"c", b"i", b"m", b"p", b"u", b"O", b"\xc3\xa9",
             b"\xe2\x82\xac", b"On", b"Once", b" up", b"on", b" upon", b" a", b" t", b"im", b" time", b",",
             b"<", b"0", b"x", b"4", b"1", b">", b"<0x", b"41", b"<0x41>"]
    yield "small", vocab_bytes([(w, -float(i)) for i, w in enumerate(words)])
    yield "duplicates_and_empty", vocab_bytes([(b"", -1.0), (b"a", -2.0), (b"a", -3.0), (b" a", -0.5)], 64)
    yield "llama2c_tokenizer_head", vocab_head(os.path.join(SHARED, "data", "llama2c_tokenizer.bin"), 600)


def vocab_head(path, n):
    """The header and first n entries of a llama2.c tokenizer file."""
    data = open(path, "rb").read()
    at = 4
    for _ in range(n):
        at += 8 + struct.unpack_from("<i", data, at + 4)[0]
    return data[:at]


@seed("jsonl")
def jsonl_seeds():
    # first byte: bit 0 --bos, bit 1 --eos, the rest --max-docs (0: no limit)
    yield "ids", b"\x00" + b'{"input_ids": [5, 6, 7]}\n\n{"input_ids": []}\n{"input_ids": [299]}\n'
    yield "masks_bos_eos", b"\x03" + (b'{"input_ids": [10, 11], "loss_mask": [0, 1]}\n'
                                       b'  {"input_ids": [12], "loss_mask": [1], "extra": {"a": [1, 2]}}\n')
    yield "labels_max_docs", b"\x08" + b'{"input_ids": [1, 2, 3], "label": 0}\n{"input_ids": [4], "label": 7}\n' * 3


@seed("bpe")
def bpe_seeds():
    text = open(os.path.join(SHARED, "data", "tinyshakespeare.txt"), "rb").read()
    yield "shakespeare", text[:600]
    yield "unicode", "Grüße, 東京 — naïve café ☕ 🙂\t\r\n".encode()
    yield "bytes", bytes(range(256))


@seed("config")
def config_seeds():
    def line(*args):
        return "\0".join(args).encode()
    yield "train", line("train", "--model=m.h5", "--data", "d.h5", "--out=o", "--lr=3e-4", "--quant=nf4",
                        "--double-quant", "--lora-targets=q_proj,v_proj", "--act-ckpt=auto", "--seq-len=128")
    yield "eval", line("eval", "--model", "m.h5", "--data=d.h5", "--out", "r.h5", "--blocksize=4096",
                       "--quant=int8", "--threads=2")
    yield "offload", line("train", "--model=m", "--data=d", "--out=o", "--act-offload", "--resume=auto",
                          "--global-batch=8", "--comm-timeout=0.5", "--schedule=cosine", "--dry-run=yes")


def h5edit_seeds():
    """The HDF5 targets' inputs (tests/fuzz/h5edit.h): a byte picking the valid file (h5model,
    h5dataset; h5checkpoint has one file and reads it as an edit), then edits, each an operation
    byte and its arguments: none, a deletion, a replaced dataset, a poked value, an attribute set
    and one deleted."""
    for base in (0, 1):
        yield f"valid_{base}", bytes([base])
        yield f"edits_{base}", bytes([base, 0, 9, 2, 3, 1, 7, 200, 3, 4, 5, 0, 4, 2, 6, 1, 2, 3, 4, 4, 1, 8])
        yield f"poke_{base}", bytes([base, 2, 1, 4, 0, 3, 2, 0, 0, 5, 11, 5, 2, 1])


for target in ("h5model", "h5dataset", "h5checkpoint"):
    seed(target)(h5edit_seeds)


def main():
    out = sys.argv[1]
    for target in sys.argv[2:] or sorted(SEEDS):
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, content in SEEDS[target]():
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(content if isinstance(content, bytes) else content.encode())


if __name__ == "__main__":
    main()
