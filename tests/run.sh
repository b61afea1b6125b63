#!/usr/bin/env bash
# Run every test and print "N passed, N failed" last; exit nonzero on any failure.
# Tests: build/tests/test_* (cmocka, C), tests/*/test_*.sh (bash), tests/*/test_*.py (python3).
# Each reports its cases as TAP lines ("ok - name" / "not ok - name"); a test that exits nonzero
# without a "not ok" line counts as one failure. Select tests with a pattern: tests/run.sh quant
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export SHARDLORA_ROOT=$root
export SHARDLORA_SHARED=${SHARDLORA_SHARED:-$(cd "$root/.." && pwd)/shared}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl=self,vader
export CMOCKA_MESSAGE_OUTPUT=TAP OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1
export PYTHON=${PYTHON:-/usr/bin/python3} PYTHONDONTWRITEBYTECODE=1
pattern=${1:-}
logdir=$root/build/test-logs
mkdir -p "$logdir"

tests=()
for t in build/tests/test_* tests/*/test_*.sh tests/*/test_*.py; do
  [ -e "$t" ] || continue
  case "$t" in *.d|*.o) continue ;; esac
  [ -n "$pattern" ] && [[ "$t" != *"$pattern"* ]] && continue
  tests+=("$t")
done

passed=0 failed=0 failures=()
for t in "${tests[@]}"; do
  name=$(basename "$t"); log=$logdir/$name.log
  tmp=$(mktemp -d /tmp/shardlora-test.XXXXXX)
  start=$(date +%s)
  case "$t" in
    *.py) (cd "$tmp" && TEST_TMP=$tmp timeout 900 "$PYTHON" "$root/$t") >"$log" 2>&1 ;;
    *.sh) (cd "$tmp" && TEST_TMP=$tmp timeout 900 bash "$root/$t") >"$log" 2>&1 ;;
    *)    (cd "$tmp" && TEST_TMP=$tmp timeout 900 "$root/$t") >"$log" 2>&1 ;;
  esac
  rc=$?
  secs=$(( $(date +%s) - start ))
  np=$(grep -cE '^ok ' "$log" || true)
  nf=$(grep -cE '^not ok ' "$log" || true)
  if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then nf=1; echo "not ok - $name exited with status $rc" >>"$log"; fi
  passed=$((passed + np)); failed=$((failed + nf))
  if [ "$nf" -gt 0 ]; then
    printf 'FAIL %-40s %3d ok, %d failed (%ds)  log: %s\n' "$name" "$np" "$nf" "$secs" "$log"
    grep -E '^not ok ' "$log" | sed 's/^/     /'
    failures+=("$name")
  else
    printf 'ok   %-40s %3d ok (%ds)\n' "$name" "$np" "$secs"
  fi
  rm -rf "$tmp"
done
[ ${#failures[@]} -gt 0 ] && echo "failed tests: ${failures[*]} (logs in $logdir)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
