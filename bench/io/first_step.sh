#!/usr/bin/env bash
# Time to first step of a pre-quantized model made by shardlora-init --quant, against dd.
#   bench/io/first_step.sh [BEFORE_BIN]   BEFORE_BIN: another build's bin/, loaded in the same run
# Makes a Llama-3-8B-shaped model (hidden 4096, intermediate 14336, 32 layers, 32/8 heads, vocab
# 128256, untied; BENCH_LAYERS etc. shrink it) as nf4-dq-bs64 with bf16 embeddings, norms and head,
# timing shardlora-init; then, page cache warm, dd of the file and `shardlora eval` on 1 rank of
# one 16-token window (its "model: read ... in S s" line is the load; the wall time adds start-up
# and one forward pass). Writes runs/bench_io/first_step.md; the model file is deleted at the end
# unless BENCH_KEEP=1. Needs about 5.8 GB of disk and 14 GB of memory at the 8B shape.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
before=${1:-}
out=${BENCH_OUT:-$root/runs/bench_io}
work=${BENCH_TMP:-$out/tmp_first_step}
mkdir -p "$out" "$work"
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl=self,vader
unset OMP_NUM_THREADS
layers=${BENCH_LAYERS:-32} hidden=${BENCH_HIDDEN:-4096} inter=${BENCH_INTERMEDIATE:-14336} vocab=${BENCH_VOCAB:-128256}
heads=${BENCH_HEADS:-32} kv=${BENCH_KV_HEADS:-8}
model=$work/model.nf4.h5 md=$out/first_step.md
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
arch=(--hidden "$hidden" --intermediate "$inter" --layers "$layers" --heads "$heads" --kv-heads "$kv" --vocab "$vocab"
      --max-pos 8192 --rope-theta 500000 --seed 1 --dtype bf16 --quant nf4 --double-quant)
[ -f "$model" ] || { t0=$(now); "$root/bin/shardlora-init" "$model" "${arch[@]}" | tee "$work/init.log";
                     init_s=$(since "$t0"); }
/usr/bin/python3 - "$work/data.h5" "$vocab" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["tokens"] = np.random.default_rng(0).integers(0, int(sys.argv[2]), 17).astype(np.int32)
    f["doc_offsets"] = np.array([0, 17], dtype=np.int64)
    f.attrs["vocab_size"] = int(sys.argv[2])
PY
cat "$model" >/dev/null
t0=$(now); dd if="$model" of=/dev/null bs=16M 2>/dev/null; dd_s=$(since "$t0")
bytes=$(stat -c %s "$model")
{
  echo "shardlora-init ${arch[*]}: $(printf '%.1f' "${init_s:-0}") s (0: file kept from an earlier run);"
  echo "$(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; file $bytes bytes; dd (warm) $(printf '%.2f' "$dd_s") s"
  echo
  echo "| build | model_load | load rate | load / dd | eval wall (load + start-up + 16-token forward) |"
  echo "|---|---|---|---|---|"
} >"$md"
for b in ${before:+before} after; do
  bin=$root/bin; [ "$b" = before ] && bin=$before
  t0=$(now)
  mpirun -np 1 "$bin/shardlora" eval --model="$model" --data="$work/data.h5" --seq-len=16 --micro-batch=1 \
    --device=cpu --out="$work/eval.h5" >"$work/eval.$b.log" 2>&1 || { tail "$work/eval.$b.log"; exit 1; }
  wall=$(since "$t0")
  # the before build may not log the load: then only the wall time is known
  load=$(sed -n 's/.* in \([0-9.]*\) s (.*/\1/p' "$work/eval.$b.log" | head -1)
  if [ -n "$load" ]; then
    echo "| $b | $load s | $(echo "$bytes / 1000000 / $load" | bc) MB/s | $(printf '%.2f' "$(echo "$load / $dd_s" | bc -l)") | $(printf '%.2f' "$wall") s |" >>"$md"
  else
    echo "| $b | - | - | - | $(printf '%.2f' "$wall") s |" >>"$md"
  fi
done
cat "$md"
