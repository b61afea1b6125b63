"""One training step of shardlora against Hugging Face transformers LlamaForCausalLM + PEFT LoRA on
the same inputs: the base decoded from one pre-quantized file (NF4 + double quantization, decoded
by tests/reference/dequant_ref.py), the same random adapter (A and B nonzero, all-linear, r 8,
alpha 16), the same documents, positions and loss mask.

Every document fits one window (at most seq-len + 1 tokens) and the global batch is the number of
documents, so step 1 trains on the whole dataset, each document its own sequence with positions
from 0 and attention inside it: exactly what HF sees when it is given one document at a time.

--device cuda (the default; the GPU host, through tests/run.sh): shardlora --device=cuda against
HF in bf16 on the GPU (bf16 weights and activations; PEFT keeps the adapters in fp32, its default),
and HF in fp32 (no TF32) as the reference. Checks:
  - HF fp32 equals shardlora's CPU backend (loss 1e-5, gradients 1e-4): both sides compute the same
    function, so the bf16 comparisons below measure precision only;
  - shardlora GPU loss equals HF bf16 within 2e-3 relative;
  - each LoRA gradient: d(GPU, HF-bf16) <= 2 d(HF-bf16, HF-fp32), d the relative norm distance. Two
    bf16 computations of one fp32 function whose rounding errors are independent and of equal size
    are sqrt(2) times as far from each other as each is from fp32; 2 allows the GPU's error to be
    up to 1.7 times HF's own (and would catch a GPU gradient that is wrong, not just rounded).
  The table of the three distances (GPU-HF16, HF16-HF32, GPU-HF32) is printed per gradient.
--device cpu (or SHARDLORA_HF_DEVICE=cpu; development on a machine without a GPU): shardlora
--device=cpu against HF fp32 on the CPU (loss 1e-5, gradients 1e-4), and HF bf16 on the CPU for
the table only (no bf16 check: an fp32 backend is trivially within it).
Fresh random model, data and adapter every run; SHARDLORA_HF_SEED=N repeats one.
usage: test_hf_peft_step.py [--device cuda|cpu]   (from a scratch directory; needs torch,
transformers, peft, h5py and bin/)"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "reference"))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import lora_ref  # noqa: E402
from dequant_ref import load_quantized  # noqa: E402
from hf_llama import peft_model, rel, set_adapter  # noqa: E402
from testlib import BIN, check, finish, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
V, SEQ, R, ALPHA, N_DOCS = 512, 128, 8, 16.0, 16
TARGETS = list(lora_ref.PROJ)
BF16_MARGIN = 2.0


def shardlora_step(device, out):
    """(loss, {adapter path: gradient}) of step 1 on the pre-quantized model."""
    run([SL, "train", "--model=model.q.h5", "--quant=nf4", "--double-quant", "--data=lm.h5", "--adapter=init.h5",
         f"--seq-len={SEQ}", "--micro-batch=4", f"--global-batch={N_DOCS}", f"--lora-r={R}", f"--lora-alpha={ALPHA:g}",
         "--lora-targets=all-linear", "--steps=1", "--lr=0", "--max-grad-norm=0", "--log-every=1", "--dump-grads",
         f"--device={device}", f"--out={out}"], np=1)
    grads = {}
    with h5py.File(f"{out}/grads_step1.h5", "r") as g, h5py.File(f"{out}/metrics.h5", "r") as m:
        g.visititems(lambda k, o: grads.__setitem__(k, o[...].astype(np.float64))
                     if isinstance(o, h5py.Dataset) and k.startswith("lora/") else None)
        return float(m["metrics/loss"][0]), grads


def hf_step(weights, c, adapter, docs, masks, device, dtype):
    """(loss, {adapter path: gradient}) of the same step in transformers + PEFT."""
    model, params = peft_model(weights, c, R, ALPHA, TARGETS, device, dtype)
    set_adapter(params, adapter)
    total, count = 0, 0
    for doc, mask in zip(docs, masks):
        ids = torch.tensor(doc, dtype=torch.long, device=device)[None]
        logits = model(input_ids=ids[:, :-1]).logits.float()[0]
        keep = torch.tensor(mask[1:], dtype=torch.bool, device=device)
        nll = -logits.log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
        total, count = total + nll[keep].sum(), count + int(keep.sum())
    loss = total / count
    loss.backward()
    return float(loss.detach()), {k: p.grad.double().cpu().numpy() for k, p in params.items()}


def table(label_a, label_b, a, b, ref=None):
    """Print per-gradient distances; returns {key: (d(a,b), d(b,ref), d(a,ref))}."""
    rows = {}
    head = f"# {'gradient':<42} {label_a + '-' + label_b:>12}"
    if ref is not None:
        head += f" {label_b + '-HF32':>12} {label_a + '-HF32':>12}"
    print(head)
    for k in sorted(a):
        row = (rel(a[k], b[k]),) + ((rel(b[k], ref[k]), rel(a[k], ref[k])) if ref is not None else ())
        rows[k] = row
        print(f"# {k[len('lora/model/'):]:<42} " + " ".join(f"{v:12.2e}" for v in row))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default=os.environ.get("SHARDLORA_HF_DEVICE", "cuda"))
    dev = ap.parse_args().device
    torch.set_float32_matmul_precision("highest")  # fp32 reference: no TF32
    seed = int(os.environ.get("SHARDLORA_HF_SEED") or int.from_bytes(os.urandom(4), "little") % (1 << 30))
    rng = np.random.default_rng(seed)
    print(f"# device {dev}, seed {seed} (SHARDLORA_HF_SEED={seed} repeats this run)")
    run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--intermediate",
         "688", "--layers", "2", "--vocab", str(V), "--max-pos", "256", "--std", "0.05", "--seed", str(seed % 1000)])
    run([f"{BIN}/shardlora-quantize", "model.h5", "model.q.h5", "--quant", "nf4", "--double-quant"])
    weights, cfg = load_quantized("model.q.h5")
    # 16 documents of 8..129 tokens (each one window); a prompt of a random third or so gets no loss
    docs = [np.concatenate([[1], rng.integers(3, V, rng.integers(7, SEQ + 1))]) for _ in range(N_DOCS)]
    masks = [(np.arange(len(d)) >= rng.integers(1, len(d) // 2 + 2)).astype(np.uint8) for d in docs]
    write_tokens("lm.h5", docs, V, loss_mask=masks)
    adapter = lora_ref.write_adapter("init.h5", cfg, R, ALPHA, TARGETS, rng)

    cpu_loss, cpu = shardlora_step("cpu", "out_cpu")
    h32_loss, h32 = hf_step(weights, cfg, adapter, docs, masks, dev, torch.float32)
    fp32 = table("SLcpu", "HF32", cpu, h32)
    worst = max((v[0], k) for k, v in fp32.items())
    check(f"HF fp32 ({dev}) loss {h32_loss:.7f} equals shardlora --device=cpu {cpu_loss:.7f} within 1e-5 "
          f"(relative {abs(h32_loss - cpu_loss) / cpu_loss:.1e})", abs(h32_loss - cpu_loss) <= 1e-5 * cpu_loss)
    check(f"HF fp32 ({dev}): all {len(h32)} LoRA gradients equal shardlora --device=cpu within 1e-4 relative norm "
          f"(worst {worst[0]:.2e}, {worst[1]})", set(cpu) == set(h32) and len(cpu) == 2 * 7 * 2 and worst[0] <= 1e-4)
    check("the gradients are informative (every one nonzero)", all(np.linalg.norm(g) > 0 for g in h32.values()))

    h16_loss, h16 = hf_step(weights, cfg, adapter, docs, masks, dev, torch.bfloat16)
    if dev == "cpu":
        print(f"# loss: shardlora cpu {cpu_loss:.6f}, HF bf16 {h16_loss:.6f}, HF fp32 {h32_loss:.6f} (bf16 table for "
              "information: the CPU backend is fp32)")
        table("SLcpu", "HF16", cpu, h16, h32)
        finish()
    gpu_loss, gpu = shardlora_step("cuda", "out_cuda")
    print(f"# loss: shardlora GPU {gpu_loss:.6f}, HF bf16 {h16_loss:.6f}, HF fp32 {h32_loss:.6f}, "
          f"shardlora CPU {cpu_loss:.6f}")
    rows = table("SLgpu", "HF16", gpu, h16, h32)
    check(f"shardlora GPU loss {gpu_loss:.6f} equals HF bf16 {h16_loss:.6f} within 2e-3 "
          f"(relative {abs(gpu_loss - h16_loss) / h16_loss:.1e})", abs(gpu_loss - h16_loss) <= 2e-3 * abs(h16_loss))
    check("HF bf16 really is bf16: each gradient 1e-3 or more from HF fp32",
          min(r[1] for r in rows.values()) >= 1e-3, {k: r[1] for k, r in rows.items()})
    ratio = max((r[0] / r[1], k) for k, r in rows.items())
    check(f"each of {len(rows)} GPU gradients no further from HF bf16 than {BF16_MARGIN:g} x HF bf16's distance from "
          f"HF fp32 (worst d(GPU, HF16) / d(HF16, HF32) {ratio[0]:.2f}, {ratio[1]})",
          set(gpu) == set(h16) and ratio[0] <= BF16_MARGIN)
    own = [r[2] / r[1] for r in rows.values()]
    print(f"# the GPU's own error over HF bf16's, d(GPU, HF32) / d(HF16, HF32): median {np.median(own):.2f}, "
          f"max {max(own):.2f}")
    finish()


if __name__ == "__main__":
    main()
