"""shardlora-import hf of bitsandbytes 4-bit checkpoints that transformers and bitsandbytes make
themselves: stories260K (a real pretrained model) saved by transformers, loaded with
BitsAndBytesConfig(load_in_4bit=True) on the CPU in NF4 and FP4, with and without double
quantization, and saved again (save_pretrained). The imported model file must hold the same codes and
statistics as shardlora-quantize makes of the float weights, and evaluate to the loss transformers
computes with the 4-bit model. An 8-bit checkpoint (load_in_8bit) is imported dequantized, which must
be bitsandbytes' own int8_vectorwise_dequant bit for bit. Then one case per kind of bad checkpoint.

Where bitsandbytes itself is not one function: on the CPU, quantize_4bit is its torch fallback
(bitsandbytes/backends/default/ops.py), which buckets x * (1 / absmax) at the float32 midpoints of the
code table, where its CUDA kernel (and shardlora, bit-compatible with it) compares with decimal
literals; the two differ for values within a few ulps of a threshold, and for FP4 the fallback may
give a small value the zero of the other sign (code 0 for 8, both decoding to 0). Such codes may
differ, and are counted and reported; every other code must be equal. Its CPU double quantization
(the C++ quantize_blockwise) finds the 8-bit code by an approximate lookup, so an absmax code may be
the neighbour of shardlora's (the CUDA kernel's nearest) for a value near their midpoint: allowed
within 1e-4 of it on the code's scale [-1, 1] (seen: 5e-7 to 8.8e-6, where the code is densest). The AVX512-BF16 repacking of the CPU forward is switched off,
as it needs out_features divisible by 32 and stories260K's MLP has 172. The double-quantization offset is
bitsandbytes' float mean, which may differ from shardlora's exact one by up to 2 ulps: the offset is
compared with that bound, and the 8-bit absmax codes and nested absmax are compared with shardlora's
encoder (as bnb_encode_ref transcribes it) given bitsandbytes' offset, and with shardlora-quantize's
own file wherever the two offsets are equal."""
import json
import os
import shutil
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("..", "../reference", "../gpu"):
    sys.path.insert(0, os.path.normpath(os.path.join(HERE, sub)))
import bnb_encode_ref as ref  # noqa: E402
from dequant_ref import load_quantized  # noqa: E402
from hf_llama import base_model  # noqa: E402
from testlib import BIN, SHARED, check, check_close, expect_exit, finish, run, write_tokens  # noqa: E402

IMPORT, QUANTIZE = f"{BIN}/shardlora-import", f"{BIN}/shardlora-quantize"
F32 = np.float32
VARIANTS = [("nf4", True), ("nf4", False), ("fp4", True), ("fp4", False)]


def float_checkpoints():
    """stories.h5 (shardlora-import llama2c) and the same weights saved by transformers in hf-f32/, and
    both rounded to bfloat16 (stories-bf16.h5, hf-bf16/); the weights of each, by HF name."""
    run([IMPORT, "llama2c", f"{SHARED}/models/stories260K.bin", "stories.h5"])
    run([IMPORT, "llama2c", f"{SHARED}/models/stories260K.bin", "stories-bf16.h5", "--dtype", "bf16"])
    weights, c = load_quantized("stories.h5")
    base_model(weights, c).save_pretrained("hf-f32")
    base_model(weights, c).to(torch.bfloat16).save_pretrained("hf-bf16")
    return {"f32": weights, "bf16": load_quantized("stories-bf16.h5")[0]}


def bnb_checkpoint(kind, dq, device, dtype):
    """transformers' 4-bit model of hf-f32 or hf-bf16 (quantized by bitsandbytes on device), saved in a
    directory; the model computes in float32."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=kind, bnb_4bit_use_double_quant=dq,
                           bnb_4bit_compute_dtype=torch.float32)
    torch_dtype = torch.float32 if dtype == "f32" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(f"hf-{dtype}", quantization_config=q, dtype=torch_dtype,
                                                 device_map=device)
    for m in model.modules():  # its AVX512-BF16 repacking needs out_features divisible by 32 (172 is not)
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
    out = f"hf-{kind}{'-dq' if dq else ''}{'-bf16' if dtype == 'bf16' else ''}"
    model.save_pretrained(out)
    return model, out


def near_threshold(v, kind):
    """Scaled values within 4 float32 ulps of one of the CUDA kernel's thresholds (the CPU fallback's
    midpoints lie that close to them), where the two bitsandbytes encoders may disagree."""
    lits = ref.NF4_LITERALS if kind == "nf4" else np.concatenate([ref.FP4_LITERALS, -ref.FP4_LITERALS])
    a = v if kind == "nf4" else np.abs(v)
    gap = np.abs(a[:, None] - lits[None, :]).min(axis=1)
    return gap <= 4 * np.spacing(np.abs(a).astype(F32) + F32(1e-30))


def nibbles(packed, n):
    return np.stack([packed >> 4, packed & 15], 1).reshape(-1)[:n]


def compare_weight(path, x, imp, sl, kind, dq, stats, cpu):
    """One projection: the imported group imp against shardlora-quantize's sl and the float weight x.
    cpu: bitsandbytes quantized on the CPU, whose differences from its CUDA kernels (above) are allowed."""
    for a in ("quant_type", "blocksize", "dtype"):
        if imp.attrs[a] != sl.attrs[a]:
            return f"{path}: attribute {a} is {imp.attrs[a]!r}, shardlora-quantize wrote {sl.attrs[a]!r}"
    if list(imp.attrs["shape"]) != list(sl.attrs["shape"]):
        return f"{path}: shape {list(imp.attrs['shape'])}, shardlora-quantize wrote {list(sl.attrs['shape'])}"
    if not np.array_equal(imp["code"][:].view(np.uint32), sl["code"][:].view(np.uint32)):
        return f"{path}: the code table differs from shardlora-quantize's"
    bs = int(sl.attrs["blocksize"])
    _, r = ref.blocks(x, bs)
    v = ref.scaled(x.reshape(-1), r)
    a, b = nibbles(imp["packed"][:], x.size), nibbles(sl["packed"][:], x.size)
    differ = np.nonzero(a != b)[0]
    code = sl["code"][:]
    signed_zero = code[a[differ]] == code[b[differ]]  # FP4's codes 0 and 8 both decode to 0
    allowed = (signed_zero | near_threshold(v[differ], kind)) & cpu
    if not allowed.all():
        i = differ[~allowed][0]
        return (f"{path}: element {i} (x / absmax = {v[i]!r}, not near a threshold) has code {a[i]} from bitsandbytes "
                f"but {b[i]} from shardlora-quantize")
    stats["codes"] += x.size
    stats["midpoint_codes"] += int((~signed_zero).sum())
    stats["signed_zeros"] += int(signed_zero.sum())
    if not dq:
        if not np.array_equal(imp["absmax"][:].view(np.uint32), sl["absmax"][:].view(np.uint32)):
            return f"{path}: absmax differs from shardlora-quantize's (float32, bit for bit)"
        return None
    off_imp, off_sl = F32(imp.attrs["offset"]), F32(sl.attrs["offset"])
    ulps = abs(int(np.array(off_imp).view(np.int32)) - int(np.array(off_sl).view(np.int32)))
    if ulps > 2:
        return f"{path}: offset {off_imp!r} is {ulps} ulps from shardlora-quantize's {off_sl!r} (at most 2 expected)"
    code8 = sl["nested_code"][:]
    want = ref.encode(x, kind, bs, True, code8, offset=off_imp)
    if not np.array_equal(imp["nested_absmax"][:], want["nested_absmax"]):
        return f"{path}: nested_absmax differs from shardlora's with bitsandbytes' offset {off_imp!r}"
    a, b = imp["absmax"][:], want["absmax"]
    differ = np.nonzero(a != b)[0]
    if differ.size:
        absmax, _ = ref.blocks(x, bs)
        centred = (absmax - off_imp).astype(F32)
        _, nr = ref.blocks(centred, 256)
        v = ref.scaled(centred, nr)[differ]
        lo, hi = np.minimum(code8[a[differ]], code8[b[differ]]), np.maximum(code8[a[differ]], code8[b[differ]])
        adjacent = np.abs(np.searchsorted(code8, lo) - np.searchsorted(code8, hi)) == 1
        near = np.abs(v - (lo + hi) / 2) <= 1e-4  # on the scale of the code, [-1, 1]
        if not cpu or not (adjacent & near).all():
            i = differ[~(adjacent & near & cpu)][0]
            return (f"{path}: absmax code {i} is {a[i]} from bitsandbytes but {b[i]} from shardlora's encoding with "
                    f"bitsandbytes' offset {off_imp!r}, and the value is not near their midpoint")
        stats["midpoint_absmax"] += differ.size
    stats["absmax_codes"] += a.size
    if off_imp == off_sl:
        stats["same_offset"] += 1
        if not np.array_equal(imp["nested_absmax"][:], sl["nested_absmax"][:]) or not np.array_equal(want["absmax"], sl["absmax"][:]):
            return f"{path}: the double quantization differs from shardlora-quantize's, with the same offset"
    return None


def compare_files(imported, quantized, weights, kind, dq, cpu):
    stats = {"codes": 0, "midpoint_codes": 0, "signed_zeros": 0, "absmax_codes": 0, "midpoint_absmax": 0, "same_offset": 0, "weights": 0}
    problems = []
    with h5py.File(imported, "r") as fi, h5py.File(quantized, "r") as fs:
        if fi.attrs["quantization"] != fs.attrs["quantization"]:
            problems.append(f"root attribute quantization {fi.attrs['quantization']!r}, shardlora-quantize "
                            f"{fs.attrs['quantization']!r}")

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "shape" in obj.attrs:
                x = weights[name.replace("/", ".")].numpy().astype(F32)
                p = compare_weight(name, x, obj, fs[name], kind, dq, stats, cpu)
                stats["weights"] += 1
                if p:
                    problems.append(p)
            elif isinstance(obj, h5py.Dataset) and "shape" not in obj.parent.attrs:
                if not np.array_equal(obj[...], fs[name][...]):
                    problems.append(f"{name}: the float tensor differs from shardlora-quantize's")
        fi.visititems(visit)
    if stats["weights"] != 35:
        problems.append(f"{stats['weights']} quantized groups, expected 35 (7 projections x 5 layers)")
    return problems, stats


def same_datasets(a, b):
    """The paths whose datasets differ between two files (or are in one only)."""
    found = {}
    for path in (a, b):
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, o, p=path: found.setdefault(n, {}).__setitem__(p, o[...].tobytes())
                         if isinstance(o, h5py.Dataset) else None)
    return [n for n, v in found.items() if len(set(v.values())) != 1 or len(v) != 2]


def sharded_copy(model, out):
    """The 4-bit model saved again in shards of 100 kB (model.safetensors.index.json), imported: it must give
    the same datasets as the single-file checkpoint."""
    model.save_pretrained(f"{out}-sharded", max_shard_size="100KB")
    shards = [f for f in os.listdir(f"{out}-sharded") if f.endswith(".safetensors")]
    run([IMPORT, "hf", f"{out}-sharded", f"{out}-sharded.h5"])
    differ = same_datasets(f"{out}.h5", f"{out}-sharded.h5")
    check(f"{out} in {len(shards)} shards imports to the same datasets as in one file", len(shards) > 1 and not differ,
          f"{len(shards)} shards; differing: {differ[:5]}")


def hf_loss(model, docs, device):
    """Mean next-token cross-entropy of the documents, as transformers computes it (4-bit model)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for d in docs:
            ids = torch.tensor(d, dtype=torch.long, device=device)[None]
            logits = model(ids).logits[0, :-1].double()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += len(d) - 1
    return total / count


def eval_loss(model_file):
    run([f"{BIN}/shardlora", "eval", f"--model={model_file}", "--data=docs.h5", "--out=eval.h5", "--seq-len=128",
         "--device=cpu"], np=1)
    with h5py.File("eval.h5", "r") as f:
        return float(f["eval/loss"][()])


def compare_variant(label, model, out, float_file, weights, kind, dq, device):
    """Import the checkpoint out and compare it with shardlora-quantize's file of the same float weights."""
    with open(f"{out}/config.json") as f:
        qc = json.load(f)["quantization_config"]
    check(f"{label}: transformers saved a bitsandbytes 4-bit checkpoint", qc.get("load_in_4bit") is True
          and qc.get("bnb_4bit_quant_type") == kind, json.dumps(qc))
    run([IMPORT, "hf", out, f"{out}.h5"])
    fmt = ["--quant", kind] + (["--double-quant"] if dq else [])
    run([QUANTIZE, float_file, f"q-{out}.h5"] + fmt)
    problems, stats = compare_files(f"{out}.h5", f"q-{out}.h5", weights, kind, dq, device == "cpu")
    print(f"# {label}: {stats['codes']} codes, {stats['midpoint_codes']} differ at near-threshold values "
          f"(bitsandbytes' CPU midpoints against its CUDA literals), {stats['signed_zeros']} are the other zero "
          f"(FP4's -0 for +0: the CPU fallback takes no sign from x)"
          + (f"; {stats['midpoint_absmax']} of {stats['absmax_codes']} absmax codes differ near a midpoint of the "
             f"dynamic code; offset equal to shardlora's exact mean in {stats['same_offset']} of 35 weights"
             if dq else ""))
    check(f"{label}: imported codes and statistics are shardlora-quantize's (where defined)", not problems,
          "\n".join(problems[:8]))
    check(f"{label}: codes differ only near thresholds, fewer than 1 in 10^4 (absmax codes 1 in 10^2)",
          stats["midpoint_codes"] * 10_000 < stats["codes"] and stats["midpoint_absmax"] * 100 <= stats["absmax_codes"],
          f"{stats}")


def accepted_checkpoints(weights, device):
    rng = np.random.default_rng(13)
    docs = [np.concatenate([[1], rng.integers(3, 512, rng.integers(40, 100))]) for _ in range(5)]
    write_tokens("docs.h5", docs, 512)
    for kind, dq in VARIANTS:
        label = f"{kind}{' with double quantization' if dq else ''}"
        model, out = bnb_checkpoint(kind, dq, device, "f32")
        compare_variant(label, model, out, "stories.h5", weights["f32"], kind, dq, device)
        if (kind, dq) == VARIANTS[0]:
            sharded_copy(model, out)
        check_close(f"{label}: shardlora eval of the imported file equals transformers' loss of the 4-bit model",
                    eval_loss(f"{out}.h5"), hf_loss(model, docs, device), 1e-5)
    # bfloat16 weights: quant_state dtype "bfloat16"; no loss compared (transformers' norms and embeddings
    # then compute in bfloat16)
    model, out = bnb_checkpoint("nf4", True, device, "bf16")
    compare_variant("nf4 with double quantization of bfloat16 weights", model, out, "stories-bf16.h5",
                    weights["bf16"], "nf4", True, device)


def int8_checkpoint(weights, device):
    """load_in_8bit (LLM.int8): imported by dequantizing, which must give bitsandbytes' own
    int8_vectorwise_dequant bit for bit, and the loss of transformers' float model holding those weights."""
    import bitsandbytes.functional as bnbf
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    model = AutoModelForCausalLM.from_pretrained("hf-f32", quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                 dtype=torch.float32, device_map=device)
    model.save_pretrained("hf-int8")
    run([IMPORT, "hf", "hf-int8", "int8.h5"])
    st = load_file("hf-int8/model.safetensors")
    dequantized = {name[:-4] + ".weight": bnbf.int8_vectorwise_dequant(st[name[:-4] + ".weight"], st[name])
                   for name in st if name.endswith(".SCB")}
    problems = []
    with h5py.File("int8.h5", "r") as f:
        for name, want in dequantized.items():
            got = f[name.replace(".", "/")][...]
            if got.dtype != np.float32 or not np.array_equal(got.view(np.uint32), want.numpy().view(np.uint32)):
                problems.append(f"{name}: differs from int8_vectorwise_dequant")
        if "quantization" in f.attrs:
            problems.append(f"root attribute quantization {f.attrs['quantization']!r} (expected a float file)")
    check("int8: imported weights are bitsandbytes' int8_vectorwise_dequant of the checkpoint, bit for bit",
          len(dequantized) == 35 and not problems, f"{len(dequantized)} weights; " + "\n".join(problems[:5]))
    float_weights = dict(weights, **{k: v.double() for k, v in dequantized.items()})
    _, c = load_quantized("stories.h5")
    check_close("int8: shardlora eval of the imported file equals transformers' loss with the dequantized weights",
                eval_loss("int8.h5"), hf_loss(base_model(float_weights, c).to(device), docs_of("docs.h5"), device), 1e-5)
    run([IMPORT, "hf", "hf-int8", "int8-q.h5", "--quantize", "int8"])
    run([QUANTIZE, "int8.h5", "int8-q2.h5", "--quant", "int8"])
    differ = same_datasets("int8-q.h5", "int8-q2.h5")
    check("int8: import --quantize int8 gives what shardlora-quantize makes of the dequantized file", not differ,
          f"differing: {differ[:5]}")


def docs_of(path):
    with h5py.File(path, "r") as f:
        tokens, offsets = f["tokens"][:], f["doc_offsets"][:]
    return [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def edited(src, out, tensors=None, config=None, drop=()):
    """A copy of checkpoint directory src with some tensors replaced (or dropped) and config.json edited."""
    from safetensors.numpy import load_file, save_file
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    st = load_file(f"{src}/model.safetensors")
    for name in drop:
        del st[name]
    st.update(tensors or {})
    save_file(st, f"{out}/model.safetensors", metadata={"format": "pt"})
    if config:
        with open(f"{src}/config.json") as f:
            cfg = json.load(f)
        config(cfg)
        with open(f"{out}/config.json", "w") as f:
            json.dump(cfg, f)
    return out


def refused(name, directory, pattern, extra=()):
    expect_exit(name, [IMPORT, "hf", directory, "bad.h5"] + list(extra), 1, pattern)
    check(f"{name}: no output file is left", not os.path.exists("bad.h5") and not os.path.exists("bad.h5.partial"))


def bad_checkpoints():
    from safetensors.numpy import load_file
    w = "model.layers.1.self_attn.q_proj.weight"
    st = load_file("hf-nf4-dq/model.safetensors")
    qmap = st[f"{w}.quant_map"].copy()
    qmap[3] = np.nextafter(qmap[3], F32(1))
    refused("a quant_map one ulp off the NF4 table is refused, naming the tensor and entry",
            edited("hf-nf4-dq", "bad-qmap", {f"{w}.quant_map": qmap}),
            rf"model\.safetensors: tensor {w}\.quant_map: entry 3 is .*expected .*bitsandbytes' NF4 table")
    nested = st[f"{w}.nested_absmax"].copy()
    nested[0] = np.nan
    refused("a NaN nested_absmax is refused", edited("hf-nf4-dq", "bad-nested", {f"{w}.nested_absmax": nested}),
            rf"tensor {w}\.nested_absmax: value nan at index 0 \(expected a finite scale >= 0\)")
    refused("an absmax of the wrong length is refused, naming both lengths",
            edited("hf-nf4-dq", "bad-absmax", {f"{w}.absmax": st[f"{w}.absmax"][:-1]}),
            rf"tensor {w}\.absmax is U8 with 63 elements \(expected U8 with 64: one 8-bit code per block")
    refused("a missing nested_quant_map is refused", edited("hf-nf4-dq", "bad-missing", drop=[f"{w}.nested_quant_map"]),
            rf"tensor {w}\.nested_quant_map is missing \(a bitsandbytes 4-bit weight {w} stores it beside its codes\)")
    key = f"{w}.quant_state.bitsandbytes__nf4"
    state = json.loads(bytes(st[key]).decode())
    state["shape"] = [64, 32]
    refused("a quant state of another shape is refused, naming the expected one",
            edited("hf-nf4-dq", "bad-shape", {key: np.frombuffer(json.dumps(state).encode(), np.uint8)}),
            rf"tensor {key}: shape is not \[64, 64\], the one config.json gives this weight")
    state = json.loads(bytes(st[key]).decode())
    state["blocksize"] = 32
    refused("a block size shardlora does not support is refused",
            edited("hf-nf4-dq", "bad-blocksize", {key: np.frombuffer(json.dumps(state).encode(), np.uint8)}),
            rf"tensor {key}: blocksize 32 with double quantization: ")
    st4 = load_file("hf-fp4/model.safetensors")
    absmax = st4[f"{w}.absmax"].copy()
    absmax[5] = np.inf
    refused("an infinite absmax (no double quantization) is refused, naming its index",
            edited("hf-fp4", "bad-inf", {f"{w}.absmax": absmax}),
            rf"tensor {w}\.absmax: value inf at index 5 \(expected a finite scale >= 0\)")

    st8 = load_file("hf-int8/model.safetensors")
    m = w[:-len(".weight")]
    scb = st8[f"{m}.SCB"].copy()
    scb[2] = np.nan
    refused("an 8-bit weight's NaN SCB is refused, naming its row",
            edited("hf-int8", "bad-scb", {f"{m}.SCB": scb}),
            rf"tensor {m}\.SCB: value nan at index 2 \(expected a finite scale >= 0\)")
    refused("an 8-bit weight without its SCB is refused", edited("hf-int8", "bad-noscb", drop=[f"{m}.SCB"]),
            rf"tensor {m}\.SCB is missing \(a bitsandbytes 8-bit weight {w} stores it beside its codes\)")

    def gptq(cfg):
        cfg["quantization_config"]["quant_method"] = "gptq"
    refused("another quantization method is refused, naming it", edited("hf-nf4-dq", "bad-method", config=gptq),
            r"config\.json: quantization_config\.quant_method is gptq \(only \"bitsandbytes\" 4-bit and 8-bit")
    refused("an 8-bit weight in another layout than row-major is refused",
            edited("hf-int8", "bad-format", {f"{m}.weight_format": np.array(1, np.uint8)}),
            rf"tensor {m}\.weight_format is 1 \(expected 0, the row-major layout; other layouts are not read\)")
    refused("--quantize on a 4-bit checkpoint is refused", "hf-nf4-dq",
            r"the checkpoint is already quantized \(nf4-dq-bs64, bitsandbytes\); --quantize applies to float",
            ["--quantize", "int8"])


def main(device):
    """device: where bitsandbytes quantizes (cuda: tests/gpu/test_import_bnb_cuda.py, with nothing allowed
    to differ but the offset)."""
    weights = float_checkpoints()
    accepted_checkpoints(weights, device)
    int8_checkpoint(weights["f32"], device)
    bad_checkpoints()
    finish()


if __name__ == "__main__":
    main("cpu")
