#!/usr/bin/env bash
# make test-asan: the whole suite (or tests/run.sh PATTERN's part of it) against a build of the CPU
# backend with AddressSanitizer and UndefinedBehaviorSanitizer, any report ending the process that
# made it. The build is a checkout of this tree's committed HEAD in build/asan (uncommitted changes
# are not tested); its logs are kept in build/asan-logs. Leak detection is off: Open MPI and HDF5
# keep allocations until exit by design. About 3x the plain suite's time.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$root/build/asan
git -C "$root" worktree remove --force "$dir" 2>/dev/null
rm -rf "$dir"
git -C "$root" worktree prune
git -C "$root" worktree add -q --detach "$dir" HEAD || exit 1
trap 'rm -rf "$root/build/asan-logs"; cp -r "$dir/build/test-logs" "$root/build/asan-logs" 2>/dev/null;
      git -C "$root" worktree remove --force "$dir"' EXIT
cd "$dir" || exit 1
export CC="gcc -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
echo "test-asan: building HEAD $(git rev-parse --short HEAD) with $CC"
CFLAGS="-O1 -g" make -j"$(nproc)" CUDA=0 CC="$CC" all tests-bin >"$root/build/asan-build.log" 2>&1 ||
  { tail -n 20 "$root/build/asan-build.log"; exit 1; }
export SHARDLORA_SHARED=${SHARDLORA_SHARED:-$(cd "$root/.." && pwd)/shared}
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 SHARDLORA_SANITIZED=1
tests/run.sh "$@"
