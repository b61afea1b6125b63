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

from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_compare as sl  # noqa: E402
import hf_families as fam  # noqa: E402
from testlib import check, check_close, expect_fail, finish, run  # noqa: E402

TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
TRAIN, HELDOUT = fam.random_docs(6, [40] * 16), fam.random_docs(7, (90, 50, 33))
fam.write_docs("train.h5", TRAIN)
fam.write_docs("heldout.h5", HELDOUT)

for i, family in enumerate(fam.FAMILIES):
    name, seq = family.name, family.seq_len
    hf_dir, base, run_dir, peft_dir = f"{name}-hf", f"{name}.h5", f"{name}-run", f"{name}-peft"
    fam.random_model(family, seed=20 + i).save_pretrained(hf_dir)
    sl.import_hf(hf_dir, base)
    train = sl.train_command(base, "train.h5", run_dir)
    window = family.config.get("sliding_window")
    if window:
        expect_fail(f"{name}: training at seq-len {window + 1}, one beyond the sliding window, is refused",
                    train + [f"--seq-len={window + 1}"],
                    rf"option --seq-len={window + 1} exceeds the model's sliding_window \({window}\) in {base}")
    run(train + [f"--seq-len={seq}"], np=2)
    got = sl.eval_loss(base, "heldout.h5", seq, f"{run_dir}/heldout.h5", f"--adapter={run_dir}/adapter.h5")
    sl.export_peft(f"{run_dir}/adapter.h5", peft_dir)
    with open(f"{peft_dir}/adapter_config.json") as f:
        adapter_config = json.load(f)
    check(f"{name}: the export targets all seven projections of the base it names",
          set(adapter_config["target_modules"]) == TARGETS
          and adapter_config["base_model_name_or_path"] == os.path.realpath(hf_dir), adapter_config)
    hf_base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype="float32").eval()
    want = sl.check_peft_loss(name, hf_base, peft_dir, HELDOUT, seq, got)
    if name == "llama3.1":
        alone = fam.hf_loss(AutoPeftModelForCausalLM.from_pretrained(peft_dir, dtype="float32").eval(), HELDOUT, seq)
        check_close("llama3.1: AutoPeftModelForCausalLM finds the base from the export alone, to the same loss",
                    alone, want, 1e-12)
finish()
