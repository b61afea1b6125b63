# tools/install-deps.sh without root: with packages missing (a stand-in dpkg-query says none is
# installed, a stand-in id says uid 1000) it stops before apt-get with the apt-get line to run.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
mkdir -p fake
printf '#!/bin/sh\nexit 1\n' >fake/dpkg-query
printf '#!/bin/sh\necho 1000\n' >fake/id
printf '#!/bin/sh\necho "apt-get must not run"; exit 99\n' >fake/apt-get
chmod +x fake/*
deps() { PATH=$TMP/fake:$PATH "$ROOT/tools/install-deps.sh" "$@"; }

expect_fail "as a user, a missing package stops it with the apt-get line" \
  '^install-deps: run as root: apt-get install build-essential pkg-config openmpi-bin .*libslurm-dev$' deps
err=$(deps 2>&1 >/dev/null)
check "without --tests it does not ask for the test packages" bash -c "! grep -q libcmocka-dev <<<'$err'"
expect_fail "--tests adds the test packages" 'apt-get install build-essential .* libcmocka-dev python3 .*python3-torch .*munge' deps --tests
expect_fail "--fuzz adds clang, libFuzzer and LLVM's OpenMP" 'apt-get install build-essential .*libslurm-dev clang-14 libclang-rt-14-dev libomp-14-dev$' deps --fuzz
err=$(deps --fuzz 2>&1 >/dev/null)
check "--fuzz does not ask for the test packages" bash -c "! grep -q libcmocka-dev <<<'$err'"
expect_fail "an unknown option is refused" '^usage: .*install-deps.sh \[--tests \| --fuzz\]' deps --test
out=$("$ROOT/tools/install-deps.sh" 2>&1); rc=$?
check "with everything installed it succeeds and installs nothing" test "$rc" = 0 -a -z "$out"
