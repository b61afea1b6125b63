"""shardlora generate against transformers' greedy generate on the same weights: stories260K (a real
pretrained model), 64 new tokens from each of 3 prompts, without an adapter (also on 2 ranks), with an
adapter shardlora trained (PEFT's LoRA holding the same tensors), and on an NF4 base with double
quantization with an adapter trained on it (transformers holding the decoded weights). Then the
--out file, the text --tokenizer prints (decoded here from the llama2.c tokenizer file as llama2.c's
run.c decodes), and one case per kind of bad option."""
import os
import re
import struct
import subprocess
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("..", "../reference", "../gpu"):
    sys.path.insert(0, os.path.normpath(os.path.join(HERE, sub)))
from dequant_ref import load_quantized  # noqa: E402
from hf_llama import base_model, peft_model, set_adapter  # noqa: E402
from testlib import BIN, SHARED, check, expect_exit, finish, run, write_tokens  # noqa: E402

SHARDLORA = f"{BIN}/shardlora"
NEW = 64
TIE = 1e-4  # logits of float32 computations this close are a tie
LORA = dict(r=8, alpha=16, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


def prompts():
    """BOS alone, and BOS plus 6 and 15 ids drawn from numpy's generator (seeded)."""
    rng = np.random.default_rng(2026)
    return [[1]] + [[1] + rng.integers(3, 512, k).tolist() for k in (6, 15)]


def prompt_option(ps):
    return "--prompt-ids=" + ";".join(",".join(map(str, p)) for p in ps)


def shardlora_generate(model, ps, extra=(), np_=1, device="cpu"):
    """{prompt index: continuation ids} from the lines 'continuation K: a,b,c' on standard output."""
    p = run([SHARDLORA, "generate", f"--model={model}", prompt_option(ps), f"--max-new-tokens={NEW}",
             f"--device={device}"] + list(extra), np=np_)
    found = {int(k): [int(t) for t in v.split(",")] for k, v in re.findall(r"^continuation (\d+): ([\d,]+)$", p.stdout, re.M)}
    return [found.get(i) for i in range(len(ps))], p.stdout


def hf_generate(model, ps, eos):
    """transformers' greedy continuation of each prompt (one at a time, so no padding)."""
    with torch.no_grad():
        return [model.generate(torch.tensor([p]), max_new_tokens=NEW, do_sample=False, eos_token_id=eos,
                               pad_token_id=eos)[0, len(p):].tolist() for p in ps]


def compare(name, model, ps, got, eos, tie=TIE):
    """shardlora's continuations got must be transformers' greedy generate. Both compute in float32, so
    where the two largest logits lie within tie of each other either may win; from such a tie on the
    continuations may part. So each of shardlora's tokens is checked against transformers' logits along
    shardlora's own continuation (teacher forcing): it must be the largest, or within tie of it; and the
    continuation must equal transformers' generate up to the first such tie (whole, when there is none)."""
    want = hf_generate(model, ps, eos)
    problems, ties = [], []
    with torch.no_grad():
        for i, (p, g, w) in enumerate(zip(ps, got, want)):
            if not g or (len(g) < NEW and g[-1] != eos) or eos in g[:-1]:
                problems.append(f"prompt {i}: {g} is not {NEW} tokens or ended by eos {eos} alone")
                continue
            logits = model(torch.tensor([p + g])).logits[0, len(p) - 1:-1].double()
            top = logits.max(dim=1).values
            chosen = logits[torch.arange(len(g)), torch.tensor(g)]
            behind = (top - chosen).tolist()
            near = [j for j in range(len(g)) if sorted(logits[j].tolist())[-2] >= top[j] - tie]
            bad = [j for j in range(len(g)) if behind[j] > tie]
            if bad:
                j = bad[0]
                problems.append(f"prompt {i}, new token {j}: shardlora chose {g[j]}, {behind[j]:.3g} below "
                                f"transformers' largest logit ({int(logits[j].argmax())})")
            first_tie = near[0] if near else len(g)
            if g[:first_tie] != w[:first_tie] and not bad:
                problems.append(f"prompt {i}: shardlora {g}\n  transformers {w}\n  differ before the first tie ({first_tie})")
            ties += [(i, j) for j in near]
    if ties:
        print(f"# {name}: near-ties (top two logits within {tie}) at (prompt, new token) {ties}")
    check(name, not problems, "\n".join(problems))
    return want


def train_adapter(model, out, extra=()):
    """An adapter shardlora trains on model for 30 steps at a high rate, so it changes what is generated."""
    rng = np.random.default_rng(7)
    if not os.path.exists("train.h5"):
        write_tokens("train.h5", [np.concatenate([[1], np.tile(rng.integers(3, 512, 5), 12)]) for _ in range(32)], 512)
    run([SHARDLORA, "train", f"--model={model}", "--data=train.h5", f"--out={out}", "--steps=30", "--lr=1e-2",
         "--seq-len=64", "--micro-batch=4", f"--lora-r={LORA['r']}", f"--lora-alpha={LORA['alpha']}", "--device=cpu",
         "--log-every=30"] + list(extra), np=1)
    with h5py.File(f"{out}/adapter.h5", "r") as f:
        tensors = {}
        f["lora"].visititems(lambda n, o: tensors.__setitem__(f"lora/{n}", o[...]) if isinstance(o, h5py.Dataset) else None)
    return f"{out}/adapter.h5", tensors


def with_adapter(weights, c, tensors):
    model, params = peft_model(weights, c, LORA["r"], LORA["alpha"], LORA["targets"], "cpu", torch.float32)
    set_adapter(params, tensors)
    return model.eval()


def accepted():
    run([f"{BIN}/shardlora-import", "llama2c", f"{SHARED}/models/stories260K.bin", "stories.h5"])
    weights, c = load_quantized("stories.h5")
    eos, ps = int(c["eos_token_id"]), prompts()
    got, out = shardlora_generate("stories.h5", ps, ["--out=gen.h5"])
    compare(f"stories260K: {NEW} tokens from each of 3 prompts equal transformers' greedy generate",
            base_model(weights, c).eval(), ps, got, eos)
    got2, _ = shardlora_generate("stories.h5", ps, np_=2)
    check("2 ranks generate what 1 rank does", got2 == got, f"{got2}\n{got}")
    with h5py.File("gen.h5", "r") as f:
        offsets, tokens, plen = f["doc_offsets"][:], f["tokens"][:], f["prompt_lengths"][:]
        stored = [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(ps))]
        kind = f.attrs["shardlora_kind"]
    check("--out holds each prompt and its continuation", kind == "generation" and list(plen) == [len(p) for p in ps]
          and stored == [p + g for p, g in zip(ps, got)], f"{kind}, {plen}, {stored}")

    adapter, tensors = train_adapter("stories.h5", "run-f32")
    got_a, _ = shardlora_generate("stories.h5", ps, [f"--adapter={adapter}"])
    compare("with a trained adapter: equal to transformers + PEFT holding the same adapter",
            with_adapter(weights, c, tensors), ps, got_a, eos)
    check("the adapter changes what is generated", got_a != got, f"{got_a}")

    run([f"{BIN}/shardlora-quantize", "stories.h5", "nf4.h5", "--quant", "nf4", "--double-quant"])
    qweights, qc = load_quantized("nf4.h5")
    adapter, tensors = train_adapter("nf4.h5", "run-nf4")
    got_q, _ = shardlora_generate("nf4.h5", ps, [f"--adapter={adapter}"])
    compare("NF4 base with double quantization and its adapter: equal to transformers on the decoded weights",
            with_adapter(qweights, qc, tensors), ps, got_q, eos)


def llama2c_pieces(path):
    """The pieces of a llama2.c tokenizer.bin: int32 max length, then per token float32 score, int32
    length and the bytes."""
    with open(path, "rb") as f:
        data = f.read()
    pos, pieces = 4, []
    while pos < len(data):
        _, n = struct.unpack_from("<fi", data, pos)
        pieces.append(data[pos + 8:pos + 8 + n])
        pos += 8 + n
    return pieces


def decoded(pieces, prev, ids):
    """run.c's decode: after BOS (1) a piece's leading space goes; <0xNN> is the byte NN. Printed on one
    line as shardlora does: newline and backslash escaped, other control bytes as \\xNN."""
    out = b""
    for t in ids:
        p = pieces[t][1:] if prev == 1 and pieces[t].startswith(b" ") else pieces[t]
        m = re.fullmatch(rb"<0x([0-9A-F]{2})>", p)
        out += bytes([int(m.group(1), 16)]) if m else p
        prev = t
    text = ""
    for ch in out:
        text += ("\\n" if ch == 10 else "\\\\" if ch == 92 else f"\\x{ch:02x}" if ch < 32 or ch == 127 else chr(ch))
    return text.encode("latin-1")


def tokenizer_text():
    """A random model of the 32000-token LLaMA vocabulary (shardlora-init), continuing two prompts that
    start with BOS."""
    tok = f"{SHARED}/data/llama2c_tokenizer.bin"
    run([f"{BIN}/shardlora-init", "big.h5", "--vocab", "32000", "--hidden", "64", "--heads", "4", "--kv-heads", "2",
         "--intermediate", "96", "--layers", "1", "--max-pos", "64", "--std", "0.5", "--seed", "5", "--tie"])
    ps = [[1, 450, 4996, 17354, 1701, 29916], [1, 13, 29871, 259]]
    p = subprocess.run([SHARDLORA, "generate", "--model=big.h5", prompt_option(ps), "--max-new-tokens=24",
                        "--device=cpu", f"--tokenizer={tok}"], capture_output=True, timeout=300)
    lines = dict(re.findall(rb"^((?:prompt|continuation)(?: text)? \d+): (.*)$", p.stdout, re.M))
    pieces, problems = llama2c_pieces(tok), []
    for i, prompt in enumerate(ps):
        cont = [int(t) for t in lines.get(f"continuation {i}".encode(), b"").split(b",") if t]
        want = {f"prompt text {i}": decoded(pieces, 1, prompt[1:]),  # BOS itself is not printed
                f"continuation text {i}": decoded(pieces, prompt[-1], cont)}
        for label, text in want.items():
            if lines.get(label.encode()) != text:
                problems.append(f"{label}: printed {lines.get(label.encode())!r}, expected {text!r}")
        if len(cont) != 24:
            problems.append(f"continuation {i}: {cont}")
    check("--tokenizer prints each prompt and continuation as llama2.c decodes them", p.returncode == 0 and not problems,
          "\n".join(problems) + p.stderr.decode())


def refused():
    base = [SHARDLORA, "generate", "--model=stories.h5", "--device=cpu"]
    expect_exit("--prompt-ids is required", base, 2, r"option --prompt-ids is required for 'generate'")
    expect_exit("a prompt id that is not a number is named with its prompt and position", base + ["--prompt-ids=1,2;1,x"],
                1, r"option --prompt-ids: prompt 1, position 1: expected a token id, found 'x'")
    expect_exit("an empty prompt is refused", base + ["--prompt-ids=1,2;"], 1,
                r"option --prompt-ids: prompt 1, position 0: expected a token id, found ''")
    expect_exit("a prompt id outside the vocabulary is refused", base + ["--prompt-ids=1,512"], 1,
                r"token id 512 \(prompt 0, position 1\) is outside the vocabulary \[0, 512\) of model stories\.h5")
    expect_exit("a prompt that would outgrow the model's positions is refused",
                base + ["--prompt-ids=1,2,3", "--max-new-tokens=510"], 1,
                r"option --max-new-tokens=510: prompt 0 has 3 tokens, and 3 \+ 510 exceeds the model's "
                r"max_position_embeddings \(512\)")
    expect_exit("a tokenizer of another vocabulary size is refused",
                base + ["--prompt-ids=1", f"--tokenizer={SHARED}/data/llama2c_tokenizer.bin"], 1,
                r"option --tokenizer: .*llama2c_tokenizer\.bin has 32000 tokens, but model stories\.h5 has vocab_size 512")
    expect_exit("--data does not apply to generate", base + ["--prompt-ids=1", "--data=train.h5"], 2,
                r"option --data does not apply to 'generate'")


def main():
    accepted()
    tokenizer_text()
    refused()
    finish()


if __name__ == "__main__":
    main()
