#!/usr/bin/env bash
# shardlora against its peers on one GPU, in one run: the same QLoRA step (Llama-3-8B shape or
# SHAPE=llama2-7b, random weights, NF4 + double quantization bs 64, LoRA r 16 alpha 32 on all seven
# projections, seq 2048 (SEQ) x micro-batch 16,384 / SEQ (MICRO_BATCH) = 16,384 tokens per step,
# bf16, AdamW lr 1e-4) in
#   shardlora train --device=cuda (bench/gpu/step.sh; activations kept),
#   transformers + PEFT + bitsandbytes (gradient checkpointing on),
#   Unsloth without checkpointing, and Unsloth with its offloaded checkpointing
# (bench/gpu/peers.py, each peer in its own python3 process), plus the HBM copy bandwidth and the
# bf16 GEMM rate that MFU is measured against. Prints one markdown table and the shardlora per-part
# GPU time; writes RESULTS_DIR/results.jsonl, results.md and logs/. See bench/README.md.
#
# On the GPU host, from the project root, with .gpuhost carried (it sources .gpuhost/env.sh and
# installs the peers' wheels with gpuhost_wheels itself when they are there):
#   RESULTS_DIR=$OUT bench/gpu/run.sh
#   LAYERS=4 STEPS=3 bench/gpu/run.sh           # quick: every side shrinks to 4 decoder layers
#   PEERS="hf" bench/gpu/run.sh                 # a subset of hf unsloth unsloth-gc
#   SHAPE=llama2-7b RESULTS_DIR=$OUT bench/gpu/run.sh   # Llama-2-7B: 32 kv heads (MHA), vocab 32000
#   SEQ=8192 RESULTS_DIR=$OUT bench/gpu/run.sh          # seq 8192 x micro-batch 2
# Smoke test on a machine without a GPU (tiny shape, all on the CPU; the Unsloth rows fail there;
# SHAPE and SEQ up to 512 apply to it too):
#   TINY=1 PYTHON=/work/.venv-hf/bin/python bench/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
tiny=${TINY:-0} shape=${SHAPE:-llama3-8b}
if [ "$tiny" = 1 ]; then
  layers=${LAYERS:-2} seq=${SEQ:-64} tokens=128 tinyflag=--tiny device=cpu    # as peers.py shape(tiny=True)
else
  layers=${LAYERS:-32} seq=${SEQ:-2048} tokens=16384 tinyflag='' device=cuda  # as peers.py shape(tiny=False)
fi
mb=${MICRO_BATCH:-$(( seq < tokens ? tokens / seq : 1 ))}
steps=${STEPS:-5} warmup=${WARMUP:-2}
peers=${PEERS:-"hf unsloth unsloth-gc"}
budget=${BUDGET_S:-540}            # the device allows 600 s a call: leave time for the table
peer_timeout=${PEER_TIMEOUT:-240}
work=${WORK:-/tmp/shardlora-peers}
results_dir=${RESULTS_DIR:-$work}
results=$results_dir/results.jsonl logs=$results_dir/logs
mkdir -p "$work" "$logs"
rm -f "$results"

say() { echo "run.sh [$((SECONDS - start)) s]: $*" >&2; }
left() { echo $((budget - (SECONDS - start))); }
# A side that could not run still gets its row, with the reason.
fail_row() {  # peer batch error
  "$py" - "$results" "$1" "$2" "$3" <<'PY'
import json, sys
path, peer, batch, err = sys.argv[1:5]
with open(path, "a") as f:
    f.write(json.dumps({"kind": "peer", "peer": peer, "batch": int(batch), "error": err}) + "\n")
PY
}
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1 | cut -c1-300; }

# The GPU host's recipe: MPI/HDF5/NCCL/cuDNN paths, then the peers' wheels (bitsandbytes, Unsloth)
# into /tmp/site. Sourced here even when the caller did (it is idempotent): a caller's
# gpuhost_wheels function does not reach this script. It is written for interactive shells, so it
# is sourced without -e/-u.
if [ -e .gpuhost/env.sh ]; then
  set +eu
  # shellcheck disable=SC1091  # the host's copy, not in the tree
  source .gpuhost/env.sh
  set -eu
fi
if declare -F gpuhost_wheels >/dev/null && [ "$tiny" != 1 ]; then
  say "installing the peers' wheels (gpuhost_wheels)"
  gpuhost_wheels >"$logs/wheels.log" 2>&1 || say "gpuhost_wheels failed (see logs/wheels.log); the peers will say why"
fi
py=${PYTHON:-python3}

# The run's shape, the table's headline: a shape or seq the peers cannot take ends the run here.
"$py" bench/gpu/peers.py shape --shape "$shape" $tinyflag --layers "$layers" --seq "$seq" --batch "$mb" \
  --out "$results" >"$logs/shape.log" 2>&1 || { say "$(last_line "$logs/shape.log")"; exit 2; }
say "shape $shape, $layers layers, seq $seq x micro-batch $mb"

# Build (a no-op when the caller has built); a failed build leaves the shardlora row to say so.
shardlora_ok=1
# On the GPU host CUDA=1, so a missing CUDA piece is named instead of a CPU-only build.
if [ "$tiny" = 1 ]; then make_goals=all; else make_goals="CUDA=1 all bench-gpu-bins"; fi
# shellcheck disable=SC2086  # several goals and flags
if ! make -s -j"$(nproc)" ${MAKE_FLAGS:-} $make_goals >"$logs/make.log" 2>&1; then
  shardlora_ok=0
  say "make failed: $(last_line "$logs/make.log")"
fi

# 1. The rates MFU is measured against, before anything else loads the GPU.
say "hardware rates"
"$py" bench/gpu/peers.py hw --shape "$shape" $tinyflag --seq "$seq" --batch "$mb" --device "$device" \
  --out "$results" >"$logs/hw.log" 2>&1 ||
  say "hw failed: $(last_line "$logs/hw.log")"
if [ -x build/bench/gpu/dequant ] && [ "$tiny" != 1 ]; then
  build/bench/gpu/dequant >"$logs/dequant.log" 2>&1 || true
  "$py" - "$results" "$logs/dequant.log" <<'PY'
import json, sys
with open(sys.argv[1], "a") as f:
    for line in open(sys.argv[2]):
        if line.startswith(("copy", "nf4")):
            f.write(json.dumps({"kind": "dequant", "line": " ".join(line.split())}) + "\n")
PY
fi

# 2. One random bf16 model, saved once: the peers load it, and shardlora imports the same weights.
# Named by all that shapes its weights (the seed is fixed), so a model of another shape is never reused.
hfdir=$work/hf-$shape-L$layers$([ "$tiny" != 1 ] || echo -tiny)
if [ ! -e "$hfdir/.complete" ]; then
  say "random model -> $hfdir"
  rm -rf "$hfdir"
  "$py" bench/gpu/peers.py model "$hfdir" --shape "$shape" $tinyflag --layers "$layers" --device "$device" \
    >"$logs/model.log" 2>&1 || {
    say "could not build the model: $(last_line "$logs/model.log")"; cat "$logs/model.log" >&2; exit 1; }
  touch "$hfdir/.complete"
fi

# 3. shardlora's pre-quantized copy, on the CPU in the background while the first peer loads; that
# peer waits for it before its timed steps (build.rc), so nothing else runs while a side is timed.
# Half the cores: the peer's own process keeps the rest.
sl_env=(LAYERS="$layers" SEQ="$seq" MICRO_BATCH="$mb" STEPS=$((warmup + steps)) WARMUP="$warmup" DOCS=window
  TIE=0 MODEL_SOURCE="hf:$hfdir" DEVICE="$device" BENCH_DIR="$work/shardlora" PYTHON="$py")
rm -f "$work/build.rc"
if [ "$shardlora_ok" = 1 ]; then
  say "shardlora model (background)"
  ( timeout -k 10 "$(left)" env "${sl_env[@]}" BUILD_ONLY=1 OMP_NUM_THREADS=$(( $(nproc) > 1 ? $(nproc) / 2 : 1 )) bench/gpu/step.sh \
      >"$logs/shardlora-build.log" 2>&1; echo $? >"$work/build.rc" ) &
  build_pid=$!
else
  echo 1 >"$work/build.rc"
  echo "make failed: $(last_line "$logs/make.log")" >"$logs/shardlora-build.log"
  build_pid=
fi

run_peer() {
  local p=$1 t
  t=$(left)
  if [ "$t" -lt 30 ]; then
    fail_row "$p" "$mb" "skipped: the run's time budget (BUDGET_S=$budget) is spent"; return
  fi
  [ "$t" -gt "$peer_timeout" ] && t=$peer_timeout
  say "peer $p (at most $t s)"
  local before rc=0
  before=$(grep -c "\"peer\": \"$p\"" "$results" 2>/dev/null || true)
  timeout -k 10 "$t" "$py" bench/gpu/peers.py train --peer "$p" --shape "$shape" $tinyflag --device "$device" \
    --layers "$layers" --seq "$seq" --batch "$mb" --model-dir "$hfdir" --steps "$steps" --warmup "$warmup" \
    --fallback --wait-for "$work/build.rc" --out "$results" >"$logs/peer-$p.log" 2>&1 || rc=$?
  # A process that died without writing its row (killed, timed out, crashed) gets one here.
  if [ "$(grep -c "\"peer\": \"$p\"" "$results" 2>/dev/null || true)" = "${before:-0}" ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      fail_row "$p" "$mb" "timed out after $t s: $(last_line "$logs/peer-$p.log")"
    else
      fail_row "$p" "$mb" "exit $rc: $(last_line "$logs/peer-$p.log")"
    fi
  fi
  [ "$rc" = 0 ] || say "peer $p: exit $rc (logs/peer-$p.log)"
}

run_shardlora() {
  [ -n "$build_pid" ] && { wait "$build_pid" || true; build_pid=; }
  if [ "$(cat "$work/build.rc")" != 0 ]; then
    fail_row shardlora "$mb" "model build failed: $(last_line "$logs/shardlora-build.log")"
    return
  fi
  local t rc=0
  t=$(left)
  if [ "$t" -lt 30 ]; then
    fail_row shardlora "$mb" "skipped: the run's time budget (BUDGET_S=$budget) is spent"; return
  fi
  say "shardlora train (at most $t s)"
  timeout -k 10 "$t" env "${sl_env[@]}" RESULT_JSONL="$results" bench/gpu/step.sh >"$logs/shardlora.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || fail_row shardlora "$mb" "exit $rc: $(last_line "$logs/shardlora.log")"
}

# 4. The HF peer first (it overlaps the build), then shardlora, then Unsloth (the likeliest to fail).
first=1
for p in $peers; do
  run_peer "$p"
  if [ "$first" = 1 ]; then run_shardlora; first=0; fi
done
[ "$first" = 1 ] && run_shardlora

# 5. The table, and shardlora's breakdown.
"$py" bench/gpu/peers.py table "$results" | tee "$results_dir/results.md"
echo
echo "shardlora per-part GPU time and peak memory (logs/shardlora.log):"
grep -E '^(profile|cuda):' "$logs/shardlora.log" 2>/dev/null || echo "(none: see logs/shardlora.log)"
say "done; results in $results_dir"
