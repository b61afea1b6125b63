# Sourced by the Slurm end-to-end tests (after tests/lib.sh, in $TMP): start a private Slurm that
# stops when the test exits, and make a small model and dataset for jobs/demo.sbatch to train.
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
export MODEL=model.h5 DATA=data.h5 SHARDLORA_BIN=$BIN SHARDLORA_JOBS=$ROOT/jobs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
