"""Every dataset input is validated whole before step 1, and by --dry-run (train and eval), on rank
0 inside the rank-0 checks: token ids against the model's vocabulary (and the file's vocab_size),
/loss_mask values and length, /labels count and range, /doc_offsets, and that training has a loss
target in every step. Bad data used to pass --dry-run and end the run at the step that reached it."""
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_exit, finish, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
V = 64
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", str(V), "--max-pos", "64", "--seed", "3"])
rng = np.random.default_rng(5)
DOCS = [rng.integers(0, V, 30) for _ in range(40)]  # 1200 tokens, each document 2 windows of --seq-len=16
MASK = [np.ones(30, np.uint8) for _ in range(40)]
write_tokens("good.h5", DOCS, V, loss_mask=MASK)


def variant(name, edit, src="good.h5"):
    shutil.copy(src, name)
    with h5py.File(name, "r+") as f:
        edit(f)
    return name


def setitem(dset, index, value):
    def edit(f):
        a = f[dset][...]
        a[index] = value
        f[dset][...] = a
    return edit


def replace(dset, value):
    def edit(f):
        del f[dset]
        f[dset] = value
    return edit


def train(data, *extra):
    return [SL, "train", "--model=model.h5", f"--data={data}", "--out=run", "--seq-len=16", "--micro-batch=2",
            "--overwrite", *extra]


def evaluate(data, *extra):
    return [SL, "eval", "--model=model.h5", f"--data={data}", "--out=eval.h5", "--seq-len=16", *extra]


def both(name, data, message):
    expect_exit(f"train --dry-run: {name}", train(data, "--dry-run"), 1, message, np=2, timeout=120)
    expect_exit(f"eval --dry-run: {name}", evaluate(data, "--dry-run"), 1, message, np=2, timeout=120)


p = run(train("good.h5", "--dry-run"), np=2, check_rc=False)
check("a good dataset passes --dry-run", p.returncode == 0, p.stderr)

variant("token.h5", setitem("tokens", 1190, 70))
both("a token id beyond the model's vocabulary", "token.h5",
     r"token.h5: dataset /tokens: token id 70 at index 1190 \(document 39\) is outside the vocabulary \[0, 64\) "
     r"of model model.h5\n")
# a real run stops before step 1: no step is done and then lost
p = run(train("token.h5", "--steps=20", "--log-every=1"), np=2, check_rc=False)
check("train: a bad token id in the last document ends the run before step 1",
      p.returncode == 1 and "token id 70 at index 1190 (document 39)" in p.stderr and "step " not in p.stdout,
      f"status {p.returncode}\n{p.stdout}\n{p.stderr}")
variant("negative.h5", setitem("tokens", 31, -3))
both("a negative token id", "negative.h5",
     r"negative.h5: dataset /tokens: token id -3 at index 31 \(document 1\) is outside the vocabulary \[0, 64\)")
write_tokens("vocab48.h5", [d % 48 for d in DOCS], 48)
variant("small_vocab.h5", lambda f: (setitem("tokens", 500, 50)(f), setitem("tokens", 900, 60)(f)), src="vocab48.h5")
both("a token id within the model's vocabulary but not the file's vocab_size", "small_vocab.h5",
     r"small_vocab.h5: dataset /tokens: token id 50 at index 500 \(document 16\) is outside \[0, 48\), the file's "
     r"vocab_size attribute \(the model's vocabulary is \[0, 64\): a wrong attribute, or ids from another tokenizer\)")

variant("mask_value.h5", setitem("loss_mask", 1100, 2))
both("a loss_mask value other than 0 or 1", "mask_value.h5",
     r"mask_value.h5: dataset /loss_mask: value 2 at index 1100 \(document 36\) is not 0 or 1 \(expected 1 for a "
     r"token that is a loss target, 0 for one that is not\)")
variant("mask_len.h5", replace("loss_mask", np.ones(1199, np.uint8)))
both("a loss_mask shorter than /tokens", "mask_len.h5",
     r"mask_len.h5: dataset /loss_mask has 1199 entries but /tokens has 1200 \(expected one per token\)")
variant("offsets_start.h5", setitem("doc_offsets", 0, 5))
both("doc_offsets not starting at 0", "offsets_start.h5", r"offsets_start.h5: /doc_offsets\[0\] is 5 \(expected 0\)")
variant("offsets_end.h5", setitem("doc_offsets", 40, 1250))
both("doc_offsets not ending at the token count", "offsets_end.h5",
     r"offsets_end.h5: /doc_offsets ends at 1250 \(expected the token count, 1200\)")

# fully masked documents: a warning naming how many; an error when nothing, or some step, has a target
some = [m.copy() for m in MASK]
for d in (3, 7, 11):
    some[d][1:] = 0
write_tokens("some_masked.h5", DOCS, V, loss_mask=some)
p = run(train("some_masked.h5", "--dry-run"), np=2, check_rc=False)
warning = ("some_masked.h5: dataset /loss_mask: 3 of 40 documents are fully masked (no token after a document's "
           "first has loss_mask 1); they add no loss target")
check("train --dry-run: some fully masked documents are a warning naming how many",
      p.returncode == 0 and warning in p.stderr, p.stderr)
write_tokens("all_masked.h5", DOCS, V, loss_mask=[np.r_[1, np.zeros(29, np.uint8)] for _ in range(40)])
expect_exit("train --dry-run: every document fully masked", train("all_masked.h5", "--dry-run"), 1,
            r"all_masked.h5: dataset /loss_mask: all 40 documents are fully masked \(no token after a document's "
            r"first has loss_mask 1\): no loss target to train on", np=2, timeout=120)
expect_exit("eval --dry-run: every document fully masked", evaluate("all_masked.h5", "--dry-run"), 1,
            r"all_masked.h5: dataset /loss_mask: all 40 documents are fully masked \(no token after a document's "
            r"first has loss_mask 1\): no loss target to evaluate", np=2, timeout=120)
# 2 documents with targets among 40 (one window each at --seq-len=32), 2 windows a step: some step has none
few = [np.zeros(30, np.uint8) for _ in range(40)]
few[0][:], few[1][:] = 1, 1
write_tokens("few_targets.h5", DOCS, V, loss_mask=few)
few_args = ("--seq-len=32", "--micro-batch=1")
expect_exit("train --dry-run: a step whose global batch is all fully masked", train("few_targets.h5", "--dry-run", *few_args),
            1, r"few_targets.h5: dataset /loss_mask: step \d+ of 20 would have no loss target: all 2 windows of its "
               r"global batch are fully masked \(38 of 40 documents are\); raise --global-batch, or leave the fully "
               r"masked documents out of the dataset", np=2, timeout=120)
p = run(train("few_targets.h5", *few_args, "--global-batch=40"), np=2, check_rc=False)
check("train: the same data with a global batch of every window trains", p.returncode == 0, p.stderr)

# sequence classification: one label per document, each in [0, num_labels)
labels = list(rng.integers(0, 3, 40))
write_tokens("cls.h5", DOCS, V, labels=labels, num_labels=3)
cls = ("--task=seq_cls", "--num-labels=3", "--dry-run")
variant("label_range.h5", setitem("labels", 6, 7), src="cls.h5")
expect_exit("train --dry-run: a label outside [0, num_labels)", train("label_range.h5", *cls), 1,
            r"label_range.h5: dataset /labels: document 6 has label 7, outside \[0, 3\) \(--num-labels\)", np=2, timeout=120)
variant("label_count.h5", replace("labels", np.array(labels[:39], np.int32)), src="cls.h5")
expect_exit("train --dry-run: fewer labels than documents", train("label_count.h5", *cls), 1,
            r"label_count.h5: dataset /labels has 39 entries but /doc_offsets has 40 documents \(expected one label "
            r"per document\)", np=2, timeout=120)

# big enough for the scans to split across threads and chunks: of two bad ids the first is named
big = [rng.integers(0, V, 5000) for _ in range(100)]
big[20][7], big[80][9] = 99, 64
write_tokens("big.h5", big, V)
os.environ["OMP_NUM_THREADS"] = "2"
expect_exit("eval --dry-run on 2 threads: the first of two bad token ids is named",
            evaluate("big.h5", "--dry-run", "--threads=2"), 1,
            r"big.h5: dataset /tokens: token id 99 at index 100007 \(document 20\) is outside the vocabulary", np=1,
            timeout=120)
finish()
