#!/usr/bin/env bash
# make fuzz: build every fuzz target of tests/fuzz (fuzz_NAME.c) with libFuzzer, AddressSanitizer
# and UndefinedBehaviorSanitizer (clang, libFuzzer and OpenMP of LLVM: tools/install-deps.sh --fuzz) in
# build/fuzzing, then run each for FUZZ_SECONDS (default 600), one at a time at nice 19, from
# seeds.py's valid inputs and the corpus an earlier run left in build/fuzzing/corpus/NAME.
#   FUZZ_TARGETS="safetensors vocab"   only these targets (default: all)
#   ASAN_OPTIONS=detect_leaks=0          for the targets that start MPI (jsonl, h5dataset, h5checkpoint):
#                                        LeakSanitizer's at-exit check trips on Open MPI's unloaded modules
# A finding (crash, hang, leak, out-of-memory) is written to build/fuzzing/findings/NAME/ and makes
# the run fail; fix it, then add it to tests/fuzz/regressions/NAME/ (see tests/README.md). Each
# target's log is build/fuzzing/logs/NAME.log; its last lines are libFuzzer's final stats.
# The body is one block, so bash has read all of it before it runs (the script may be edited meanwhile).
{
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
seconds=${FUZZ_SECONDS:-600}
dir=build/fuzzing
targets=${FUZZ_TARGETS:-$(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')}
command -v clang >/dev/null || { echo "fuzz: clang not found (run tools/install-deps.sh --fuzz as root)" >&2; exit 1; }
cc="clang -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
echo "fuzz: building $(for t in $targets; do printf '%s ' "$t"; done)with $cc"
CFLAGS="-O1 -g -Wno-pass-failed" nice -n 10 make -j2 CUDA=0 BUILD=$dir CC="$cc" FUZZ_MAIN= \
  FUZZ_LDFLAGS=-fsanitize=fuzzer $(for t in $targets; do echo "$dir/fuzzers/$t"; done) >"$dir.log" 2>&1 ||
  { tail -n 20 "$dir.log"; exit 1; }
export SHARDLORA_SHARED=${SHARDLORA_SHARED:-$(cd "$root/.." && pwd)/shared} OMP_NUM_THREADS=1
# h5checkpoint runs as one MPI rank (singleton), as tests/run.sh's MPI settings
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_btl_vader_single_copy_mechanism=none
python3 tests/fuzz/seeds.py "$dir/seeds" $targets || exit 1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=print_stacktrace=1 LSAN_OPTIONS=suppressions=$root/tests/fuzz/lsan.supp
failed=()
trap 'rm -rf "${FUZZ_SCRATCH_DIR:-}"' EXIT # also when the run is stopped part-way
for t in $targets; do
  mkdir -p "$dir/corpus/$t" "$dir/findings/$t" "$dir/logs"
  log=$dir/logs/$t.log
  export FUZZ_SCRATCH_DIR=$(mktemp -d /dev/shm/shardlora-fuzz.XXXXXX 2>/dev/null || mktemp -d)
  nice -n 19 "$dir/fuzzers/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -close_fd_mask=3 \
    -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$dir/findings/$t/" "$dir/corpus/$t" "$dir/seeds/$t" >"$log" 2>&1
  rc=$?
  rm -rf "$FUZZ_SCRATCH_DIR"
  coverage=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed 's/.*DONE *//; s/ exec\/s:.*//')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  if [ "$rc" -eq 0 ]; then
    echo "ok   $t: ${execs:-?} executions in ${seconds} s; ${coverage:-no final stats}"
  else
    echo "FAIL $t: exit $rc, finding in $dir/findings/$t/ (log $log):"
    grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -n 5 | sed 's/^/     /'
    failed+=("$t")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: findings in ${failed[*]}"; exit 1; }
exit 0
}
