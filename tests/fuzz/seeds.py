"""Seed inputs of the fuzz targets (tests/fuzz/fuzz_*.c), written under DIR/TARGET/: small valid
inputs in each format, made here from the formats' specifications and the project's shared files,
for libFuzzer to mutate.   usage: seeds.py DIR [TARGET...]"""
import base64
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
    # first byte: bit 0 --bos, bit 1 --eos, bit 2 the llama2.c tokenizer, bits 3-4 --chat-template
    # (the tokenizer's, llama3, chatml, mistral), bits 5-7 --max-docs (0: no limit)
    yield "ids", b"\x00" + b'{"input_ids": [5, 6, 7]}\n\n{"input_ids": []}\n{"input_ids": [299]}\n'
    yield "masks_bos_eos", b"\x03" + (b'{"input_ids": [10, 11], "loss_mask": [0, 1]}\n'
                                       b'  {"input_ids": [12], "loss_mask": [1], "extra": {"a": [1, 2]}}\n')
    yield "labels_max_docs", b"\x40" + b'{"input_ids": [1, 2, 3], "label": 0}\n{"input_ids": [4], "label": 7}\n' * 3
    yield "text_records", b"\x07" + ('{"text": "Once upon a time", "label": 2}\n{"text": "caf\\u00e9 \\ud83d\\ude42", "label": 1}\n'
                                      '{"text": "", "label": 0}\n').encode()
    conversation = json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Hi there"},
                                            {"role": "assistant", "content": "Hello!"},
                                            {"role": "user", "content": "Bye"},
                                            {"role": "assistant", "content": " See you. "}]})
    yield "messages_chatml", b"\x14" + (conversation + "\n").encode()
    without_system = json.dumps({"messages": json.loads(conversation)["messages"][1:]})
    yield "messages_mistral", b"\x1e" + (without_system + "\n" + '{"input_ids": [7, 8]}\n').encode()


@seed("bpe")
def bpe_seeds():
    text = open(os.path.join(SHARED, "data", "tinyshakespeare.txt"), "rb").read()
    yield "shakespeare", text[:600]
    yield "unicode", "Grüße, 東京 — naïve café ☕ 🙂\t\r\n".encode()
    yield "bytes", bytes(range(256))


# The text the tokenizer-file targets encode (tests/fuzz/tokenizer_file.c), for seeds whose pieces
# cover parts of it.
TEXT = "Once upon a time,  \u00e9t\u00e9 \u20ac\U0001F642\tit's 2024!\n\n <0x41> end"
WORDS = ["Once", " upon", " a", " time", ",", " end", "it", "'s", " 20", "24"]


def bytelevel_char(b):
    """GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for
    256 + their order among them."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    return chr(b) if b in printable else chr(256 + sorted(set(range(256)) - set(printable)).index(b))


def merges_of(words, unit):
    """Left-to-right merges that build each word from its units: the new pieces and the merges."""
    pieces, merges = [], []
    for w in words:
        units = unit(w)
        cur = units[0]
        for u in units[1:]:
            if [cur, u] not in merges:
                merges.append([cur, u])
                pieces.append(cur + u)
            cur += u
    return pieces, merges


def byte_level_json(split_regex=None, nfc=False, ignore_merges=False, old_merges=False):
    vocab = {bytelevel_char(b): b for b in range(256)}
    pieces, merges = merges_of(WORDS, lambda w: [bytelevel_char(b) for b in w.encode()])
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": split_regex is None}
    if split_regex:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split_regex}, "behavior": "Isolated", "invert": False}, pre]}
    eot = len(vocab)
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": {"type": "NFC"} if nfc else None, "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": ignore_merges, "vocab": vocab,
                  "merges": [" ".join(m) for m in merges] if old_merges else merges}}, ensure_ascii=False)


SPACE = "\u2581"  # SentencePiece's visible space


def sentencepiece_style_json(metaspace):
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    words = [w.replace(" ", SPACE) for w in WORDS]
    for ch in sorted(set("".join(words))):
        vocab.setdefault(ch, len(vocab))
    pieces, merges = merges_of(words, list)
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    if metaspace:
        normalizer = None
        pre = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False}
    else:
        normalizer = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]}
        pre = None
    return json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(specials)],
        "normalizer": normalizer, "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {}},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": merges}}, ensure_ascii=False)


@seed("hfjson")
def hfjson_seeds():
    yield "byte_level_gpt2", byte_level_json(old_merges=True)
    yield "byte_level_split_nfc", byte_level_json(split_regex=r"(?i:'s|'t)|\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+",
                                                  nfc=True, ignore_merges=True)
    yield "sentencepiece_style", sentencepiece_style_json(metaspace=False)
    yield "metaspace", sentencepiece_style_json(metaspace=True)


def varint(n):
    out = b""
    while True:
        out += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def pb_bytes(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def pb_int(field, n):
    return varint(field << 3) + varint(n)


def sp_model(pieces, byte_fallback=True, dummy_prefix=True):
    """A SentencePiece ModelProto: pieces (text, score, type: 1 normal, 2 unknown, 3 control,
    4 user-defined, 6 byte), a BPE trainer spec and the identity normalizer."""
    out = b""
    for text, score, kind in pieces:
        out += pb_bytes(1, pb_bytes(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score) + pb_int(3, kind))
    out += pb_bytes(2, pb_int(3, 2) + pb_int(35, int(byte_fallback)) + pb_int(40, 0) + pb_int(41, 1) + pb_int(42, 2)
                    + pb_int(43, 0xFFFFFFFFFFFFFFFF))  # pad_id -1, as sentencepiece writes it
    out += pb_bytes(3, pb_bytes(1, b"identity") + pb_int(3, int(dummy_prefix)) + pb_int(4, 0) + pb_int(5, 1))
    return out


@seed("spmodel")
def spmodel_seeds():
    base = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    byte_pieces = [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    words = [SPACE + "Once"] + [w.replace(" ", SPACE) for w in WORDS[1:]]
    chars = sorted(set("".join(words)))
    merged, _ = merges_of(words, list)
    normal = [(c, -100.0 - i, 1) for i, c in enumerate(chars)] + [(p, -float(i), 1) for i, p in enumerate(merged)]
    yield "llama_style", sp_model(base + byte_pieces + normal)
    yield "user_defined_and_control", sp_model(base + [("[INST]", 0.0, 3), ("<0x41>", 0.0, 4)] + byte_pieces + normal)
    yield "no_byte_fallback_no_prefix", sp_model(base + normal, byte_fallback=False, dummy_prefix=False)


def tiktoken_file(words, skip=()):
    ranks = [bytes([b]) for b in range(256)]
    pieces, _ = merges_of([w.encode() for w in words], lambda w: [w[i:i + 1] for i in range(len(w))])
    ranks += [p for p in pieces if p not in ranks]
    lines, rank = [], 0
    for token in ranks:
        while rank in skip:
            rank += 1
        lines.append(base64.b64encode(token) + b" %d" % rank)
        rank += 1
    return b"\n".join(lines) + b"\n"


@seed("tiktoken")
def tiktoken_seeds():
    # first byte: the --pattern (0 llama3, 1 qwen2, 2 qwen3.5, 3 cl100k, 4 GPT-2's as a regular expression)
    for k, name in enumerate(("llama3", "qwen2", "qwen3_5", "cl100k", "regex")):
        yield f"ranks_{name}", bytes([k]) + tiktoken_file(WORDS)
    yield "ranks_with_gaps_crlf", b"\x01" + tiktoken_file(WORDS, skip=(3, 300)).replace(b"\n", b"\r\n")


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
