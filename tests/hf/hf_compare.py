"""shardlora's side of the tests/hf comparisons: import, eval on 2 ranks, the short LoRA training
run every family gets, and the check that PEFT, given the export, computes shardlora's loss."""
import os
import sys

import h5py
from peft import PeftModel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_families as fam  # noqa: E402
from testlib import BIN, check, check_close, rel_err, run  # noqa: E402

SL = f"{BIN}/shardlora"
# a few steps of LoRA on all seven projections (train's default targets), enough to move the loss
SHORT_TRAINING = ["--micro-batch=2", "--global-batch=4", "--steps=4", "--lr=1e-2", "--lora-r=8", "--lora-alpha=16"]


def import_hf(hf_dir, out):
    run([f"{BIN}/shardlora-import", "hf", hf_dir, out])


def eval_loss(model, data, seq_len, out, *options):
    """shardlora eval's mean loss (2 ranks)."""
    run([SL, "eval", f"--model={model}", f"--data={data}", f"--seq-len={seq_len}", f"--out={out}", *options], np=2)
    with h5py.File(out, "r") as f:
        return float(f["eval/loss"][()])


def train_command(model, data, out):
    """The short training run, without its --seq-len."""
    return [SL, "train", f"--model={model}", f"--data={data}", f"--out={out}", *SHORT_TRAINING]


def export_peft(adapter, out):
    run([f"{BIN}/shardlora-export", "peft", adapter, out])


def check_peft_loss(label, base, peft_dir, docs, seq_len, shardlora_loss):
    """PEFT's loss of the export on base (a transformers model) over docs equals shardlora's within
    1e-5, and differs from base's own (so the adapter was trained and applied). Returns PEFT's loss."""
    untrained = fam.hf_loss(base, docs, seq_len)
    want = fam.hf_loss(PeftModel.from_pretrained(base, peft_dir).eval(), docs, seq_len)
    check(f"{label}: the trained adapter moves the held-out loss ({untrained:.6f} -> {want:.6f})",
          rel_err(want, untrained) > 1e-3)
    check_close(f"{label}: PEFT's held-out loss with the export equals shardlora eval of the adapter "
                f"(relative difference {rel_err(shardlora_loss, want):.1e})", shardlora_loss, want, 1e-5)
    return want
