#!/usr/bin/env bash
# Time to first step: how fast shardlora loads a model file, against reading the file with dd,
# with the page cache warm and (where the machine lets us drop it) cold.
#   bench/io/run.sh [BEFORE_BIN]   BEFORE_BIN: a bin/ directory of another build (e.g. the commit
#                                  before a change), timed in the same run as this checkout's bin/
# Knobs:
#   BENCH_SHAPE=0.85b|llama3-8b  0.85b: hidden 2048, intermediate 5632, 16 layers, 16/4 heads, vocab
#                                32000 (852,559,872 parameters); llama3-8b: 4096, 14336, 32, 32/8,
#                                128256, untied (8,030,261,248)
#   BENCH_FILES="bf16 f32 nf4"   model files, each written by bin/shardlora-init (nf4: the projections
#                                nf4-dq-bs64, the rest bf16), measured, then deleted before the next
#                                (the 8B shape in f32 is 32 GB); f16: imported with shardlora-import
#                                hf --dtype f16 from BENCH_HF_DIR, a Hugging Face directory of the shape
#   BENCH_RANKS="1 2"            rank counts of `mpirun -np N shardlora eval` (OpenMP threads: cores / N)
#   BENCH_DEVICE=cpu             eval's --device
#   BENCH_COLD=auto|0            cold rows too when /proc/sys/vm/drop_caches is writable
#   BENCH_SAMPLES=1              samples of every cache state: each a dd and the loads after it (a
#                                virtual disk's cold rate varies by a quarter from one dd to the next)
# For each file: dd bs=16M to /dev/null, then `shardlora eval --seq-len=16 --micro-batch=1` of one
# 16-token window, whose "model: read ... in S s" line is the load (every rank reads its shard; S
# is rank 0's time from the first read to the last weight in place: checks, conversion and copies to
# the device included); the eval's wall time adds start-up and the forward pass. load / dd = dd's
# time / the load's: 1.00 is the load at dd's rate. Also shardlora-quantize of the bf16 file.
# Writes runs/bench_io/results.{jsonl,md}.
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
shape=${BENCH_SHAPE:-0.85b} files=${BENCH_FILES:-bf16 f32 nf4} ranks=${BENCH_RANKS:-1 2}
device=${BENCH_DEVICE:-cpu} cold=${BENCH_COLD:-auto} samples=${BENCH_SAMPLES:-1}
py=${PYTHON:-python3}
case $shape in
  0.85b) arch=(--hidden 2048 --intermediate 5632 --layers 16 --heads 16 --kv-heads 4 --vocab 32000 --max-pos 2048)
         vocab=32000 ;;
  llama3-8b) arch=(--hidden 4096 --intermediate 14336 --layers 32 --heads 32 --kv-heads 8 --vocab 128256
                   --max-pos 8192 --rope-theta 500000)
             vocab=128256 ;;
  *) echo "run.sh: BENCH_SHAPE must be 0.85b or llama3-8b, found '$shape'" >&2; exit 2 ;;
esac
arch+=(--seed 1)
[ "$cold" = auto ] && { [ -w /proc/sys/vm/drop_caches ] && cold=1 || cold=0; }
caches=(warm); [ "$cold" = 1 ] && caches=(cold warm)
jsonl=$out/results.jsonl md=$out/results.md
: >"$jsonl"; : >"$md.rows"
cores=$(nproc)

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; } # calc EXPR, to two decimals (the GPU host has no bc)
# timed SECONDS_VAR CMD...: run CMD (output appended to the log), its wall seconds into SECONDS_VAR
timed() {
  local var=$1 t0 t1
  shift
  t0=$(now)
  "$@" >>"$work/log" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/log" >&2; exit 1; }
  t1=$(now)
  printf -v "$var" '%s' "$(calc "$t1 - $t0")"
}
ratio() { calc "$1 / $2"; }
gbs() { calc "$1 / 1000000000 / $2"; }
# settle CACHE FILE: cold drops the page cache (after writing back), warm reads the file once
settle() { if [ "$1" = cold ]; then sync; echo 3 >/proc/sys/vm/drop_caches; else cat "$2" >/dev/null; fi; }
bin_of() { [ "$1" = before ] && echo "$before" || echo "$root/bin"; }
builds=(after); [ -n "$before" ] && builds=(before after)

# row WHAT BUILD FILE CACHE RANKS SECONDS DD_SECONDS [EVAL_WALL]
row() {
  local bytes; bytes=$(stat -c %s "$3")
  printf '{"what": "%s", "build": "%s", "file": "%s", "bytes": %s, "cache": "%s", "ranks": "%s", "seconds": %s, "dd_seconds": %s, "eval_wall": "%s"}\n' \
    "$1" "$2" "$(basename "$3")" "$bytes" "$4" "$5" "$6" "$7" "${8:-}" >>"$jsonl"
  printf '| %s | %s | %s | %s GB | %s | %s | %s s | %s GB/s | %s | %s |\n' "$1" "$2" "$(basename "$3")" \
    "$(calc "$bytes / 1000000000")" "$4" "$5" "$6" "$(gbs "$bytes" "$6")" "$(ratio "$7" "$6")" \
    "${8:--}" | tee -a "$md.rows"
}

make_file() { # make_file KIND PATH
  case $1 in
    bf16|f32) "$root/bin/shardlora-init" "$2" "${arch[@]}" --dtype "$1" ;;
    nf4) "$root/bin/shardlora-init" "$2" "${arch[@]}" --dtype bf16 --quant nf4 --double-quant ;;
    f16) [ -n "${BENCH_HF_DIR:-}" ] || { echo "run.sh: f16 needs BENCH_HF_DIR" >&2; exit 2; }
         "$root/bin/shardlora-import" hf "$BENCH_HF_DIR" "$2" --dtype f16 ;;
    *) echo "run.sh: unknown file kind '$1' in BENCH_FILES" >&2; exit 2 ;;
  esac >>"$work/log" 2>&1
}

$py - "$work/data.h5" "$vocab" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["tokens"] = np.random.default_rng(0).integers(0, int(sys.argv[2]), 17).astype(np.int32)
    f["doc_offsets"] = np.array([0, 17], dtype=np.int64)
    f.attrs["vocab_size"] = int(sys.argv[2])
EOF
timed mpirun_s mpirun -np 1 true
for kind in $files; do
  file=$work/model.$kind.h5
  timed make_s make_file "$kind" "$file"
  echo "made $file in $make_s s" >>"$work/log"
  for cache in $(for c in "${caches[@]}"; do for _ in $(seq "$samples"); do echo "$c"; done; done); do
    settle "$cache" "$file"
    timed dd_s dd if="$file" of=/dev/null bs=16M
    row dd - "$file" "$cache" - "$dd_s" "$dd_s"
    for b in "${builds[@]}"; do
      for np in $ranks; do
        settle "$cache" "$file"
        log=$work/eval.$kind.$b.$np.$cache.log
        t0=$(now)
        OMP_NUM_THREADS=$(( cores / np > 0 ? cores / np : 1 )) mpirun -np "$np" --bind-to none \
          "$(bin_of "$b")/shardlora" eval --model="$file" --data="$work/data.h5" --seq-len=16 \
          --micro-batch=1 --device="$device" --out="$work/eval.h5" >"$log" 2>&1 ||
          { echo "failed: eval of $file on $np ranks" >&2; tail -20 "$log" >&2; exit 1; }
        wall=$(calc "$(now) - $t0")
        load=$(sed -n 's/.*model: read .* in \([0-9.]*\) s (.*/\1/p' "$log" | head -1)
        row "load, eval -np $np" "$b" "$file" "$cache" "$np" "${load:-$wall}" "$dd_s" "$wall s"
      done
    done
  done
  if [ "$kind" = bf16 ]; then
    for b in "${builds[@]}"; do
      settle warm "$file"
      timed q_s "$(bin_of "$b")/shardlora-quantize" "$file" "$work/q.$b.h5" --quant nf4 --double-quant
      row "quantize nf4-dq (read bf16)" "$b" "$file" warm 1 "$q_s" "$dd_s"
    done
    if [ -n "$before" ]; then # the change must not change a byte of the quantized payload
      h5diff "$work/q.before.h5" "$work/q.after.h5" >"$work/h5diff" 2>&1 && echo "quantized files: h5diff identical" |
        tee -a "$md.rows" || { echo "quantized files differ:" >&2; head "$work/h5diff" >&2; exit 1; }
    fi
    rm -f "$work"/q.*.h5
  fi
  rm -f "$file"
done

{
  echo "Shape $shape: shardlora-init ${arch[*]}; eval --device=$device; $cores cores,"
  echo "$(free -g | awk '/Mem/ {print $2}') GiB RAM; \`mpirun -np 1 true\` takes $mpirun_s s (in every eval wall time)."
  echo "Load = rank 0's model_load; GB/s = file size / time; load / dd = dd's time / the load's."
  echo
  echo "| what | build | file | size | cache | ranks | time | rate | load / dd | eval wall |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  grep '^|' "$md.rows"
  grep -v '^|' "$md.rows" || true
} >"$md"
rm -f "$md.rows"
cat "$md"
