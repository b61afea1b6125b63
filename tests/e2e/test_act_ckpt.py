"""--act-ckpt recomputes each layer's forward in backward instead of keeping it: the same arithmetic
in the same order, so on the CPU backend the losses and the LoRA gradients equal the kept run's
bit for bit, LoRA dropout masks included (they are drawn again from the same keys), on one rank
and on two."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, finish, read_grads, read_metrics, run, tiny_run_inputs  # noqa: E402

SL = f"{BIN}/shardlora"
tiny_run_inputs(vocab=96, intermediate=160, seed=9, doc_len=(10, 40), n_docs=120)

common = ["--model=model.h5", "--data=train.h5", "--seq-len=32", "--micro-batch=2", "--global-batch=4",
          "--quant=nf4", "--double-quant", "--lora-r=4", "--lora-dropout=0.2", "--lr=1e-2", "--log-every=1",
          "--steps=3", "--dump-grads"]
for np_ in (1, 2):
    for ckpt in ("false", "true"):
        run([SL, "train", *common, f"--act-ckpt={ckpt}", f"--out=run{np_}_{ckpt}"], np=np_)
    kept, recomputed = (f"run{np_}_{c}" for c in ("false", "true"))
    lk, lr_ = read_metrics(kept), read_metrics(recomputed)
    check(f"{np_} rank(s): --act-ckpt gives the kept run's losses bit for bit ({lr_})",
          len(lk) == 3 and np.array_equal(lk, lr_) and np.all(np.isfinite(lk)), (lk, lr_))
    gk, gr = read_grads(kept), read_grads(recomputed)
    differ = [k for k in gk if k not in gr or not np.array_equal(gk[k], gr[k])]
    nonzero = sum(np.count_nonzero(v) for v in gk.values())
    check(f"{np_} rank(s): and the step-1 gradients of all {len(gk)} datasets ({nonzero} nonzero values)",
          len(gk) >= 2 * 7 * 3 and not differ and set(gk) == set(gr) and nonzero > 0, differ[:3])
finish()
