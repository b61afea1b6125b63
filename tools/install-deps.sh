#!/usr/bin/env bash
# Install the Debian 12 packages shardlora needs, if any are missing (as root, with apt-get).
#   tools/install-deps.sh           what building and running need
#   tools/install-deps.sh --tests   also what the test suite needs (cmocka, PyTorch, h5py, Slurm, ...)
set -euo pipefail
pkgs=(build-essential pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
      libopenblas-dev libcjson-dev libslurm-dev)
if [ "${1:-}" = "--tests" ]; then
  pkgs+=(libcmocka-dev python3 python3-numpy python3-h5py python3-torch gnuplot-nox
        slurmctld slurmd slurm-client munge libpmix-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
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
