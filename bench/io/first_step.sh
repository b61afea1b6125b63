#!/usr/bin/env bash
# Time to first step of a pre-quantized model: from `shardlora train` starting to the end of its
# first step, with the model's load, against dd of the file, page cache cold (where the machine
# lets us drop it) and warm.
#   bench/io/first_step.sh
# Makes a Llama-3-8B-shaped model (hidden 4096, intermediate 14336, 32 layers, 32/8 heads, vocab
# 128256, untied; BENCH_LAYERS shrinks it) with shardlora-init --quant nf4 --double-quant (bf16
# embeddings, norms and head), timing it; random-token documents of SEQ + 1 tokens; then `shardlora
# train --steps=1` (LoRA r 16 on all seven projections, seq BENCH_SEQ (2048) x micro-batch
# BENCH_MICRO_BATCH (8), --device BENCH_DEVICE (cuda)), each output line stamped as it arrives: the
# time to "step 1/1" is the figure, its "model: read ... in S s" line the load. Writes
# runs/bench_io/first_step.md; the model is deleted at the end unless BENCH_KEEP=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BENCH_OUT:-$root/runs/bench_io}
work=${BENCH_TMP:-$out/tmp_first_step}
mkdir -p "$out" "$work"
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl=self,vader
unset OMP_NUM_THREADS
layers=${BENCH_LAYERS:-32} seq=${BENCH_SEQ:-2048} mb=${BENCH_MICRO_BATCH:-8} device=${BENCH_DEVICE:-cuda}
py=${PYTHON:-python3}
model=$work/model.nf4.h5 md=$out/first_step.md
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; } # calc EXPR, to two decimals (the GPU host has no bc)
since() { calc "$(now) - $1"; }
arch=(--hidden 4096 --intermediate 14336 --layers "$layers" --heads 32 --kv-heads 8 --vocab 128256
      --max-pos 8192 --rope-theta 500000 --seed 1 --dtype bf16 --quant nf4 --double-quant)
t0=$(now)
"$root/bin/shardlora-init" "$model" "${arch[@]}" >"$work/init.log"
init_s=$(since "$t0")
$py - "$work/data.h5" "$seq" "$mb" <<'PY'
import sys, h5py, numpy as np
path, seq, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
docs = 2 * mb
with h5py.File(path, "w") as f:
    f["tokens"] = np.random.default_rng(0).integers(3, 128256, docs * (seq + 1)).astype(np.int32)
    f["doc_offsets"] = np.arange(docs + 1, dtype=np.int64) * (seq + 1)
    f.attrs["vocab_size"] = 128256
PY
bytes=$(stat -c %s "$model")
caches=(warm); [ -w /proc/sys/vm/drop_caches ] && caches=(cold warm)
{
  echo "shardlora-init ${arch[*]}: $init_s s; file $bytes bytes;"
  echo "$(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; train --device=$device, seq $seq x micro-batch $mb, LoRA r 16 all-linear"
  echo
  echo "| cache | dd | model_load | load / dd | start to end of step 1 | train wall (to exit) |"
  echo "|---|---|---|---|---|---|"
} >"$md"
for cache in "${caches[@]}"; do
  if [ "$cache" = cold ]; then sync; echo 3 >/proc/sys/vm/drop_caches; else cat "$model" >/dev/null; fi
  t0=$(now); dd if="$model" of=/dev/null bs=16M 2>/dev/null; dd_s=$(since "$t0")
  if [ "$cache" = cold ]; then echo 3 >/proc/sys/vm/drop_caches; fi
  rm -rf "$work/run"
  t0=$(now)
  "$root/bin/shardlora" train --model="$model" --data="$work/data.h5" --out="$work/run" --device="$device" \
    --seq-len="$seq" --micro-batch="$mb" --lora-r=16 --lora-alpha=32 --lr=1e-4 --steps=1 --log-every=1 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done >"$work/train.$cache.log"
  wall=$(since "$t0")
  step1=$(awk -v t0="$t0" '/step +1\/1/ { printf "%.2f", $1 - t0; exit }' "$work/train.$cache.log")
  load=$(sed -n 's/.*model: read .* in \([0-9.]*\) s (.*/\1/p' "$work/train.$cache.log" | head -1)
  [ -n "$step1" ] && [ -n "$load" ] || { echo "first_step.sh: train did not reach step 1:" >&2; tail "$work/train.$cache.log" >&2; exit 1; }
  echo "| $cache | $dd_s s ($(calc "$bytes / 1000000000 / $dd_s") GB/s) | $load s | $(calc "$dd_s / $load") | $step1 s | $wall s |" >>"$md"
done
cat "$md"
