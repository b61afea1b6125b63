# Helpers for bash tests: source "$SHARDLORA_ROOT/tests/lib.sh". Cases print TAP lines.
set -uo pipefail
ROOT=${SHARDLORA_ROOT:?run tests through tests/run.sh or make test}
SHARED=$SHARDLORA_SHARED
BIN=$ROOT/bin
PY=${PYTHON:-/usr/bin/python3}
TMP=${TEST_TMP:-$(mktemp -d)}

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; }
# check NAME CMD...: the command must succeed.
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
# expect_fail NAME REGEX CMD...: the command must fail and its stderr must match REGEX (grep -E).
expect_fail() {
  local name=$1 pattern=$2; shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -eq 0 ]; then not_ok "$name (exit status 0; expected a failure)"; return; fi
  if printf '%s' "$err" | grep -qE -- "$pattern"; then ok "$name"
  else not_ok "$name (stderr did not match /$pattern/):"; printf '%s\n' "$err" | sed 's/^/#   /'; fi
}
# tiny_run_inputs VOCAB INTERMEDIATE SEED DOC_MIN DOC_MAX N_DOCS LAYERS: model.h5 and train.h5 in the
# current directory, as testlib.tiny_run_inputs makes them for the Python tests.
tiny_run_inputs() {
  "$PY" -c "import sys; sys.path.insert(0, '$ROOT/tests'); from testlib import tiny_run_inputs as t
t($1, $2, $3, ($4, $5), $6, layers=$7)"
}
# mpirun_n N CMD...: N ranks on this machine (oversubscribed when N > cores), bounded in time.
mpirun_n() { local n=$1; shift; timeout 300 mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
