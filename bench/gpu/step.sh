#!/usr/bin/env bash
# One QLoRA training configuration on one GPU, Llama-3-8B layer shapes (hidden 4096, 32 heads, 8 kv
# heads, intermediate 14336, vocab 128256; SHAPE=llama2-7b: 32 kv heads, intermediate 11008, vocab
# 32000), random weights, NF4 + double quantization, LoRA r 16 alpha 32 on all seven projections,
# seq 2048 (SEQ) x micro-batch 16,384 / SEQ (MICRO_BATCH): tokens/s, peak device memory, model FLOP
# utilisation and the GPU time per part of the step (SHARDLORA_PROFILE=1).
# LAYERS (default 2) decoder layers are built; the per-layer time gives the 32-layer estimate,
# printed as such. Run from the project root on the GPU host after a CUDA build:
#   LAYERS=2 MICRO_BATCH=8 STEPS=6 bench/gpu/step.sh
# Knobs bench/gpu/run.sh sets (defaults keep this script's earlier behaviour):
#   MODEL_SOURCE=init       shardlora-init --quant nf4 --double-quant (TIE=1: tied embeddings, the default)
#                           of SHAPE (llama3-8b or llama2-7b, bench/gpu/peers.py's table of shapes)
#   MODEL_SOURCE=hf:DIR     shardlora-import of a Hugging Face directory, quantized on the way in
#   DOCS=random|window      documents of 512..4096 random tokens, or exactly SEQ+1 (one per window)
#   WARMUP=1                first steps left out of the median
#   DEVICE=cuda             --device for shardlora train (cpu for a smoke test)
#   RESULT_JSONL=FILE       append the result as one JSON object (bench/gpu/peers.py table reads it)
#   BUILD_ONLY=1            build (or find) the model file and stop
#   RANKS=N                 N ranks, one per GPU, under mpirun (micro-batch per rank; tokens/s of the job)
#   QUANT=nf4-dq|int8       the base (MODEL_SOURCE=init): NF4 + double quantization written pre-quantized
#                           (the default), or INT8 quantized at load from a shardlora-init
#                           --generate-at-load file (a 70B-class INT8 base is 70 GB: more than the disk)
set -euo pipefail
layers=${LAYERS:-2} steps=${STEPS:-6} seq=${SEQ:-2048} warmup=${WARMUP:-1} shape=${SHAPE:-llama3-8b}
mb=${MICRO_BATCH:-$(( seq < 16384 ? 16384 / seq : 1 ))}
dir=${BENCH_DIR:-/tmp/shardlora-bench}
source_=${MODEL_SOURCE:-init} tie=${TIE:-1} docs=${DOCS:-random} device=${DEVICE:-cuda} quant=${QUANT:-nf4-dq}
case $quant in
  nf4-dq) store_flags="--quant nf4 --double-quant" load_flags='' suffix=nf4dq ;;
  int8) store_flags=--generate-at-load load_flags=--quant=int8 suffix=recipe ;;
  *) echo "step.sh: QUANT must be nf4-dq or int8, found '$quant'" >&2; exit 2 ;;
esac
[ "$quant" = nf4-dq ] || [ "$source_" = init ] || { echo "step.sh: QUANT=$quant needs MODEL_SOURCE=init" >&2; exit 2; }
mkdir -p "$dir"
data=$dir/tokens.h5
py=${PYTHON:-python3}

# The model-building step, kept in one function so a faster writer can replace it: it must leave a
# pre-quantized (nf4, double quant, blocksize 64) model file at $1, or with QUANT=int8 the recipe.
build_model() {
  local out=$1
  case $source_ in
    init)  # written pre-quantized from the seed, no float file in between; the peers' table of shapes
      local tie_flag='' shape_flags
      [ "$tie" = 1 ] && tie_flag=--tie
      shape_flags=$($py bench/gpu/peers.py shape --init-flags --shape "$shape" --layers "$layers" --seq "$seq")
      # shellcheck disable=SC2086  # several options
      bin/shardlora-init "$out.part" $shape_flags $tie_flag --std 0.02 --seed 1 --dtype bf16 $store_flags ;;
    hf:*)
      # The peers' own random weights: every side trains the same model.
      bin/shardlora-import hf "${source_#hf:}" "$out.part" --quantize nf4 --double-quant ;;
    *) echo "step.sh: MODEL_SOURCE must be init or hf:DIR, found '$source_'" >&2; exit 2 ;;
  esac
  mv "$out.part" "$out"  # only a complete file is reused by a later run
}

case $source_ in
  init) qmodel=$dir/$shape-shape-L$layers-tie$tie.$suffix.h5 ;;
  *) qmodel=$dir/$(basename "${source_#hf:}").nf4dq.h5 ;;
esac
t0=$(date +%s.%N)
# (not "|| build_model": set -e would not apply inside it)
if [ ! -e "$qmodel" ]; then build_model "$qmodel"; fi
t1=$(date +%s.%N)
if [ "${BUILD_ONLY:-0}" = 1 ]; then echo "step.sh: model $qmodel"; exit 0; fi
# Random token documents, enough for every step, vocabulary as the model's.
$py - "$data" "$(( (steps + 1) * mb * seq * 2 ))" "$qmodel" "$docs" "$seq" <<'PY'
import sys, h5py, numpy as np
path, n, model, docs, seq = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
with h5py.File(model, "r") as f:
    vocab = int(f["config"].attrs["vocab_size"])
rng = np.random.default_rng(0)
if docs == "window":  # seq + 1 tokens: each window is one whole document, as the peers' sequences
    lens = [seq + 1] * (n // (seq + 1) + 1)
else:
    lens = []
    while sum(lens) < n: lens.append(int(rng.integers(512, 4097)))
with h5py.File(path, "w") as f:
    f["tokens"] = rng.integers(3, vocab, sum(lens)).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(vocab)
PY
# RANKS > 1: one rank per GPU under mpirun (tokens/s is then the whole job's)
launch=()
[ "${RANKS:-1}" -gt 1 ] && launch=(mpirun -np "$RANKS" --bind-to none)
train=("${launch[@]}" bin/shardlora train --model="$qmodel" --data="$data" --out="$dir/run" --device="$device"
  --seq-len="$seq" --micro-batch="$mb" --lora-r=16 --lora-alpha=32 --lr=1e-4 --steps="$steps" --log-every=1
  $load_flags)
# The plan --dry-run prints, against what the run then holds (in the result below).
rm -rf "$dir/run"
# shellcheck disable=SC2086  # EXTRA holds several options
"${train[@]}" ${EXTRA:-} --dry-run 2>&1 | tee "$dir/plan.log" | grep -E "^  " || true
rm -rf "$dir/run"
# shellcheck disable=SC2086
SHARDLORA_PROFILE=1 "${train[@]}" ${EXTRA:-} 2>&1 | tee "$dir/train.log"
t2=$(date +%s.%N)
$py - "$dir/run/metrics.h5" "$qmodel" "$mb" "$seq" "$warmup" "$dir/train.log" "${RESULT_JSONL:-}" "$t0" "$t1" "$t2" <<'PY'
import json, re, sys, h5py, numpy as np
sys.path.insert(0, "bench/gpu")
from peers import flops_per_token  # the one formula every side of bench/gpu/run.sh is measured by
path, model, mb, seq, warmup, log, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), sys.argv[6], sys.argv[7]
t0, t1, t2 = map(float, sys.argv[8:11])
with h5py.File(path, "r") as f:
    tps = f["metrics/tokens_per_s"][warmup:]
with h5py.File(model, "r") as f:
    c = f["config"].attrs
    shape = dict(hidden=int(c["hidden_size"]), intermediate=int(c["intermediate_size"]),
                 layers=int(c["num_hidden_layers"]), heads=int(c["num_attention_heads"]),
                 kv_heads=int(c["num_key_value_heads"]), vocab=int(c["vocab_size"]),
                 max_pos=int(c["max_position_embeddings"]), rope_theta=float(c["rope_theta"]), seq=seq)
    tie = bool(c["tie_word_embeddings"])
L, fl = shape["layers"], flops_per_token(shape)
med = float(np.median(tps))
print(f"bench: {L} layers, micro-batch {mb} x seq {seq}: {med:.0f} tokens/s (median of steps {warmup + 1}..)")
print(f"bench: model FLOPs per token {fl / 1e9:.2f} GFLOP; achieved {fl * med / 1e12:.0f} TFLOP/s")
print(f"bench: model build + quantize {t1 - t0:.0f} s, train wall {t2 - t1:.0f} s")
text = open(log).read()
peak = re.search(r"cuda: peak memory of the buffers ([0-9.]+) GiB, ([0-9.]+) GiB with the attention and GEMM "
                 r"workspaces; device memory in use at the end ([0-9.]+) GiB", text)
plan = re.search(r"total on each GPU +([0-9.]+) MiB", open(log.replace("train.log", "plan.log")).read())
if peak and plan:
    print(f"bench: --dry-run planned {float(plan[1]) / 1024:.2f} GiB on the GPU; the run peaked at {peak[2]} GiB (pool "
          f"{peak[1]} GiB + workspaces), {peak[3]} GiB in use at exit with the CUDA context")
kept = re.search(r"activations: (kept|recomputed)", text)
if out:
    row = {"kind": "shardlora", "peer": "shardlora", "name": "shardlora", "layers": L, "seq": seq, "batch": mb,
           "tokens_per_step": mb * seq, "tokens_per_s": med, "step_s": mb * seq / med,
           "step_s_min": float(mb * seq / tps.max()), "step_s_max": float(mb * seq / tps.min()),
           "steps": int(len(tps)), "warmup": warmup, "flops_per_token": fl,
           "tied": tie, "shape": shape, "build_s": t1 - t0, "train_wall_s": t2 - t1,
           "profile": [l for l in text.splitlines() if l.startswith("profile:")]}
    notes = ["activations kept (no recompute)" if not kept or kept[1] == "kept" else "activations recomputed (--act-ckpt)"]
    if "(--act-offload)" in text:
        notes.append("layer inputs offloaded to pinned host memory (--act-offload)")
    if plan:
        row["planned_gib"] = float(plan[1]) / 1024
        notes.append(f"--dry-run planned {float(plan[1]) / 1024:.1f} GiB")
    if peak:
        row["peak_gib"], row["pool_peak_gib"], row["in_use_end_gib"] = float(peak[2]), float(peak[1]), float(peak[3])
        notes.append(f"peak = pool high-water {peak[1]} GiB + attention/GEMM workspaces; {peak[3]} GiB in use at exit "
                     f"incl. the CUDA context")
    row["notes"] = "; ".join(notes)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
PY
