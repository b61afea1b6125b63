# tests/run.sh cannot be fooled: on a scratch tree of tests (SHARDLORA_TEST_TREE) a test that reports
# no cases, one that exits 1 after only "ok" lines and one that prints "not ok" but exits 0 each fail
# the suite; a pattern selects tests by path and cmocka cases by name (tests/unit/filter.h); GPU tests
# are skipped with a visible line when nvidia-smi lists no GPU (a stand-in nvidia-smi says which).
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
tree=$TMP/tree
mkdir -p "$tree"/tests/{unit,e2e,tools,gpu} "$tree"/build/tests/gpu nogpu gpu gpu2
printf '#!/bin/sh\necho "No devices were found"; exit 6\n' >nogpu/nvidia-smi
printf '#!/bin/sh\necho "GPU 0: Stand-in (UUID: GPU-0)"\n' >gpu/nvidia-smi
printf '#!/bin/sh\necho "GPU 0: Stand-in (UUID: GPU-0)"\necho "GPU 1: Stand-in (UUID: GPU-1)"\n' >gpu2/nvidia-smi
chmod +x nogpu/nvidia-smi gpu/nvidia-smi gpu2/nvidia-smi

printf 'echo "ok - first"\necho "ok - second"\n' >"$tree/tests/e2e/test_passes.sh"
printf 'exit 0\n' >"$tree/tests/e2e/test_silent.sh"
printf 'echo "ok - before the crash"\nexit 1\n' >"$tree/tests/e2e/test_quits.sh"
printf 'print("not ok - wrong answer")\n' >"$tree/tests/tools/test_notok.py"
printf 'print("ok - on the GPU")\n' >"$tree/tests/gpu/test_kernel.py"
printf 'print("ok - on two GPUs")\n' >"$tree/tests/gpu/test_multi_gpu.py"
printf '#!/bin/sh\necho "ok - gemm"\n' >"$tree/build/tests/gpu/test_gemm"
chmod +x "$tree/build/tests/gpu/test_gemm"
cat >"$tree/tests/unit/test_cases.c" <<'EOF'
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h"

static void alpha_case(void **state) { assert_int_equal(1, 1); }
static void beta_case(void **state) { assert_int_equal(2, 2); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alpha_case),
        cmocka_unit_test(beta_case),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
EOF
if ! cc -I"$ROOT/tests/unit" "$tree/tests/unit/test_cases.c" -o "$tree/build/tests/test_cases" \
     $(pkg-config --libs cmocka 2>/dev/null || echo -lcmocka) 2>cc.err; then
  not_ok "a cmocka test with tests/unit/filter.h compiles"; sed 's/^/#   /' cc.err; exit 1
fi

# runner GPU|NOGPU [PATTERN]: run tests/run.sh on the scratch tree; sets $out and $rc.
runner() {
  local gpu=$1; shift
  out=$(PATH=$TMP/$gpu:$PATH SHARDLORA_TEST_TREE=$tree "$ROOT/tests/run.sh" "$@" 2>&1); rc=$?
}
# expect NAME RC LAST [REGEX...]: the last run exited with RC, printed LAST last, and every REGEX on a line.
expect() {
  local name=$1 want_rc=$2 want_last=$3 last re; shift 3
  last=$(printf '%s\n' "$out" | tail -n 1)
  local why=
  [ "$rc" = "$want_rc" ] || why="exit status $rc, expected $want_rc"
  [ "$last" = "$want_last" ] || why="${why:+$why; }last line '$last', expected '$want_last'"
  for re in "$@"; do printf '%s\n' "$out" | grep -qE -- "$re" || why="${why:+$why; }no line matches /$re/"; done
  if [ -z "$why" ]; then ok "$name"; else not_ok "$name ($why)"; printf '%s\n' "$out" | sed 's/^/#   /'; fi
}

runner nogpu
expect "every test without a GPU: the silent, crashing and not-ok tests fail the suite" 1 \
  "5 passed, 3 failed, 3 skipped" \
  '^FAIL test_silent\.sh +0 ok, 1 failed' '^     not ok - test_silent\.sh: reported no test cases$' \
  '^FAIL test_quits\.sh +1 ok, 1 failed' '^     not ok - test_quits\.sh exited with status 1$' \
  '^FAIL test_notok\.py +0 ok, 1 failed' '^ok +test_passes\.sh +2 ok' '^ok +test_cases +2 ok' \
  '^skipped: no GPU  test_gemm$' '^skipped: no GPU  test_kernel\.py$' '^skipped: no GPU  test_multi_gpu\.py$'
runner nogpu passes
expect "a passing test alone passes" 0 "2 passed, 0 failed"
runner nogpu silent
expect "a test that reports no cases fails" 1 "0 passed, 1 failed" 'reported no test cases'
runner nogpu quits
expect "a test that exits 1 after only ok lines fails" 1 "1 passed, 1 failed" 'exited with status 1'
runner nogpu notok
expect "a test that prints not ok and exits 0 fails" 1 "0 passed, 1 failed"
runner nogpu beta
expect "a pattern selects one cmocka case by name" 0 "1 passed, 0 failed" '^ok +test_cases \(cases \*beta\*\) +1 ok'
check "only that case ran" bash -c "grep -q 'beta_case' '$tree/build/test-logs/test_cases.log' &&
  ! grep -q 'alpha_case' '$tree/build/test-logs/test_cases.log'"
runner nogpu test_cases
expect "a pattern on the binary's name runs all its cases" 0 "2 passed, 0 failed"
runner nogpu no_test_is_called_this
expect "a pattern that selects nothing fails" 1 "0 passed, 0 failed" "^no tests match 'no_test_is_called_this'"
runner nogpu /gpu/
expect "GPU tests without a GPU are skipped, and skips alone do not pass" 1 "0 passed, 0 failed, 3 skipped" \
  '^skipped: no GPU  test_gemm$'
runner gpu /gpu/
expect "GPU tests run when nvidia-smi lists a GPU; multi-GPU ones need two" 0 "2 passed, 0 failed, 1 skipped" \
  '^ok +test_gemm +1 ok' '^ok +test_kernel\.py +1 ok' '^skipped: fewer than 2 GPUs  test_multi_gpu\.py$'
runner gpu2 /gpu/
expect "multi-GPU tests run when nvidia-smi lists two GPUs" 0 "3 passed, 0 failed" '^ok +test_multi_gpu\.py +1 ok'
