"""shardlora-tokenize against an independent Python encoder (the naive llama2.c algorithm) and
against the JSONL / raw inputs it must carry through verbatim."""
import json
import os
import struct
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.environ["SHARDLORA_ROOT"], "tests"))
from testlib import BIN, SHARED, TMP, check, expect_fail, finish, paragraphs, run  # noqa: E402

TOOL = os.path.join(BIN, "shardlora-tokenize")
TOKENIZER = os.path.join(SHARED, "data", "llama2c_tokenizer.bin")
SHAKESPEARE = os.path.join(SHARED, "data", "tinyshakespeare.txt")
rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


# ---- reference encoder: the naive algorithm, rescanning all pairs after every merge ----

def load_vocab(path):
    data = open(path, "rb").read()
    pos, pieces, scores = 4, [], []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pieces.append(data[pos + 8:pos + 8 + n])
        scores.append(score)
        pos += 8 + n
    ids = {}
    for i, p in enumerate(pieces):
        ids.setdefault(p, i)
    return pieces, scores, ids


def utf8_chars(b):
    """A byte and up to three following continuation bytes, as llama2.c groups them."""
    i = 0
    while i < len(b):
        j = i + 1
        while j < len(b) and j - i < 4 and b[j] & 0xC0 == 0x80:
            j += 1
        yield b[i:j]
        i = j


def encode(text, vocab):
    pieces, scores, ids = vocab
    if not text:
        return []
    toks = []
    for ch in utf8_chars(b" " + text):
        toks.extend([ids[ch]] if ch in ids else [c + 3 for c in ch])

    def pair(i):  # (score, merged id) of merging toks[i] and toks[i + 1]
        m = ids.get(pieces[toks[i]] + pieces[toks[i + 1]])
        return (float("-inf"), -1) if m is None else (scores[m], m)

    cand = [pair(i) for i in range(len(toks) - 1)]
    sc = [c[0] for c in cand]
    while sc:
        best = max(sc)
        if best == float("-inf"):
            break
        i = sc.index(best)  # leftmost among equal scores
        toks[i] = cand[i][1]
        del toks[i + 1], cand[i], sc[i]
        for k in (i - 1, i):
            if 0 <= k < len(toks) - 1:
                cand[k] = pair(k)
                sc[k] = cand[k][0]
    return toks


def reference(docs, vocab, bos=False, eos=False):
    toks, offs = [], [0]
    for d in docs:
        toks += ([1] if bos else []) + encode(d, vocab) + ([2] if eos else [])
        offs.append(len(toks))
    return np.array(toks, np.int64), np.array(offs, np.int64)


def load(path):
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in f.keys()}
        out["attrs"] = dict(f.attrs)
        out["dtypes"] = {k: f[k].dtype for k in f.keys()}
    return out


def same_ids(name, got, docs, vocab, bos=False, eos=False):
    toks, offs = reference(docs, vocab, bos, eos)
    first = next((i for i in range(min(len(toks), len(got["tokens"])))
                  if toks[i] != got["tokens"][i]), None)
    return check(name, np.array_equal(got["tokens"], toks) and np.array_equal(got["doc_offsets"], offs),
                 f"{len(got['tokens'])} tokens vs reference {len(toks)}; first difference at {first}; "
                 f"{len(got['doc_offsets']) - 1} docs vs reference {len(offs) - 1}")


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def tokenize(*args):
    return run([TOOL, *args])


def text_tests(vocab):
    shakespeare = open(SHAKESPEARE, "rb").read()
    t0 = time.time()
    p = tokenize("--text", SHAKESPEARE, "--tokenizer", TOKENIZER, "--bos", "--eos", "--out", "p.h5")
    print(f"# tokenize tinyshakespeare (paragraphs): {time.time() - t0:.2f} s: {p.stdout.strip()}")
    got, docs = load("p.h5"), paragraphs(shakespeare)
    check("paragraph split finds the play's many speeches", len(docs) > 7000, f"{len(docs)} paragraphs")
    t0 = time.time()
    same_ids("tinyshakespeare paragraphs with --bos --eos match the reference encoder", got, docs, vocab, True, True)
    print(f"# reference encoder: {time.time() - t0:.2f} s")
    a = got["attrs"]
    check("dataset attributes", (a["shardlora_kind"], a["format_version"], a["vocab_size"], a["bos_id"],
                                 a["eos_id"], a["pad_id"], a["tokenizer"]) ==
          ("dataset", 1, 32000, 1, 2, -1, "llama2c_tokenizer.bin") and SHAKESPEARE in a["source"], str(a))
    check("tokens int32, offsets int64, no mask or labels",
          got["dtypes"]["tokens"] == np.int32 and got["dtypes"]["doc_offsets"] == np.int64
          and "loss_mask" not in got and "labels" not in got, str(got["dtypes"]))

    t0 = time.time()
    tokenize("--text", SHAKESPEARE, "--tokenizer", TOKENIZER, "--doc-per-file", "--out", "whole.h5")
    print(f"# tokenize tinyshakespeare as one 1.1 MB document: {time.time() - t0:.2f} s")
    whole = load("whole.h5")
    check("1.1 MB single document encodes to one document of plausible length",
          len(whole["doc_offsets"]) == 2 and 250000 < len(whole["tokens"]) < 500000, str(whole["doc_offsets"]))

    a_txt, b_txt = write("a.txt", shakespeare[:3000]), write("b.txt", shakespeare[50000:54000] + b"\n\n\n")
    tokenize("--text", a_txt, b_txt, "--tokenizer", TOKENIZER, "--doc-per-file", "--out", "files.h5")
    same_ids("--doc-per-file: each file verbatim is one document", load("files.h5"),
             [shakespeare[:3000], shakespeare[50000:54000] + b"\n\n\n"], vocab)

    tokenize("--text", SHAKESPEARE, "--tokenizer", TOKENIZER, "--max-docs", "5", "--out", "five.h5")
    same_ids("--max-docs 5 keeps the first five paragraphs", load("five.h5"), docs[:5], vocab)


def unicode_tests(vocab):
    text = ("Привет, мир! Grüße aus Köln. 日本語のテキストと中文字符。\n"
            "Emoji 🦙🚀 and rare 龘𠜎 CJK, ﷽ ligature.\r\n\t tab  spaces   \n\n"
            "Second paragraph:  ǅ ʬ ⅷ ∰ ⨌ \u2028 end, equal-score ties: =====.....").encode()
    text += b"\n  \t\n\nbad bytes: \xff\xfe a\x80\x80b \xf0\x9f\xa6\x99\x80\x80 \xe6\x97 end"
    path = write("utf8.txt", text)
    tokenize("--text", path, "--tokenizer", TOKENIZER, "--out", "u.h5")
    got, docs = load("u.h5"), paragraphs(text)
    same_ids("UTF-8, characters absent from the vocabulary, invalid bytes, score ties", got, docs, vocab)
    fallback = np.count_nonzero((got["tokens"] >= 3) & (got["tokens"] < 259))
    check("byte fallback was exercised", fallback > 10 and len(docs) == 3, f"{fallback} fallback ids")

    empty = write("empty.txt", b"")
    tokenize("--text", empty, path, "--tokenizer", TOKENIZER, "--doc-per-file", "--bos", "--eos", "--out", "e.h5")
    same_ids("an empty file is an empty document (BOS, EOS only)", load("e.h5"), [b"", text], vocab, True, True)


def tokenizer_errors():
    data = open(TOKENIZER, "rb").read()
    cut = write("cut_tokenizer.bin", data[:len(data) // 2 + 3])
    txt = write("t.txt", b"hello world\n")
    expect_fail("truncated tokenizer file is named and called truncated",
                [TOOL, "--text", txt, "--tokenizer", cut, "--out", "x.h5"], r"cut_tokenizer\.bin.*truncated")
    expect_fail("missing tokenizer file", [TOOL, "--text", txt, "--tokenizer", "nope.bin", "--out", "x.h5"],
                r"nope\.bin.*No such file")
    expect_fail("--vocab-size must match the tokenizer",
                [TOOL, "--text", txt, "--tokenizer", TOKENIZER, "--vocab-size", "512", "--out", "x.h5"],
                r"512.*32000")
    expect_fail("missing text file", [TOOL, "--text", "absent.txt", "--tokenizer", TOKENIZER, "--out", "x.h5"],
                r"absent\.txt")


def jsonl_lines(n, vocab_size, mask=True, label=True):
    lines = []
    for _ in range(n):
        k = int(rng.integers(3, 40))
        rec = {"input_ids": rng.integers(0, vocab_size, k).tolist()}
        if mask:
            rec["loss_mask"] = rng.integers(0, 2, k).tolist()
        if label:
            rec["label"] = int(rng.integers(0, 5))
        lines.append(rec)
    return lines


def write_jsonl(name, records, extra=b""):
    return write(name, b"\n".join(json.dumps(r).encode() for r in records) + b"\n\n" + extra)


def jsonl_tests():
    recs = jsonl_lines(50, 1000)
    path = write_jsonl("d.jsonl", recs)
    tokenize("--jsonl", path, "--vocab-size", "1000", "--out", "j.h5")
    got = load("j.h5")
    ids = np.concatenate([r["input_ids"] for r in recs])
    check("JSONL ids round trip", np.array_equal(got["tokens"], ids))
    check("JSONL doc offsets", np.array_equal(got["doc_offsets"], np.cumsum([0] + [len(r["input_ids"]) for r in recs])))
    check("JSONL loss_mask round trip", got["loss_mask"].dtype == np.uint8 and
          np.array_equal(got["loss_mask"], np.concatenate([r["loss_mask"] for r in recs])))
    labels = [r["label"] for r in recs]
    check("JSONL labels and num_labels", np.array_equal(got["labels"], labels) and
          got["attrs"]["num_labels"] == max(labels) + 1 and got["attrs"]["tokenizer"] == "jsonl",
          str(got["attrs"]))

    mixed = jsonl_lines(6, 1000, label=False)
    for r in mixed[::2]:
        del r["loss_mask"]
    tokenize("--jsonl", write_jsonl("m.jsonl", mixed), "--vocab-size", "1000", "--eos", "--out", "m.h5")
    got = load("m.h5")
    want = np.concatenate([np.r_[r.get("loss_mask", np.ones(len(r["input_ids"]))), 1] for r in mixed])
    check("JSONL lines without loss_mask count every token; --eos appends a target EOS",
          np.array_equal(got["loss_mask"], want) and "labels" not in got
          and np.array_equal(got["tokens"], np.concatenate([r["input_ids"] + [2] for r in mixed])))

    bad = jsonl_lines(3, 1000)
    bad[1]["input_ids"][2] = 1000
    expect_fail("JSONL id out of range names line and value",
                [TOOL, "--jsonl", write_jsonl("r.jsonl", bad), "--vocab-size", "1000", "--out", "x.h5"],
                r"r\.jsonl line 2: input_ids\[2\] = 1000 is out of range")
    expect_fail("malformed JSONL line names the line",
                [TOOL, "--jsonl", write_jsonl("b.jsonl", jsonl_lines(2, 10), b'{"input_ids": [1, 2\n'),
                 "--vocab-size", "10", "--out", "x.h5"], r"b\.jsonl line 4: malformed JSON")
    short = jsonl_lines(2, 10)
    short[0]["loss_mask"] = short[0]["loss_mask"][:-1] + [1, 0]
    expect_fail("loss_mask length mismatch", [TOOL, "--jsonl", write_jsonl("s.jsonl", short), "--vocab-size", "10",
                                              "--out", "x.h5"], r"s\.jsonl line 1: \"loss_mask\" has \d+ entries")
    some = jsonl_lines(3, 10)
    del some[2]["label"]
    expect_fail("labels on some lines only", [TOOL, "--jsonl", write_jsonl("l.jsonl", some), "--vocab-size", "10",
                                              "--out", "x.h5"], r"l\.jsonl line 3: lacks a \"label\"")
    expect_fail("missing JSONL file", [TOOL, "--jsonl", "gone.jsonl", "--vocab-size", "10", "--out", "x.h5"],
                r"gone\.jsonl.*No such file")
    expect_fail("JSONL needs --vocab-size", [TOOL, "--jsonl", path, "--out", "x.h5"], r"--vocab-size")


def raw_tests():
    for width, dtype, vocab_size in ((2, "<u2", 65000), (4, "<u4", 200000)):
        # at least 8 tokens: the first document gets an out-of-range id at index 7 below
        docs = [rng.integers(0, vocab_size, int(rng.integers(8, 500))).astype(dtype) for _ in range(3)]
        files = [write(f"r{width}_{i}.bin", d.tobytes()) for i, d in enumerate(docs)]
        tokenize(f"--tokens-u{8 * width}", *files, "--vocab-size", str(vocab_size), "--out", "raw.h5")
        got = load("raw.h5")
        check(f"raw u{8 * width} files round trip, one document each",
              np.array_equal(got["tokens"], np.concatenate(docs)) and
              np.array_equal(got["doc_offsets"], np.cumsum([0] + [len(d) for d in docs])) and
              got["attrs"]["tokenizer"] == f"raw-u{8 * width}")
        big = docs[0].copy()
        big[7] = vocab_size
        expect_fail(f"raw u{8 * width} id >= --vocab-size rejected with its value",
                    [TOOL, f"--tokens-u{8 * width}", write("big.bin", big.tobytes()), "--vocab-size",
                     str(vocab_size), "--out", "x.h5"], rf"big\.bin.*token 7 .* is {vocab_size}, out of range")
    expect_fail("raw file of odd length", [TOOL, "--tokens-u16", write("odd.bin", b"\x01\x00\x02"),
                                           "--vocab-size", "10", "--out", "x.h5"], r"odd\.bin' has 3 bytes")


def main():
    vocab = load_vocab(TOKENIZER)
    text_tests(vocab)
    unicode_tests(vocab)
    tokenizer_errors()
    jsonl_tests()
    raw_tests()
    finish()


main()
