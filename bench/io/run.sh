#!/usr/bin/env bash
# Time to first step: how fast shardlora reads a model, against reading the file with dd.
#   bench/io/run.sh [BEFORE_BIN]   BEFORE_BIN: a bin/ directory of another build (e.g. the commit
#                                  before a change), timed in the same run as this checkout's bin/
# A LLaMA-shaped model from bin/shardlora-init (hidden 2048, 16 layers, vocab 32000: 0.85B params)
# is written as bf16 and f32 and quantized to nf4-dq-bs64; for each file: dd of the file (page cache
# warm: every file is read once before timing), `shardlora eval` on 1 and 2 ranks of a dataset of
# one 16-token window (so the time is the load), and shardlora-quantize of the bf16 file.
# Writes runs/bench_io/results.{jsonl,md}; the model files are deleted at the end.
# Size: BENCH_LAYERS (16), BENCH_HIDDEN (2048), BENCH_INTERMEDIATE (5632), BENCH_VOCAB (32000).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
before=${1:-}
out=${BENCH_OUT:-$root/runs/bench_io}
work=${BENCH_TMP:-$out/tmp}
mkdir -p "$out" "$work"
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl=self,vader
unset OMP_NUM_THREADS
layers=${BENCH_LAYERS:-16} hidden=${BENCH_HIDDEN:-2048} inter=${BENCH_INTERMEDIATE:-5632} vocab=${BENCH_VOCAB:-32000}
jsonl=$out/results.jsonl md=$out/results.md
: >"$jsonl"

now() { date +%s.%N; }
# timed SECONDS_VAR CMD...: run CMD (output to the log), put its wall time in seconds in SECONDS_VAR
timed() {
  local var=$1 t0 t1
  shift
  t0=$(now)
  "$@" >>"$work/log" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/log" >&2; exit 1; }
  t1=$(now)
  printf -v "$var" '%.2f' "$(echo "$t1 - $t0" | bc)"
}
bytes_of() { stat -c %s "$1"; }
record() { # record WHAT BUILD FILE SECONDS DD_SECONDS
  local mbs ratio
  mbs=$(echo "scale=1; $(bytes_of "$3") / 1000000 / $4" | bc)
  ratio=$(printf "%.3f" "$(echo "$5 / $4" | bc -l)")
  printf '{"what": "%s", "build": "%s", "file": "%s", "bytes": %s, "seconds": %s, "mb_per_s": %s, "ratio_to_dd": %s}\n' \
    "$1" "$2" "$(basename "$3")" "$(bytes_of "$3")" "$4" "$mbs" "$ratio" >>"$jsonl"
  printf '| %s | %s | %s | %.2f GB | %s s | %s MB/s | %s |\n' "$1" "$2" "$(basename "$3")" \
    "$(echo "$(bytes_of "$3") / 1000000000" | bc -l)" "$4" "$mbs" "$ratio" | tee -a "$md.rows"
}

arch=(--hidden "$hidden" --intermediate "$inter" --layers "$layers" --heads 16 --kv-heads 4 --vocab "$vocab"
      --max-pos 2048 --seed 1)
echo "making the models in $work ..."
"$root/bin/shardlora-init" "$work/model.bf16.h5" "${arch[@]}" --dtype bf16 >>"$work/log"
"$root/bin/shardlora-init" "$work/model.f32.h5" "${arch[@]}" --dtype f32 >>"$work/log"
"$root/bin/shardlora-quantize" "$work/model.bf16.h5" "$work/model.nf4.h5" --quant nf4 --double-quant >>"$work/log"
/usr/bin/python3 - "$work/data.h5" "$vocab" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["tokens"] = np.random.default_rng(0).integers(0, int(sys.argv[2]), 17).astype(np.int32)
    f["doc_offsets"] = np.array([0, 17], dtype=np.int64)
    f.attrs["vocab_size"] = int(sys.argv[2])
EOF

builds=(after)
[ -n "$before" ] && builds=(before after)
bin_of() { [ "$1" = before ] && echo "$before" || echo "$root/bin"; }
: >"$md.rows"
timed t mpirun -np 1 true
mpirun_s=$t
for f in bf16 f32 nf4; do
  file=$work/model.$f.h5
  cat "$file" >/dev/null # warm the page cache
  timed dd_s dd if="$file" of=/dev/null bs=16M
  record "dd (page cache warm)" - "$file" "$dd_s" "$dd_s"
  for b in "${builds[@]}"; do
    for np in 1 2; do
      timed t mpirun -np "$np" "$(bin_of "$b")/shardlora" eval --model="$file" --data="$work/data.h5" \
        --seq-len=16 --micro-batch=1 --device=cpu --out="$work/eval.h5"
      record "eval -np $np" "$b" "$file" "$t" "$dd_s"
    done
  done
done
file=$work/model.bf16.h5
timed dd_s dd if="$file" of=/dev/null bs=16M
for b in "${builds[@]}"; do
  timed t "$(bin_of "$b")/shardlora-quantize" "$file" "$work/q.$b.h5" --quant nf4 --double-quant
  record "quantize nf4-dq (read bf16)" "$b" "$file" "$t" "$dd_s"
done
if [ -n "$before" ]; then # the change must not change a byte of the quantized file's payload
  h5diff "$work/q.before.h5" "$work/q.after.h5" >"$work/h5diff" 2>&1 && echo "quantized files: h5diff identical" |
    tee -a "$md.rows" || { echo "quantized files differ:" >&2; head "$work/h5diff" >&2; exit 1; }
fi

{
  echo "Model: shardlora-init ${arch[*]} ($(grep -o '[0-9]* parameters' "$work/log" | head -1));"
  echo "$(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; mpirun -np 1 true takes $mpirun_s s (in every eval time)."
  echo "Times are wall clock of the whole command; MB/s = file size / time; ratio = dd time / time."
  echo
  echo "| what | build | file | size | time | rate | ratio to dd |"
  echo "|---|---|---|---|---|---|---|"
  grep '^|' "$md.rows"
  grep -v '^|' "$md.rows" || true
} >"$md"
rm -f "$md.rows"
cat "$md"
