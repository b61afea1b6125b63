"""shardlora-init --generate-at-load: the file keeps /config and the seed, not the weights, and a run
makes them as it loads them. Training from it (float bf16 base, INT8 and NF4 + double quantization
at load, 2 ranks each holding half the blocks) gives the losses of the full file bit for bit, and
eval the same loss; the file holds no dataset; --quant with it is refused by name, and so are tools
that need stored weights (shardlora-quantize)."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_fail, finish, read_metrics, run, write_tokens  # noqa: E402

shape = ["--arch", "qwen2", "--hidden", "128", "--intermediate", "344", "--layers", "3", "--heads", "4",
         "--kv-heads", "2", "--vocab", "256", "--max-pos", "256", "--std", "0.05", "--seed", "7", "--dtype", "bf16"]
run([f"{BIN}/shardlora-init", "full.h5", *shape])
run([f"{BIN}/shardlora-init", "recipe.h5", *shape, "--generate-at-load"])
with h5py.File("recipe.h5", "r") as f:
    datasets = []
    f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
    check(f"the recipe file holds no weights ({len(datasets)} datasets) and names its seed {f.attrs['synthetic_seed']}",
          not datasets and int(f.attrs["synthetic_seed"]) == 7)

rng = np.random.default_rng(3)
write_tokens("data.h5", [np.concatenate([[1], rng.integers(3, 256, rng.integers(10, 60))]) for _ in range(64)], 256)
common = ["--data=data.h5", "--seq-len=64", "--micro-batch=4", "--global-batch=8", "--steps=3", "--log-every=1",
          "--lora-r=4", "--device=cpu"]
for name, quant in (("bf16 base", []), ("INT8 at load", ["--quant=int8"]),
                    ("NF4 + double quantization at load", ["--quant=nf4", "--double-quant"])):
    losses = {}
    for model in ("full", "recipe"):
        out = f"run_{model}_{len(quant)}"
        run([f"{BIN}/shardlora", "train", f"--model={model}.h5", *common, *quant, f"--out={out}"], np=2)
        losses[model] = read_metrics(out)
    check(f"{name}: 3 steps from the recipe equal the full file's bit for bit ({losses['recipe']})",
          len(losses["full"]) == 3 and np.array_equal(losses["full"], losses["recipe"]))

ev = {}
for model in ("full", "recipe"):
    run([f"{BIN}/shardlora", "eval", f"--model={model}.h5", "--data=data.h5", "--seq-len=64", "--device=cpu",
         f"--out=eval_{model}.h5"], np=2)
    with h5py.File(f"eval_{model}.h5", "r") as f:
        ev[model] = float(f["eval/loss"][()])
check(f"eval of the recipe {ev['recipe']:.8f} equals the full file's {ev['full']:.8f}", ev["recipe"] == ev["full"])
expect_fail("--generate-at-load with --quant is refused by name", [f"{BIN}/shardlora-init", "q.h5", *shape,
            "--generate-at-load", "--quant", "nf4"], "--generate-at-load keeps no weights")
expect_fail("shardlora-quantize of a recipe file says it keeps no weights",
            [f"{BIN}/shardlora-quantize", "recipe.h5", "q.h5", "--quant", "nf4"],
            "recipe.h5: this model file keeps no weights, only the seed")
finish()
