#!/usr/bin/env bash
# Install the Debian 12 packages shardlora needs, if any are missing (as root, with apt-get). It
# needs only bash and dpkg, so it is the first command on a bare machine (make is not there yet).
#   tools/install-deps.sh           what building and running the demo need (make and gcc included)
#   tools/install-deps.sh --tests   also what the test suite needs (cmocka, PyTorch, h5py, Slurm, ...),
#                                   the Hugging Face stack from PyPI that tests/hf checks against
#                                   (tools/hf-venv.sh, cached outside the checkout) and, with nvcc on
#                                   the PATH, the cuDNN frontend headers (from PyPI)
#   tools/install-deps.sh --fuzz    also what make fuzz needs: clang with libFuzzer and LLVM's OpenMP
# Without root, a missing package stops it with the apt-get line to run.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=0 fuzz=0
case "${1:-}" in
  "") ;;
  --tests) tests=1 ;;
  --fuzz) fuzz=1 ;;
  *) echo "usage: $0 [--tests | --fuzz]" >&2; exit 2 ;;
esac
pkgs=(build-essential pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
      libopenblas-dev libcjson-dev libpcre2-dev libicu-dev libslurm-dev)
if [ "$tests" = 1 ]; then
  # iproute2 (ss: free ports) and procps (pgrep) are used by the Slurm and signal tests, time
  # (GNU /usr/bin/time: peak memory) by the tool tests, valgrind by the memcheck of a 2-rank run.
  pkgs+=(libcmocka-dev python3 python3-numpy python3-h5py python3-torch gnuplot-nox
        slurmctld slurmd slurm-client munge libpmix-dev iproute2 procps time valgrind python3-venv)
  command -v nvcc >/dev/null && ! python3 -m pip --version >/dev/null 2>&1 && pkgs+=(python3-pip)
fi
# the fuzz build only (make fuzz); the normal build is gcc's
[ "$fuzz" = 1 ] && pkgs+=(clang-14 libclang-rt-14-dev libomp-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
if [ "$tests" = 1 ]; then tools/hf-venv.sh >/dev/null; fi
# The CUDA backend's attention needs the cuDNN frontend headers; only a machine with nvcc builds it.
if [ "$tests" = 1 ] && command -v nvcc >/dev/null; then tools/fetch-cudnn-frontend.sh; fi
