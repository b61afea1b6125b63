"""One training step of shardlora against float64 PyTorch autograd (lora_ref.py): the loss and
every LoRA gradient (and the classification head's) on the same dequantized weights and batch,
at 1 and 2 ranks; plus a finite-difference check through shardlora eval.

The batch of step 1 is the whole dataset: every document fits one window (seq-len + 1 tokens)
and the global batch (micro-batch x ranks x accumulation) equals the number of documents, so the
step's loss does not depend on the sampling order."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dequant_ref import dequantized  # noqa: E402
import lora_ref  # noqa: E402
from testlib import BIN, SHARED, check, check_close, finish, run  # noqa: E402

SEQ = 48
ALL = list(lora_ref.PROJ)


def write_data(path, docs, masks=None, labels=None, num_labels=0):
    with h5py.File(path, "w") as f:
        f["tokens"] = np.concatenate(docs).astype(np.int32)
        f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        if masks is not None:
            f["loss_mask"] = np.concatenate(masks).astype(np.uint8)
        if labels is not None:
            f["labels"] = np.array(labels, dtype=np.int32)
            f.attrs["num_labels"] = np.int64(num_labels)
        f.attrs["vocab_size"] = np.int64(512 if labels is None else 300)


def train_step(name, model, data, adapter, out, np_, extra):
    run([f"{BIN}/shardlora", "train", f"--model={model}", f"--data={data}", f"--out={out}", f"--adapter={adapter}",
         f"--seq-len={SEQ}", "--micro-batch=2", f"--global-batch={8}", "--steps=1", "--dump-grads", "--lr=0",
         "--max-grad-norm=0", "--log-every=1", "--lora-alpha=24"] + extra, np=np_)
    with h5py.File(f"{out}/grads_step1.h5", "r") as g, h5py.File(f"{out}/metrics.h5", "r") as m:
        grads = {}
        g.visititems(lambda k, o: grads.__setitem__(k, o[...]) if isinstance(o, h5py.Dataset) and not k.startswith("shardlora") else None)
        return float(m["metrics/loss"][0]), grads


def compare(name, loss, grads, ref_loss, ref_grads, np_):
    check_close(f"{name}: step-1 loss equals PyTorch autograd at np={np_}", loss, ref_loss, 1e-5)
    worst, where = 0.0, ""
    for key, want in ref_grads.items():
        got = grads.get(key)
        if got is None:
            check(f"{name}: gradient {key} written", False)
            return
        err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
        if err > worst:
            worst, where = err, key
    check(f"{name}: {len(ref_grads)} gradients equal autograd within 1e-4 at np={np_} (worst {worst:.2e} {where})",
          worst < 1e-4 and len(grads) == len(ref_grads), f"{len(grads)} vs {len(ref_grads)} tensors")


def causal_lm_nf4():
    model = "stories.h5"
    run([f"{BIN}/shardlora-import", "llama2c", f"{SHARED}/models/stories260K.bin", model])
    quant = ["--quant", "nf4", "--double-quant", "--blocksize", "64"]
    weights, cfg = dequantized(model, quant)
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 512, n) for n in (49, 30, 12, 49, 7, 40, 25, 33)]
    masks = [(rng.random(len(d)) > 0.3).astype(np.uint8) for d in docs]
    write_data("lm.h5", docs, masks)
    adapter = lora_ref.write_adapter("init.h5", cfg, 4, 24.0, ALL, rng)
    ref_loss, ref_grads = lora_ref.loss_and_grads(weights, cfg, adapter, 24.0 / 4, docs, masks)
    for np_ in (1, 2):
        loss, grads = train_step("lm", model, "lm.h5", "init.h5", f"out_lm_{np_}", np_,
                                 ["--quant=nf4", "--double-quant", "--lora-r=4", "--lora-targets=all-linear"])
        compare("stories260K NF4+DQ causal LM", loss, grads, ref_loss, ref_grads, np_)
    return model


def seq_cls_int8():
    model = "gqa.h5"
    run([f"{BIN}/shardlora-init", model, "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "96",
         "--layers", "2", "--vocab", "300", "--std", "0.1", "--seed", "9"])
    quant = ["--quant", "int8", "--blocksize", "64"]
    weights, cfg = dequantized(model, quant)
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 300, n) for n in (20, 48, 9, 33, 48, 17, 26, 40)]
    labels = list(rng.integers(0, 3, len(docs)))
    write_data("cls.h5", docs, labels=labels, num_labels=3)
    targets = ["q_proj", "v_proj", "down_proj"]
    adapter = lora_ref.write_adapter("init_cls.h5", cfg, 8, 24.0, targets, rng, num_labels=3)
    ref_loss, ref_grads = lora_ref.loss_and_grads(weights, cfg, adapter, 24.0 / 8, docs, labels=labels)
    for np_ in (1, 2):
        loss, grads = train_step("cls", model, "cls.h5", "init_cls.h5", f"out_cls_{np_}", np_,
                                 ["--quant=int8", "--blocksize=64", "--lora-r=8", "--task=seq_cls", "--num-labels=3",
                                  "--lora-targets=q_proj,v_proj,down_proj", "--shard=full"])
        compare("random GQA int8 seq_cls", loss, grads, ref_loss, ref_grads, np_)


causal_lm_nf4()
seq_cls_int8()
finish()
