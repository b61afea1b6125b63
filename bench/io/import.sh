#!/usr/bin/env bash
# shardlora-import hf at disk speed (issue 15): a LLaMA-shaped safetensors checkpoint imported as it
# is (bf16 kept) and with --quantize nf4 --double-quant, on RANKS ranks of CORES/ranks OpenMP threads
# each, against cp -r of the directory and dd of its shards.
#   bench/io/import.sh [BEFORE_BIN]   BEFORE_BIN: another build's bin/ (e.g. main before the change),
#                                     timed in the same session on 1 rank of CORES threads
# The checkpoint is made by bench/io/make_hf.py with $PYTHON (default python3; it needs torch and
# safetensors), shape from HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS VOCAB (default the 0.85B shape;
# Llama-3-8B: HIDDEN=4096 INTERMEDIATE=14336 LAYERS=32 HEADS=32 KV_HEADS=8 VOCAB=128256).
# Page cache warm: the shards are read once before timing, and every command starts after a sync,
# its output deleted (the times, like cp's, end when the data is in the page cache). Each import's
# output is checksummed (cksum), so the files of every rank count can be compared. RANKS (default
# "1 2"), CORES (default nproc), REPEAT (default 1: the best of REPEAT runs is kept), BENCH_OUT
# (runs/bench_io), BENCH_TMP, BENCH_KEEP=1 keeps the checkpoint for the next run; OMP_WAIT_POLICY,
# when set, is passed to every import (passive helps on a machine shared with other jobs, where
# threads spinning at the end of a tensor take cores the others need). Writes
# BENCH_OUT/import.{jsonl,md}. Disk: the checkpoint, one copy of it, one output.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
before=${1:-}
out=${BENCH_OUT:-$root/runs/bench_io}
work=${BENCH_TMP:-$out/tmp_import}
python=${PYTHON:-python3}
ranks_list=${RANKS:-1 2} cores=${CORES:-$(nproc)} repeat=${REPEAT:-1}
mkdir -p "$out" "$work"
wait_policy=()
[ -n "${OMP_WAIT_POLICY:-}" ] && wait_policy=(-x OMP_WAIT_POLICY)
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl=self,vader
jsonl=$out/import.jsonl md=$out/import.md rows=$work/rows
: >"$jsonl"
: >"$rows"

hf=$work/hf
if [ ! -f "$hf/config.json" ]; then
  echo "making the checkpoint in $hf ..."
  "$python" "$root/bench/io/make_hf.py" "$hf" >"$work/make_hf.log" || { cat "$work/make_hf.log"; exit 1; }
fi
tail -1 "$work/make_hf.log" 2>/dev/null || true
shards=("$hf"/*.safetensors)
bytes=$(stat -c %s "${shards[@]}" | awk '{ s += $1 } END { printf "%d", s }')
cat "${shards[@]}" >/dev/null # warm the page cache
load_start=$(uptime | sed 's/.*load average: //')

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; } # calc EXPR, to two decimals (the GPU host has no bc)
# best SECONDS_VAR CMD...: run CMD REPEAT times after a sync (output to the log), the best wall time
best() {
  local var=$1 start took fastest=
  shift
  for _ in $(seq "$repeat"); do
    rm -rf "$work/copy" "$work/out.h5"
    sync
    start=$(now)
    "$@" >>"$work/log" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/log" >&2; exit 1; }
    took=$(calc "$(now) - $start")
    if [ -z "$fastest" ] || [ "$(calc "($took < $fastest)")" = 1.00 ]; then fastest=$took; fi
  done
  printf -v "$var" '%s' "$fastest"
}
record() { # record WHAT BUILD RANKS THREADS SECONDS [CKSUM]
  local mbs
  mbs=$(awk "BEGIN { printf \"%d\", ($5 > 0 ? $bytes / 1000000 / $5 : 0) }")
  printf '{"what": "%s", "build": "%s", "ranks": %s, "threads": %s, "input_bytes": %s, "seconds": %s, "mb_per_s": %s, "cksum": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$bytes" "$5" "$mbs" "${6:-}" >>"$jsonl"
  printf '| %s | %s | %s x %s | %s s | %s MB/s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$mbs" "${6:--}" | tee -a "$rows"
}
out_sum() { cksum <"$work/out.h5" | cut -d' ' -f1; }

best t cp -r "$hf" "$work/copy"
record "cp -r" - 1 1 "$t"
rm -rf "$work/copy"
dd_all() { for s in "${shards[@]}"; do dd if="$s" of=/dev/null bs=16M status=none; done; }
best t dd_all
record "dd of the shards" - 1 1 "$t"
best t mpirun -np 1 true
mpirun_s=$t

imports=("bf16 kept|" "nf4 + double quant|--quantize nf4 --double-quant")
if [ -n "$before" ]; then
  for imp in "${imports[@]}"; do
    IFS='|' read -r what opts <<<"$imp"
    # shellcheck disable=SC2086 # opts are words
    best t env OMP_NUM_THREADS="$cores" "$before/shardlora-import" hf "$hf" "$work/out.h5" $opts
    record "import, $what" before 1 "$cores" "$t" "$(out_sum)"
  done
fi
for imp in "${imports[@]}"; do
  IFS='|' read -r what opts <<<"$imp"
  for np in $ranks_list; do
    threads=$((cores / np > 0 ? cores / np : 1))
    # shellcheck disable=SC2086
    best t mpirun -np "$np" --bind-to none -x OMP_NUM_THREADS="$threads" "${wait_policy[@]}" \
      "$root/bin/shardlora-import" hf "$hf" "$work/out.h5" $opts
    record "import, $what" after "$np" "$threads" "$t" "$(out_sum)"
  done
done
rm -f "$work/out.h5"

{
  echo "Checkpoint: bench/io/make_hf.py ($(grep -o '[0-9]* tensors, [0-9]* bytes in [0-9]* shards ([a-z]*)' "$work/make_hf.log" 2>/dev/null || echo kept from an earlier run)),"
  echo "HIDDEN=${HIDDEN:-2048} INTERMEDIATE=${INTERMEDIATE:-5632} LAYERS=${LAYERS:-16} HEADS=${HEADS:-16} KV_HEADS=${KV_HEADS:-4} VOCAB=${VOCAB:-32000}:" \
       "$bytes bytes of shards; $(date -u +%Y-%m-%d), $(nproc) cores ($cores used), $(free -g | awk '/Mem/ {print $2}') GiB RAM;"
  echo "load average before / after: $load_start / $(uptime | sed 's/.*load average: //'); mpirun -np 1 true takes $mpirun_s s (in every import time);"
  echo "best of $repeat run(s), OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-unset}. MB/s = bytes of shards / wall time; cksum of the output file."
  echo
  echo "| what | build | ranks x threads | time | rate (input) | output cksum |"
  echo "|---|---|---|---|---|---|"
  cat "$rows"
} >"$md"
cat "$md"
