#!/usr/bin/env bash
# A job with a short --time and no warning signal checkpoints before its limit by itself: rank 0
# reads the remaining wall time from libslurm, and all ranks stop with status 3 after a checkpoint.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
cluster=$TMP/slurm
trap '"$ROOT/tests/slurm/cluster.sh" stop "$cluster" >/dev/null 2>&1' EXIT
"$ROOT/tests/slurm/cluster.sh" start "$cluster" >/dev/null || { not_ok "local Slurm starts"; exit 1; }
eval "$("$ROOT/tests/slurm/cluster.sh" env "$cluster")"
"$BIN/shardlora-init" model.h5 --hidden 64 --heads 4 --kv-heads 2 --intermediate 128 --layers 3 --vocab 64 \
  --max-pos 64 --seed 2 >/dev/null
"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(4)
docs = [rng.integers(0, 64, rng.integers(10, 33)) for _ in range(400)]
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.concatenate(docs).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(64)
PY
export MODEL=model.h5 DATA=data.h5 STEPS=1000000 CKPT_BEFORE_END=50 OUT=short SHARDLORA_BIN=$BIN SHARDLORA_JOBS=$ROOT/jobs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# one minute of wall time, and the warning signal moved to SIGURG, which nothing traps or acts on
job=$(sbatch --parsable --time=1 --signal=B:URG@1 --output=short.out "$ROOT/jobs/demo.sbatch")
for _ in $(seq 450); do grep -q "requeueing job" short.out 2>/dev/null && break; sleep 0.2; done
scancel "$job"
check "the job stopped by itself before its time limit" grep -q "wall time nearly over" short.out
check "it checkpointed first" bash -c "ls short/checkpoints | grep -qE '^step_[0-9]+\.h5$'"
check "and asked to be requeued (status 3)" grep -q "requeueing job $job" short.out
