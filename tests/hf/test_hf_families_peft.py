"""One short training run per model family (hf_families.FAMILIES): the transformers model saved by
save_pretrained, imported, trained by shardlora for a few steps with LoRA on all seven linear
projections (2 ranks, fp32 base), exported by shardlora-export peft and loaded with
PeftModel.from_pretrained onto the same transformers base: its held-out loss equals shardlora eval
of the adapter within 1e-5 relative. Llama 3.1's export also loads alone, through
AutoPeftModelForCausalLM and the adapter's base_model_name_or_path. Mistral with a sliding window
trains at a seq-len of the window and is refused one token beyond it."""
import json
import os
import sys

import h5py
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_families as fam  # noqa: E402
from testlib import BIN, check, check_close, expect_fail, finish, rel_err, run  # noqa: E402

SL = f"{BIN}/shardlora"
TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
TRAIN, HELDOUT = fam.random_docs(6, [40] * 16), fam.random_docs(7, (90, 50, 33))
fam.write_docs("train.h5", TRAIN)
fam.write_docs("heldout.h5", HELDOUT)


def shardlora_eval(model, adapter, seq_len, out):
    run([SL, "eval", f"--model={model}", "--data=heldout.h5", f"--adapter={adapter}", f"--seq-len={seq_len}",
         f"--out={out}"], np=2)
    with h5py.File(out, "r") as f:
        return float(f["eval/loss"][()])


for i, family in enumerate(fam.FAMILIES):
    name, seq = family.name, family.seq_len
    hf_dir, base, run_dir, peft_dir = f"{name}-hf", f"{name}.h5", f"{name}-run", f"{name}-peft"
    fam.random_model(family, seed=20 + i).save_pretrained(hf_dir)
    run([f"{BIN}/shardlora-import", "hf", hf_dir, base])
    train = [SL, "train", f"--model={base}", "--data=train.h5", f"--out={run_dir}", "--micro-batch=2",
             "--global-batch=4", "--steps=4", "--lr=1e-2", "--lora-r=8", "--lora-alpha=16"]
    window = family.config.get("sliding_window")
    if window:
        expect_fail(f"{name}: training at seq-len {window + 1}, one beyond the sliding window, is refused",
                    train + [f"--seq-len={window + 1}"],
                    rf"option --seq-len={window + 1} exceeds the model's sliding_window \({window}\) in {base}")
    run(train + [f"--seq-len={seq}"], np=2)
    got = shardlora_eval(base, f"{run_dir}/adapter.h5", seq, f"{run_dir}/heldout.h5")
    run([f"{BIN}/shardlora-export", "peft", f"{run_dir}/adapter.h5", peft_dir])
    with open(f"{peft_dir}/adapter_config.json") as f:
        adapter_config = json.load(f)
    check(f"{name}: the export targets all seven projections of the base it names",
          set(adapter_config["target_modules"]) == TARGETS
          and adapter_config["base_model_name_or_path"] == os.path.realpath(hf_dir), adapter_config)
    hf_base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype="float32").eval()
    untrained = fam.hf_loss(hf_base, HELDOUT, seq)
    want = fam.hf_loss(PeftModel.from_pretrained(hf_base, peft_dir).eval(), HELDOUT, seq)
    check(f"{name}: the trained adapter moves transformers' held-out loss ({untrained:.6f} -> {want:.6f})",
          rel_err(want, untrained) > 1e-3)
    check_close(f"{name}: PEFT's held-out loss with the export equals shardlora eval of the adapter "
                f"(relative difference {rel_err(got, want):.1e})", got, want, 1e-5)
    if name == "llama3.1":
        alone = fam.hf_loss(AutoPeftModelForCausalLM.from_pretrained(peft_dir, dtype="float32").eval(), HELDOUT, seq)
        check_close("llama3.1: AutoPeftModelForCausalLM finds the base from the export alone, to the same loss",
                    alone, want, 1e-12)
finish()
