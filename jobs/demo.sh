#!/usr/bin/env bash
# The demo: make a small LLaMA-style model and a learnable dataset with shardlora's own tools,
# fine-tune QLoRA adapters (NF4 base with double quantization, sharded over 2 ranks), and evaluate
# the held-out loss before and after. Runs on a laptop or a login node; the Slurm scripts in jobs/ are
# the real way to run. Outputs go to input/ (model, data) and runs/demo/ (results).
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${DEMO_RANKS:-2}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p input runs/demo

# A model: 4 layers, hidden 128, grouped-query attention, vocabulary 256, random weights.
bin/shardlora-init input/demo_model.h5 --arch llama --hidden 128 --intermediate 344 --layers 4 \
  --heads 4 --kv-heads 2 --vocab 256 --max-pos 256 --std 0.1 --seed 1

# Learnable data: each document is BOS then an arithmetic progression a, a+d, a+2d, ... over the
# ids 3..255, so after two tokens the rest is predictable (d in 1..3). 2000 documents as JSONL token ids.
awk -v seed=7 'BEGIN {
  srand(seed)
  for (doc = 0; doc < 2000; doc++) {
    a = int(rand() * 253); d = 1 + int(rand() * 3); n = 16 + int(rand() * 48)
    line = "{\"input_ids\": [1"
    for (i = 0; i < n; i++) line = line ", " (3 + (a + i * d) % 253)
    print line "]}"
  }
}' > input/demo_data.jsonl
head -n 1800 input/demo_data.jsonl > input/demo_train.jsonl
tail -n 200 input/demo_data.jsonl > input/demo_heldout.jsonl
bin/shardlora-tokenize --jsonl input/demo_train.jsonl --vocab-size 256 --out input/demo_train.h5
bin/shardlora-tokenize --jsonl input/demo_heldout.jsonl --vocab-size 256 --out input/demo_heldout.h5

run() { mpirun -np "$ranks" --bind-to none bin/shardlora "$@"; }
base=(--model=input/demo_model.h5 --quant=nf4 --double-quant --seq-len=64)
run eval "${base[@]}" --data=input/demo_heldout.h5 --out=runs/demo/eval_before.h5
run train "${base[@]}" --data=input/demo_train.h5 --out=runs/demo --overwrite --micro-batch=8 --global-batch=16 \
  --lora-r=16 --lora-alpha=32 --lr=3e-3 --schedule=cosine --warmup-steps=20 --steps=400 --log-every=25
run eval "${base[@]}" --data=input/demo_heldout.h5 --adapter=runs/demo/adapter.h5 --out=runs/demo/eval_after.h5
echo "demo: adapter runs/demo/adapter.h5, metrics runs/demo/metrics.h5, held-out loss in runs/demo/eval_*.h5"
