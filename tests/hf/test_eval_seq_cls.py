"""shardlora eval --task seq_cls against transformers: a classifier trained for a few steps is merged
(shardlora-merge --hf, float32) and loaded with AutoModelForSequenceClassification.from_pretrained;
its logits of each document's first seq-len tokens equal the logits eval --adapter writes for the
unmerged pair, and the accuracy, the per-class counts and the mean cross-entropy that eval reports
equal the ones counted here from transformers' logits. Bad combinations are refused by name."""
import os
import sys

import h5py
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, check_close, expect_exit, finish, run, write_tokens  # noqa: E402

SL, MERGE, INIT = f"{BIN}/shardlora", f"{BIN}/shardlora-merge", f"{BIN}/shardlora-init"
V, SEQ, K = 96, 24, 3
torch.set_num_threads(1)


def make_inputs(arch, seed):
    run([INIT, f"{arch}.h5", "--arch", arch, "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "96",
         "--layers", "2", "--vocab", str(V), "--max-pos", "64", "--std", "0.1", "--seed", str(seed)])


def make_data(path, seed, n_docs=40, num_labels=K):
    """Documents of 1 to 60 tokens (some past --seq-len, so eval keeps their first SEQ), each labelled."""
    rng = np.random.default_rng(seed)
    docs = [np.concatenate([[1], rng.integers(3, V, rng.integers(0, 60))]) for _ in range(n_docs)]
    write_tokens(path, docs, V, labels=rng.integers(0, num_labels, n_docs), num_labels=num_labels)


def sl_eval(model, data, out, adapter, np_=None, extra=()):
    run([SL, "eval", "--task=seq_cls", f"--model={model}", f"--data={data}", f"--out={out}", f"--seq-len={SEQ}",
         "--micro-batch=3", "--device=cpu"] + ([f"--adapter={adapter}"] if adapter else []) + list(extra), np=np_)
    with h5py.File(out, "r") as f:
        return {k: f["eval"][k][()] for k in f["eval"]}, dict(f.attrs)


def hf_logits(hf_dir, data):
    """Logits of every document's first SEQ tokens, one document at a time, and the labels."""
    model, info = AutoModelForSequenceClassification.from_pretrained(hf_dir, dtype=torch.float32, output_loading_info=True)
    model.eval()
    check(f"{hf_dir}: transformers finds every weight of the classifier and no other", not any(info.values()), info)
    with h5py.File(data, "r") as f:
        tokens, offsets, labels = f["tokens"][:], f["doc_offsets"][:], f["labels"][:]
    rows = []
    with torch.no_grad():
        for d in range(len(offsets) - 1):
            ids = torch.tensor(tokens[offsets[d]:offsets[d + 1]][:SEQ], dtype=torch.long)[None]
            rows.append(model(input_ids=ids).logits[0].double().numpy())
    return np.array(rows), labels


def classifier(arch, seed):
    make_inputs(arch, seed)
    make_data("cls.h5", 3)
    run([SL, "train", "--task=seq_cls", f"--num-labels={K}", f"--model={arch}.h5", "--data=cls.h5", f"--out=run_{arch}",
         f"--seq-len={SEQ}", "--micro-batch=4", "--steps=8", "--lr=2e-2", "--lora-r=4", "--device=cpu"])
    adapter = f"run_{arch}/adapter.h5"
    run([MERGE, f"{arch}.h5", adapter, f"merged_{arch}.h5", "--hf", f"hf_{arch}", "--dtype", "f32"])
    ev, attrs = sl_eval(f"{arch}.h5", "cls.h5", f"eval_{arch}.h5", adapter)
    logits, labels = hf_logits(f"hf_{arch}", "cls.h5")
    n = len(labels)
    check(f"{arch}: the eval file says task seq_cls and holds a row of logits per document",
          attrs.get("task") == "seq_cls" and ev["logits"].shape == (n, K), (attrs.get("task"), ev["logits"].shape))
    err = float(np.max(np.abs(ev["logits"] - logits)) / np.max(np.abs(logits)))
    check(f"{arch}: eval --adapter's logits equal transformers' of the merged classifier (max relative {err:.1e})",
          err < 1e-5, err)
    pred = logits.argmax(axis=1)
    correct = int(np.sum(pred == labels))
    check(f"{arch}: the classifier is neither always right nor always wrong ({correct} of {n})", 0 < correct < n, correct)
    check(f"{arch}: eval's count of correct documents is transformers' ({correct})", int(ev["correct"]) == correct, ev["correct"])
    check(f"{arch}: eval's accuracy is that count over {n} documents", ev["accuracy"] == correct / n, ev["accuracy"])
    confusion = np.zeros((K, K), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    check(f"{arch}: the per-class counts (confusion [label, prediction]) are transformers'",
          np.array_equal(ev["confusion"], confusion), f"{ev['confusion']}\nvs\n{confusion}")
    check(f"{arch}: labels and predictions are stored per document", np.array_equal(ev["labels"], labels) and
          np.array_equal(ev["predictions"], pred))
    ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels.astype(np.int64)))
    check_close(f"{arch}: eval's loss is the mean cross-entropy over the labels of transformers' logits", float(ev["loss"]),
                float(ce), 1e-5)
    check(f"{arch}: documents counted", int(ev["documents"]) == n and int(ev["windows"]) == n, (ev["documents"], n))
    merged, _ = sl_eval(f"merged_{arch}.h5", "cls.h5", f"eval_merged_{arch}.h5", None)
    err = float(np.max(np.abs(merged["logits"] - ev["logits"])) / np.max(np.abs(ev["logits"])))
    check(f"{arch}: eval of the merged model file (its head included) gives eval --adapter's logits ({err:.1e}) "
          "and correct count", err < 1e-5 and int(merged["correct"]) == correct, (err, merged["correct"]))
    two, _ = sl_eval(f"{arch}.h5", "cls.h5", f"eval2_{arch}.h5", adapter, np_=2)
    check(f"{arch}: 2 ranks count the same correct documents and loss", int(two["correct"]) == correct and
          abs(float(two["loss"]) - float(ev["loss"])) < 1e-7 * float(ev["loss"]), (two["correct"], two["loss"], ev["loss"]))


def errors():
    adapter = "run_llama/adapter.h5"
    expect_exit("--task=seq_cls without --adapter on a base model is refused, saying where the head lives",
                [SL, "eval", "--task=seq_cls", "--model=llama.h5", "--data=cls.h5", "--out=x.h5", f"--seq-len={SEQ}"], 1,
                r"option --task=seq_cls needs --adapter: the classification head \(/score/weight\) is trained with the "
                r"adapter and stored in its file \(or in a model file shardlora-merge made of them\)")
    expect_exit("a classification adapter without --task=seq_cls is refused, naming the flag",
                [SL, "eval", "--model=llama.h5", "--data=cls.h5", "--out=x.h5", f"--adapter={adapter}", f"--seq-len={SEQ}"], 1,
                r"run_llama/adapter.h5: this adapter was trained for seq_cls, but eval runs --task=causal_lm \(pass --task=seq_cls\)")
    make_data("four.h5", 4, num_labels=4)
    expect_exit("a dataset of another label count is refused, naming both",
                [SL, "eval", "--task=seq_cls", "--model=llama.h5", "--data=four.h5", "--out=x.h5", f"--adapter={adapter}",
                 f"--seq-len={SEQ}"], 1, r"four.h5: the num_labels attribute is 4 but the classification head of run_llama/adapter.h5 has 3 labels")
    write_tokens("nolabels.h5", [np.array([1, 5, 6, 7])], V)
    expect_exit("a dataset without /labels is refused",
                [SL, "eval", "--task=seq_cls", "--model=llama.h5", "--data=nolabels.h5", "--out=x.h5", f"--adapter={adapter}",
                 f"--seq-len={SEQ}"], 1, r"nolabels.h5: dataset has no /labels, which --task=seq_cls needs")


classifier("llama", 9)
classifier("qwen3", 10)
errors()
finish()
