#!/usr/bin/env bash
# One QLoRA training configuration on one GPU, Llama-3-8B layer shapes (hidden 4096, 32 heads, 8 kv
# heads, intermediate 14336, vocab 128256, tied embeddings), random weights, NF4 + double
# quantization, LoRA r 16 alpha 32 on all seven projections, seq 2048: tokens/s, peak device
# memory, model FLOP utilisation and the GPU time per part of the step (SHARDLORA_PROFILE=1).
# LAYERS (default 2) decoder layers are built; the per-layer time gives the 32-layer estimate,
# printed as such. Run from the project root on the GPU host after a CUDA build:
#   LAYERS=2 MICRO_BATCH=8 STEPS=6 bench/gpu/step.sh
set -euo pipefail
layers=${LAYERS:-2} mb=${MICRO_BATCH:-8} steps=${STEPS:-6} seq=${SEQ:-2048}
dir=${BENCH_DIR:-/tmp/shardlora-bench}
mkdir -p "$dir"
model=$dir/llama3-8b-shape-L$layers.h5 qmodel=$dir/llama3-8b-shape-L$layers.nf4dq.h5 data=$dir/tokens.h5
py=${PYTHON:-python3}
t0=$(date +%s.%N)
[ -e "$qmodel" ] || {
  bin/shardlora-init "$model" --hidden 4096 --intermediate 14336 --layers "$layers" --heads 32 --kv-heads 8 \
    --vocab 128256 --max-pos 8192 --rope-theta 500000 --tie --std 0.02 --seed 1
  bin/shardlora-quantize "$model" "$qmodel" --quant nf4 --double-quant
  rm -f "$model"
}
t1=$(date +%s.%N)
# random documents of 512..4096 tokens, enough for every step
$py - "$data" "$(( (steps + 1) * mb * seq * 2 ))" <<'PY'
import sys, h5py, numpy as np
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
lens = []
while sum(lens) < n: lens.append(int(rng.integers(512, 4097)))
with h5py.File(path, "w") as f:
    f["tokens"] = rng.integers(3, 128256, sum(lens)).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(128256)
PY
rm -rf "$dir/run"
SHARDLORA_PROFILE=1 bin/shardlora train --model="$qmodel" --data="$data" --out="$dir/run" --device=cuda \
  --seq-len="$seq" --micro-batch="$mb" --lora-r=16 --lora-alpha=32 --lr=1e-4 --steps="$steps" --log-every=1 \
  ${EXTRA:-} 2>&1 | tee "$dir/train.log"
t2=$(date +%s.%N)
$py - "$dir/run/metrics.h5" "$layers" "$mb" "$seq" "$t0" "$t1" "$t2" <<'PY'
import sys, h5py, numpy as np
path, L, mb, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0, t1, t2 = map(float, sys.argv[5:8])
with h5py.File(path, "r") as f:
    tps = f["metrics/tokens_per_s"][1:]
D, F, Q, KV, V = 4096, 14336, 4096, 1024, 128256
linear = D * Q + 2 * D * KV + Q * D + 3 * D * F
# forward + input-gradient backward of every base linear and the LM head, plus causal attention
# (per token 2 FLOPs x seq/2 keys x Q for each of QK^T and PV forward, and the backward's four
# products: 6 seq Q)
def flops_per_token(layers):
    return 4 * (layers * linear + V * D) + layers * 6 * seq * Q
step_time = mb * seq / np.median(tps)
print(f"bench: {L} layers, micro-batch {mb} x seq {seq}: {np.median(tps):.0f} tokens/s (median of steps 2..)")
print(f"bench: model FLOPs per token {flops_per_token(L) / 1e9:.2f} GFLOP; achieved {flops_per_token(L) * np.median(tps) / 1e12:.0f} TFLOP/s")
print(f"bench: model build + quantize {t1 - t0:.0f} s, train wall {t2 - t1:.0f} s")
PY
