#!/usr/bin/env bash
# Every example job script in jobs/ is a whole run configuration: its options must be ones
# shardlora train takes, with valid values. Each script's args=( ... ) array is evaluated as the
# script would (its defaults for MODEL, DATA, OUT) and given to shardlora train --dry-run: a
# command-line error exits 2; the run must get past the options and stop at the first input file
# missing on this machine (exit 1, naming it), or, for --device=cuda on a build without the CUDA
# backend, at that.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
for job in "$ROOT"/jobs/*.sbatch; do
  name=$(basename "$job")
  grep -q '^args=(' "$job" || continue
  # its variable defaults (MODEL=${MODEL:-...}) and the args array
  block=$(awk '/^[A-Z_][A-Z0-9_]*=/{print} /^args=\(/{on=1} on{print} on&&/^\)/{exit}' "$job")
  # shellcheck disable=SC2034  # used by the evaluated block
  err=$(
    set +u
    eval "$block"
    mpirun_n 1 "$BIN/shardlora" train "${args[@]}" --dry-run 2>&1 >/dev/null
    echo "exit $?"
  )
  rc=$(printf '%s\n' "$err" | tail -n 1)
  # (a build without the CUDA backend stops a --device=cuda job there instead, after its options parsed)
  if [ "$rc" = "exit 1" ] && printf '%s' "$err" | grep -qE "cannot open (model|dataset) file|No such file|this build has no CUDA backend"; then
    ok "$name: its options parse; the run stops at the missing input"
  else
    not_ok "$name: expected exit 1 at a missing input file, got:"
    printf '%s\n' "$err" | sed 's/^/#   /'
  fi
done
