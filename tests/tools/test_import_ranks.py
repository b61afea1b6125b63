"""shardlora-import hf on several ranks and threads: the file is byte-identical for 1, 2 and 3 ranks
and for 1 and 2 threads (bf16 kept, --dtype f32, nf4 with double quantization, fp4, int8, and a
float32 source rounded to bf16 before nf4), its quantized groups equal shardlora-quantize's of the
same model, and a problem on one rank's part ends every rank with the message a single rank
gives, exit status 1 and no output left.

The model is shaped so the split is exercised: tensors are cut into pieces of 131072 elements
(quantized: whole groups of 256 blocks, 8 of them a piece at blocksize 64), rank r of R takes
pieces [P r/R, P (r+1)/R), and a tensor of fewer pieces than ranks goes whole to rank i mod R
(writer.c). The embedding and LM head (8000 x 128) are 8 float pieces, the MLP weights (4000 x
128) 4 pieces with a partial last group, the attention weights and norms one piece each."""
import filecmp
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, SHARED, check, expect_exit, finish, run  # noqa: E402
from tools.hf_checkpoint import write_checkpoint  # noqa: E402

IMPORT = os.path.join(BIN, "shardlora-import")
QUANTIZE = os.path.join(BIN, "shardlora-quantize")
PIECE = 131072
CFG = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=128, intermediate_size=4000,
           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=8000,
           max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
           bos_token_id=1, eos_token_id=2, hidden_act="silu")


def model(dtype, seed):
    """Random tensors in the order of the model's table (HF names), normal with std 0.05."""
    g = torch.Generator().manual_seed(seed)
    D, F, V, kv = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"], 64

    def rnd(*shape):
        return (0.05 * torch.randn(*shape, generator=g)).to(dtype)
    w = {"model.embed_tokens.weight": rnd(V, D)}
    for l in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = rnd(D)
        for name, shape in (("q_proj", (D, D)), ("k_proj", (kv, D)), ("v_proj", (kv, D)), ("o_proj", (D, D))):
            w[p + f"self_attn.{name}.weight"] = rnd(*shape)
        w[p + "post_attention_layernorm.weight"] = rnd(D)
        for name, shape in (("gate_proj", (F, D)), ("up_proj", (F, D)), ("down_proj", (D, F))):
            w[p + f"mlp.{name}.weight"] = rnd(*shape)
    w["model.norm.weight"] = rnd(D)
    w["lm_head.weight"] = rnd(V, D)
    return w


def import_run(src, out, opts, np_=1, threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = ["mpirun", "-np", str(np_), "--oversubscribe", "--bind-to", "none", "-x", "OMP_NUM_THREADS",
           IMPORT, "hf", src, out, *opts]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def h5diff(a, b):
    p = run(["h5diff", a, b], check_rc=False)
    return p.returncode == 0, p.stdout[-1500:] + p.stderr[-500:]


def owner_of_piece(index, pieces, ranks):
    """The rank whose part holds piece index of a tensor of that many pieces (the writer's rule)."""
    return next(r for r in range(ranks) if pieces * r // ranks <= index < pieces * (r + 1) // ranks)


bf16 = model(torch.bfloat16, seed=1)
write_checkpoint("bf16", CFG, bf16, shards=2)
f32 = model(torch.float32, seed=2)
write_checkpoint("f32", CFG, f32)
CASES = [("bf16 kept", "bf16", []), ("--dtype f32", "bf16", ["--dtype", "f32"]),
         ("nf4 + double quantization", "bf16", ["--quantize", "nf4", "--double-quant"]),
         ("fp4", "bf16", ["--quantize", "fp4"]), ("int8 blocksize 256", "bf16", ["--quantize", "int8", "--blocksize", "256"]),
         ("float32 rounded to bf16, then nf4 + double quantization", "f32",
          ["--dtype", "bf16", "--quantize", "nf4", "--double-quant"])]

for label, src, opts in CASES:
    tag = label.split()[0].replace("-", "")
    one = f"{tag}.np1.h5"
    p = import_run(src, one, opts)
    check(f"{label}: the summary names 1 rank and the rate", "on 1 rank" in p.stdout and "MB/s" in p.stdout, p.stdout)
    for np_, threads in ((1, 2), (2, 1), (3, 1), (2, 2)):
        other = f"{tag}.np{np_}.t{threads}.h5"
        import_run(src, other, opts, np_, threads)
        same, diff = h5diff(one, other)
        check(f"{label}: {np_} rank(s) x {threads} thread(s) give the file of 1 x 1, byte for byte (cmp) and h5diff",
              same and filecmp.cmp(one, other, shallow=False), diff)

# float values as stored, and the dtype attribute of each quantized group
with h5py.File("bf16.np1.h5", "r") as f:
    got = f["model/layers/1/mlp/down_proj/weight"][...]
    ok_values = np.array_equal(got, bf16["model.layers.1.mlp.down_proj.weight"].float().numpy())
with h5py.File("nf4.np1.h5", "r") as f:
    g = f["model/layers/0/mlp/up_proj/weight"]
    ok_group = (g.attrs["dtype"] in (b"bfloat16", "bfloat16") and list(g.attrs["shape"]) == [4000, 128]
                and g["absmax"].dtype == np.uint8 and g["nested_absmax"].shape == (32,))
check("bf16 kept: values as stored; nf4 groups of the 4000 x 128 weights: 32 nested absmax (31.25 groups), bf16",
      ok_values and ok_group)

# the quantized files equal shardlora-quantize's of the imported bf16 model (every dataset, every attribute)
for tag, qopts in (("nf4", ["--quant", "nf4", "--double-quant"]), ("fp4", ["--quant", "fp4"]),
                   ("int8", ["--quant", "int8", "--blocksize", "256"])):
    run([QUANTIZE, "bf16.np1.h5", f"{tag}.quantize.h5", *qopts])
    same, diff = h5diff(f"{tag}.np3.t1.h5", f"{tag}.quantize.h5")
    with h5py.File(f"{tag}.np3.t1.h5", "r") as a, h5py.File(f"{tag}.quantize.h5", "r") as b:
        members = []
        a.visititems(lambda n, o: members.append(n) if isinstance(o, h5py.Dataset) and "/weight/" in n else None)
        bytes_equal = all(a[m][...].tobytes() == b[m][...].tobytes() for m in members)
    check(f"{tag}: import --quantize on 3 ranks equals shardlora-quantize of the bf16 import ({len(members)} members, "
          "h5diff and bytes)", same and bytes_equal and len(members) >= 28, diff)

# --- problems on one rank's part ---
V, D = CFG["vocab_size"], CFG["hidden_size"]
head_pieces = V * D // PIECE + 1
last = V * D - 1
nan_last = dict(bf16)
nan_last["lm_head.weight"] = bf16["lm_head.weight"].clone()
nan_last["lm_head.weight"].view(-1)[last] = float("nan")
write_checkpoint("nan-last", CFG, nan_last)
want_rank = owner_of_piece(head_pieces - 1, head_pieces, 3)
for opts in ([], ["--quantize", "nf4", "--double-quant"]):
    p = run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", IMPORT, "hf", "nan-last", "bad.h5", *opts],
            check_rc=False)
    errors = [l for l in p.stderr.splitlines() if "error:" in l]
    check(f"a NaN in the last rank's part of lm_head.weight{' (--quantize nf4)' if opts else ''}: exit 1, one message "
          f"from rank {want_rank} naming file, tensor and index, no OUT or OUT.partial left",
          p.returncode == 1 and len(errors) == 1 and
          f"rank {want_rank}: error: " in errors[0] and
          f"nan-last/model.safetensors: tensor lm_head.weight: value nan at flat index {last} (row {V - 1}, column "
          f"{D - 1}) is not finite" in errors[0]
          and not os.path.exists("bad.h5") and not os.path.exists("bad.h5.partial"), p.stderr[-3000:])

# two bad values on different ranks' parts of one quantized tensor, and a later tensor bad too: the first is named
F = CFG["intermediate_size"]
two = dict(bf16)
for name, at in (("model.layers.0.mlp.gate_proj.weight", (F * D - 5, 1000)), ("model.layers.1.self_attn.q_proj.weight", (7,))):
    two[name] = bf16[name].clone()
    for i in at:
        two[name].view(-1)[i] = float("inf")
write_checkpoint("two-bad", CFG, two)
expect_exit("NaN/Inf on rank 0's and rank 2's parts of gate_proj and in a later tensor: the first of gate_proj is named",
            [IMPORT, "hf", "two-bad", "bad.h5", "--quantize", "nf4", "--double-quant"], 1,
            r"rank 0: error: .*tensor model\.layers\.0\.mlp\.gate_proj\.weight: value inf at flat index 1000 \(row 7, "
            r"column 104\) is not finite", np=3)
check("... and no output is left", not os.path.exists("bad.h5") and not os.path.exists("bad.h5.partial"))

# float16 overflow, found after the conversion on the second rank's part of the embedding
huge = dict(f32)
huge["model.embed_tokens.weight"] = f32["model.embed_tokens.weight"].clone()
huge["model.embed_tokens.weight"].view(-1)[PIECE * 5 + 3] = 1e6
write_checkpoint("huge", CFG, huge)
expect_exit("--dtype f16 overflow on 2 ranks: named after the conversion, by the rank whose part holds it",
            [IMPORT, "hf", "huge", "bad.h5", "--dtype", "f16"], 1,
            rf"rank {owner_of_piece(5, V * D // PIECE + 1, 2)}: error: .*tensor model\.embed_tokens\.weight: value inf at "
            rf"flat index {PIECE * 5 + 3} .* after conversion to float16", np=2)

# problems every rank finds alike: said once, by rank 0
bad_dtype = dict(bf16, **{"model.norm.weight": torch.ones(D, dtype=torch.int64)})
write_checkpoint("bad-dtype", CFG, bad_dtype)
for label, ranks, args, want in (
        ("an unsupported dtype", 3, ["hf", "bad-dtype", "bad.h5"],
         "bad-dtype/model.safetensors: tensor model.norm.weight has dtype I64 (supported: F32, F16, BF16)"),
        ("an unknown option", 2, ["hf", "bf16", "bad.h5", "--frobnicate"],
         "unknown option '--frobnicate' (see shardlora-import --help)")):
    p = run(["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", IMPORT, *args], check_rc=False)
    errors = [l for l in p.stderr.splitlines() if "error:" in l]
    check(f"{label} on {ranks} ranks: exit 1, said once by rank 0, no output",
          p.returncode == 1 and len(errors) == 1 and f"rank 0: error: {want}" in errors[0]
          and not os.path.exists("bad.h5.partial"), p.stderr[-2000:])

# llama2.c: the same file on 1 and 3 ranks (rows of wq and wk permuted as they are read)
stories = os.path.join(SHARED, "models", "stories260K.bin")
if os.path.exists(stories):
    for tag, opts in (("float", []), ("int8", ["--quantize", "int8", "--blocksize", "64"])):
        run([IMPORT, "llama2c", stories, f"l2c.{tag}.np1.h5", *opts])
        run([IMPORT, "llama2c", stories, f"l2c.{tag}.np3.h5", *opts], np=3)
        check(f"llama2c {tag}: 3 ranks write 1 rank's file (cmp)",
              filecmp.cmp(f"l2c.{tag}.np1.h5", f"l2c.{tag}.np3.h5", shallow=False))
finish()
