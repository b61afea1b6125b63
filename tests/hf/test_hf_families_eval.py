"""Each model family (hf_families.FAMILIES), written by transformers' save_pretrained in the
transformers 5 layout and rewritten in the transformers 4 layout, imported by shardlora-import hf
and evaluated by shardlora eval on 2 ranks: the loss equals transformers' own on the same windows
within 1e-5 relative (fp32 on both sides). Mistral with a sliding window is evaluated at a seq-len
of the window and refused one token beyond it."""
import os
import sys

from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_compare as sl  # noqa: E402
import hf_families as fam  # noqa: E402
from testlib import check, check_close, expect_fail, finish, rel_err  # noqa: E402

DATA = "eval.h5"
DOCS = fam.random_docs(5, (100, 70, 45, 20))
fam.write_docs(DATA, DOCS)


def without_type(rope):
    """transformers 5 keeps transformers 4's legacy key 'type' beside rope_type; it means nothing more."""
    return {k: v for k, v in rope.items() if k != "type"}


for i, family in enumerate(fam.FAMILIES):
    name, seq = family.name, family.seq_len
    model = fam.random_model(family, seed=10 + i)
    dirs = fam.save_both_layouts(model, family, ".")
    ropes = [without_type(fam.rope_parameters(d)) for d in dirs]
    check(f"{name}: transformers reads the rewritten transformers 4 config.json to the same rope parameters",
          ropes[0] == ropes[1], f"v5 {ropes[0]}\nv4 {ropes[1]}")
    wants = [fam.hf_loss(AutoModelForCausalLM.from_pretrained(d, dtype="float32"), DOCS, seq) for d in dirs]
    check(f"{name}: transformers' loss is the same from both layouts ({wants[0]:.6f})",
          rel_err(wants[1], wants[0]) < 1e-12, f"v5 {wants[0]!r}, v4 {wants[1]!r}")
    plain_rope = dict(rope_type="default", rope_theta=10000.0)
    if ropes[0] != plain_rope:
        plain = fam.hf_loss(fam.random_model(family, seed=10 + i, rope_parameters=plain_rope), DOCS, seq)
        check(f"{name}: its rope changes transformers' loss from the plain rope's by {rel_err(plain, wants[0]):.1e} "
              "(the comparisons below can see a wrong rope)", rel_err(plain, wants[0]) > 1e-4)
    for d, want in zip(dirs, wants):
        layout = "transformers " + d[-1]
        out = os.path.basename(d) + ".h5"
        sl.import_hf(d, out)
        got = sl.eval_loss(out, DATA, seq, out + ".eval.h5")
        check_close(f"{name} ({layout}): shardlora eval at seq-len {seq} equals transformers' loss "
                    f"(relative difference {rel_err(got, want):.1e})", got, want, 1e-5)
    window = family.config.get("sliding_window")
    if window:
        expect_fail(f"{name}: seq-len {window + 1}, one beyond the sliding window, is refused naming both",
                    [sl.SL, "eval", f"--model={out}", f"--data={DATA}", f"--seq-len={window + 1}", "--out=refused.h5"],
                    rf"option --seq-len={window + 1} exceeds the model's sliding_window \({window}\) in {out}: "
                    rf"sliding-window attention is not implemented.*use --seq-len={window} or less")
finish()
