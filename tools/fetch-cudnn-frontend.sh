#!/usr/bin/env bash
# Fetch the cuDNN frontend (header-only C++ API of cuDNN's graph interface) from PyPI's
# nvidia-cudnn-frontend wheel into build/deps/cudnn-frontend/include, where the Makefile looks.
# It is never committed; machines without network (the GPU host) get it carried from here.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${CUDNN_FRONTEND_VERSION:-1.32.0}
dest=build/deps/cudnn-frontend
[ -e "$dest/include/cudnn_frontend.h" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ] && exit 0
command -v python3 >/dev/null || { echo "fetch-cudnn-frontend: python3 (with pip) is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
  -d "$tmp" "nvidia-cudnn-frontend==$version" \
  || { echo "fetch-cudnn-frontend: could not download nvidia-cudnn-frontend $version from PyPI" >&2; exit 1; }
rm -rf "$dest" && mkdir -p "$dest"
python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("include/")])' "$tmp"/*.whl "$dest"
echo "$version" > "$dest/VERSION"
echo "fetch-cudnn-frontend: cuDNN frontend $version headers in $dest/include"
