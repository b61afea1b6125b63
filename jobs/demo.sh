#!/usr/bin/env bash
# The demo: make a small LLaMA-style model and a learnable dataset with shardlora's own tools,
# then evaluate it on 2 ranks. Runs on a laptop or a login node; the Slurm scripts in jobs/ are
# the real way to run. Outputs go to input/ (model, data) and runs/demo/ (results).
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${DEMO_RANKS:-2}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p input runs/demo

# A model: 4 layers, hidden 128, grouped-query attention, vocabulary 256, random weights.
bin/shardlora-init input/demo_model.h5 --arch llama --hidden 128 --intermediate 344 --layers 4 \
  --heads 4 --kv-heads 2 --vocab 256 --max-pos 256 --seed 1

# Learnable data: each document is BOS then an arithmetic progression a, a+d, a+2d, ... over the
# ids 3..255, so after two tokens the rest is predictable. 2000 documents as JSONL token ids.
awk -v seed=7 'BEGIN {
  srand(seed)
  for (doc = 0; doc < 2000; doc++) {
    a = int(rand() * 253); d = 1 + int(rand() * 9); n = 16 + int(rand() * 48)
    line = "{\"input_ids\": [1"
    for (i = 0; i < n; i++) line = line ", " (3 + (a + i * d) % 253)
    print line "]}"
  }
}' > input/demo_data.jsonl
bin/shardlora-tokenize --jsonl input/demo_data.jsonl --vocab-size 256 --out input/demo_data.h5

mpirun -np "$ranks" --bind-to none bin/shardlora eval --model=input/demo_model.h5 \
  --data=input/demo_data.h5 --seq-len=64 --micro-batch=16 --out=runs/demo/eval.h5
echo "demo: results in runs/demo/eval.h5 (h5dump -g /eval runs/demo/eval.h5)"
