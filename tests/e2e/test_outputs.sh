#!/usr/bin/env bash
# Every output file is readable by h5dump and h5ls -r; a full disk (a small tmpfs) stops the run
# with a clear error and leaves the last complete checkpoint loadable.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
"$BIN/shardlora-init" model.h5 --hidden 48 --heads 4 --kv-heads 2 --intermediate 96 --layers 2 --vocab 64 \
  --max-pos 64 --seed 3 >/dev/null
"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(5)
docs = [rng.integers(0, 64, rng.integers(8, 33)) for _ in range(300)]
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.concatenate(docs).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(64)
PY
common=(--model=model.h5 --data=data.h5 --seq-len=32 --micro-batch=2 --quant=nf4 --lora-r=8 --log-every=1)
mpirun_n 2 "$BIN/shardlora" train "${common[@]}" --out=run --steps=10 --ckpt-every=5 >/dev/null 2>&1
mpirun_n 2 "$BIN/shardlora" eval --model=model.h5 --data=data.h5 --seq-len=32 --adapter=run/adapter.h5 --out=eval.h5 >/dev/null 2>&1
for f in model.h5 data.h5 run/adapter.h5 run/metrics.h5 run/checkpoints/step_00000010.h5 eval.h5; do
  check "h5dump reads $f" bash -c "h5dump '$f' >/dev/null"
  check "h5ls -r reads $f" bash -c "h5ls -r '$f' >/dev/null"
done
check "h5ls lists the adapter's tensors" bash -c "h5ls -r run/adapter.h5 | grep -q 'lora/model/layers/1/mlp/down_proj/lora_B Dataset {48, 8}'"
check "h5dump prints the checkpoint's step" bash -c "h5dump -a /step run/checkpoints/step_00000010.h5 | grep -q '(0): 10'"
check "h5dump prints the eval loss" bash -c "h5dump -d /eval/loss eval.h5 | grep -qE '\(0\): [0-9]'"

# a full disk: a 600 KiB tmpfs holds a few checkpoints, then the run must stop with a clear error
mkdir -p small
if mount -t tmpfs -o size=600k tmpfs small 2>/dev/null; then
  err=$(mpirun_n 2 "$BIN/shardlora" train "${common[@]}" --out=small/run --steps=200 --ckpt-every=5 --ckpt-keep=0 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" -ne 0 ] && printf '%s' "$err" | grep -qiE 'disk full|No space left'; then ok "a full disk stops the run with a clear error"
  else not_ok "a full disk stops the run with a clear error (status $rc)"; printf '%s\n' "$err" | head -5 | sed 's/^/#   /'; fi
  cp -r small/run kept; umount small
  out=$(mpirun_n 2 "$BIN/shardlora" train "${common[@]}" --out=kept --steps=200 --ckpt-every=1000 --resume=auto 2>&1)
  last=$(ls kept/checkpoints | grep -E '^step_[0-9]+\.h5$' | sort | tail -1)
  if printf '%s' "$out" | grep -qE "resume: from kept/checkpoints/step_[0-9]+\.h5"; then ok "after the full disk the newest complete checkpoint loads"
  else not_ok "after the full disk the newest complete checkpoint loads"; printf '%s\n' "$out" | grep -iE 'resume|skipping|error' | head -5 | sed 's/^/#   /'; fi
else
  not_ok "mounting a small tmpfs for the full-disk test (needs root)"
fi
