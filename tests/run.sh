#!/usr/bin/env bash
# Run every test and print "N passed, N failed" last (", N skipped" when tests that need a GPU had
# none); exit nonzero on any failure, or when nothing passed.
# Tests: build/tests/test_* (cmocka, from tests/unit/*.c), tests/*/test_*.sh (bash),
# tests/*/test_*.py (python3; those in tests/hf with the Hugging Face stack's python,
# $SHARDLORA_HF_PYTHON, default the environment tools/hf-venv.sh makes); on a machine where `nvidia-smi -L` lists a GPU also
# build/tests/gpu/test_* and tests/gpu/test_*, elsewhere each of those prints "skipped: no GPU"
# (tests/gpu/test_multi_gpu* need two GPUs: "skipped: fewer than 2 GPUs"); with SHARDLORA_SANITIZED
# set (make test-asan), test_valgrind.sh prints "skipped: sanitized build".
# Each test reports its cases as TAP lines ("ok - name" / "not ok - name"). A test that exits
# nonzero without a "not ok" line counts as one failure, and so does one that reports no cases.
#   tests/run.sh PATTERN   only the tests whose path contains PATTERN, and the cmocka cases whose
#                          names contain it (their binary then runs with CMOCKA_TEST_FILTER=*PATTERN*)
#   SHARDLORA_TEST_TREE    a directory holding tests/ and build/tests/ to take the tests from instead
#                          of this checkout (the runner's own test uses it); logs go to its build/test-logs
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tree=$(cd "${SHARDLORA_TEST_TREE:-$root}" && pwd) || exit 1
export SHARDLORA_ROOT=$root
export SHARDLORA_SHARED=${SHARDLORA_SHARED:-$(cd "$root/.." && pwd)/shared}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl=self,vader
export CMOCKA_MESSAGE_OUTPUT=TAP OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1
export PYTHON=${PYTHON:-/usr/bin/python3} PYTHONDONTWRITEBYTECODE=1
hf_python=${SHARDLORA_HF_PYTHON:-${SHARDLORA_HF_VENV:-/var/cache/shardlora/hf-venv}/bin/python}
pattern=${1:-}
logdir=$tree/build/test-logs
mkdir -p "$logdir"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')

# case_filter TEST: for a cmocka binary whose path does not contain the pattern, the cmocka glob
# that selects its cases named like the pattern (from its source's cmocka_unit_test* lines), if any.
case_filter() {
  local src=$tree/tests/unit/$(basename "$1").c
  [ -f "$src" ] || return 1
  grep -oE 'cmocka_unit_test[a-z_]*\( *[A-Za-z_][A-Za-z_0-9]*' "$src" | sed 's/.*( *//' |
    grep -qF -- "$pattern" && echo "*$pattern*"
}

tests=() filters=() skips=()
for t in "$tree"/build/tests/test_* "$tree"/build/tests/gpu/test_* "$tree"/tests/*/test_*.sh "$tree"/tests/*/test_*.py; do
  [ -f "$t" ] || continue
  case "$t" in *.d|*.o) continue ;; esac
  rel=${t#"$tree"/} filter=
  if [ -n "$pattern" ] && [[ "$rel" != *"$pattern"* ]]; then
    [[ "$rel" == build/tests/test_* ]] && filter=$(case_filter "$t") || continue
  fi
  case "$rel" in
    */gpu/*)
      [ "$gpus" -ge 1 ] || { skips+=("no GPU  $(basename "$t")"); continue; }
      case "$rel" in */gpu/test_multi_gpu*) [ "$gpus" -ge 2 ] || { skips+=("fewer than 2 GPUs  $(basename "$t")"); continue; } ;; esac ;;
    */test_valgrind.sh) # memcheck cannot run a binary built with AddressSanitizer (make test-asan)
      [ -z "${SHARDLORA_SANITIZED:-}" ] || { skips+=("sanitized build  $(basename "$t")"); continue; } ;;
  esac
  tests+=("$t") filters+=("$filter")
done
if [ ${#tests[@]} -eq 0 ] && [ ${#skips[@]} -eq 0 ]; then
  echo "no tests${pattern:+ match '$pattern'} (build them with make tests-bin)"
  echo "0 passed, 0 failed"
  exit 1
fi

passed=0 failed=0 failures=()
for i in "${!tests[@]}"; do
  t=${tests[$i]} filter=${filters[$i]}
  name=$(basename "$t"); log=$logdir/$name.log
  tmp=$(mktemp -d /tmp/shardlora-test.XXXXXX)
  start=$(date +%s)
  case "$t" in
    */hf/*.py)
      if [ -x "$hf_python" ]; then (cd "$tmp" && TEST_TMP=$tmp timeout 900 "$hf_python" "$t") >"$log" 2>&1
      else echo "not ok - $name: no Hugging Face environment at $hf_python (make it with tools/hf-venv.sh)" >"$log"; false; fi ;;
    *.py) (cd "$tmp" && TEST_TMP=$tmp timeout 900 "$PYTHON" "$t") >"$log" 2>&1 ;;
    *.sh) (cd "$tmp" && TEST_TMP=$tmp timeout 900 bash "$t") >"$log" 2>&1 ;;
    *)    (cd "$tmp" && TEST_TMP=$tmp CMOCKA_TEST_FILTER=$filter timeout 900 "$t") >"$log" 2>&1 ;;
  esac
  rc=$?
  secs=$(( $(date +%s) - start ))
  np=$(grep -cE '^ok ' "$log" || true)
  nf=$(grep -cE '^not ok ' "$log" || true)
  if [ "$nf" -eq 0 ] && [ "$rc" -ne 0 ]; then nf=1; echo "not ok - $name exited with status $rc" >>"$log"
  elif [ "$nf" -eq 0 ] && [ "$np" -eq 0 ]; then nf=1; echo "not ok - $name: reported no test cases" >>"$log"; fi
  passed=$((passed + np)); failed=$((failed + nf))
  label=$name${filter:+ (cases $filter)}
  if [ "$nf" -gt 0 ]; then
    printf 'FAIL %-40s %3d ok, %d failed (%ds)  log: %s\n' "$label" "$np" "$nf" "$secs" "$log"
    grep -E '^not ok ' "$log" | sed 's/^/     /'
    failures+=("$name")
  else
    printf 'ok   %-40s %3d ok (%ds)\n' "$label" "$np" "$secs"
  fi
  rm -rf "$tmp"
done
for s in "${skips[@]}"; do echo "skipped: $s"; done
[ ${#failures[@]} -gt 0 ] && echo "failed tests: ${failures[*]} (logs in $logdir)"
echo "$passed passed, $failed failed${skips[*]:+, ${#skips[@]} skipped}"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
