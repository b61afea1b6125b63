#!/usr/bin/env bash
# The fuzzers' findings, replayed in the normal build: every input in tests/fuzz/regressions/TARGET/
# goes through build/fuzzers/TARGET (the target's own entry point, linked with replay.c), which must
# not crash and must end as that directory's OUTCOMES file says: one line per input,
# "NAME: accepted" or "NAME: rejected: MESSAGE" (scratch paths written as INPUT).
set -uo pipefail
root=${SHARDLORA_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
failures=0
for dir in "$root"/tests/fuzz/regressions/*/; do
  target=$(basename "$dir")
  bin=$root/build/fuzzers/$target
  if [ ! -x "$bin" ]; then
    echo "not ok - $target: no replay program $bin (build it with make tests-bin)"
    failures=$((failures + 1)); continue
  fi
  inputs=()
  for f in "$dir"*; do [ "$(basename "$f")" = OUTCOMES ] || inputs+=("$f"); done
  out=$(cd "$dir" && "$bin" "${inputs[@]##*/}" 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "not ok - $target: the replay exited with status $rc (a crash?) after:"
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/#   /'
    failures=$((failures + 1)); continue
  fi
  for f in "${inputs[@]}"; do
    name=$(basename "$f")
    want=$(grep -a -m1 "^$name: " "$dir/OUTCOMES" 2>/dev/null | cut -d' ' -f2-)
    got=$(printf '%s\n' "$out" | grep -a -m1 "^$name: " | cut -d' ' -f2-)
    if [ -z "$want" ]; then
      echo "not ok - $target/$name: no line for it in $dir""OUTCOMES (got '$got')"
      failures=$((failures + 1))
    elif [ "$got" != "$want" ]; then
      echo "not ok - $target/$name: expected '$want', got '$got'"
      failures=$((failures + 1))
    else
      echo "ok - $target/$name: $got"
    fi
  done
done
[ "$failures" -eq 0 ]
