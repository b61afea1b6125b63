"""The output directory: a run never mixes its state with another run's. An OUT holding a finished
run's checkpoints, metrics.h5 or adapter.h5 is an error unless --resume or --overwrite says what to
do."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_exit, finish, run  # noqa: E402

SL = f"{BIN}/shardlora"
rng = np.random.default_rng(7)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "3"])
docs = [rng.integers(3, 64, rng.integers(12, 30)) for _ in range(200)]
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.concatenate(docs).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(64)
common = ["--model=model.h5", "--data=data.h5", "--seq-len=16", "--micro-batch=2", "--lora-r=4", "--log-every=1"]


def train(out, *extra, np_=2, check_rc=True):
    return run([SL, "train", *common, f"--out={out}", *extra], np=np_, check_rc=check_rc)


def listing(out):
    return sorted(os.listdir(f"{out}/checkpoints"))


def metrics_steps(out):
    with h5py.File(f"{out}/metrics.h5", "r") as f:
        return list(f["metrics/step"][:])


def contents(path):
    with open(path, "rb") as f:
        return f.read()


# 1. an OUT holding a finished run
train("used", "--steps=6", "--ckpt-every=2")
before = {name: contents(f"used/{name}") for name in ("metrics.h5", "adapter.h5")}
old_checkpoints = listing("used")
expect_exit("training into an OUT holding another run's state is an error naming it and what it holds",
            [SL, "train", *common, "--out=used", "--steps=3", "--ckpt-every=1"], 1,
            r"output directory 'used' holds another run's state: 3 checkpoints \(checkpoints/step_\*\.h5\), metrics\.h5, "
            r"adapter\.h5; pass --resume=auto to continue that run, --overwrite to replace it", np=2)
check("the refused run changed nothing in OUT", listing("used") == old_checkpoints and
      all(contents(f"used/{k}") == v for k, v in before.items()), listing("used"))
expect_exit("--dry-run reports it too", [SL, "train", *common, "--out=used", "--steps=3", "--dry-run"], 1,
            r"output directory 'used' holds another run's state", np=2)
expect_exit("--resume and --overwrite together are an error",
            [SL, "train", *common, "--out=used", "--steps=3", "--resume=auto", "--overwrite"], 1,
            r"options --resume=auto and --overwrite contradict each other", np=2)
os.makedirs("only_metrics")
os.link("used/metrics.h5", "only_metrics/metrics.h5")
expect_exit("an OUT holding only a metrics.h5 is refused too", [SL, "train", *common, "--out=only_metrics", "--steps=2"], 1,
            r"output directory 'only_metrics' holds another run's state: metrics\.h5;", np=2)
p = train("used", "--steps=3", "--ckpt-every=1", "--overwrite")
check("--overwrite says what it removed",
      "--overwrite: removed the previous run's state from used: 3 checkpoints (checkpoints/step_*.h5), metrics.h5, "
      "adapter.h5" in p.stdout, p.stdout)
check("--overwrite: only the new run's checkpoints are left (the old later ones are gone)",
      listing("used") == ["step_00000001.h5", "step_00000002.h5", "step_00000003.h5"], listing("used"))
check("--overwrite: metrics.h5 holds the new run's steps alone", metrics_steps("used") == [1, 2, 3], metrics_steps("used"))
p = train("used", "--steps=5", "--resume=auto")
check("--resume=auto then continues the new run", "resume: from used/checkpoints/step_00000003.h5" in p.stdout and
      metrics_steps("used") == [1, 2, 3, 4, 5], p.stdout)
finish()
