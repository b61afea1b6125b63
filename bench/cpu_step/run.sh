#!/usr/bin/env bash
# Times one QLoRA training step of shardlora's CPU backend against the same step in PyTorch float32
# on the CPU (bench/cpu_step/torch_step.py), in the same run: same model shape, batch, NF4 + double
# quantization, LoRA r 16 on all seven projections, AdamW. See bench/README.md.
#
#   bench/cpu_step/run.sh            # both configurations, about 3-4 minutes on 2 cores
#   CONFIGS=large bench/cpu_step/run.sh
#   WORK=/tmp/x STEPS=7 bench/cpu_step/run.sh
#   OPENBLAS_CORETYPE=Cooperlake bench/cpu_step/run.sh   # force OpenBLAS's kernel choice (both sides)
#
# Per configuration: 1 rank x 1 thread vs torch 1 thread (batch 4 x 256 tokens), and 2 ranks x 1
# thread (global batch 8) vs torch 2 threads (batch 8). shardlora's step times come from
# OUT/metrics.h5 (/metrics/tokens_per_s; ms/step = tokens per step / tokens_per_s); the first WARMUP
# steps are skipped and the median of the rest is reported; torch likewise (time.perf_counter).
# Output: WORK/results.jsonl (one line per measurement) and WORK/results.md (the table rows).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
PY=/usr/bin/python3  # Debian's python3 with torch 1.13 and h5py
WORK=${WORK:-$repo/runs/bench_cpu_step${OPENBLAS_CORETYPE:+_$OPENBLAS_CORETYPE}}
STEPS=${STEPS:-7}      # steps per run, including warm-up
WARMUP=${WARMUP:-2}
CONFIGS=${CONFIGS:-"large small"}
RANKS=${RANKS:-"1 2"}
SEQ=256
MB=4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
[ -x bin/shardlora ] || make CUDA=0 -j2
mkdir -p "$WORK"
rm -f "$WORK/results.jsonl"
# Both sides do their matmuls in Debian's OpenBLAS 0.3.21 (shardlora links libopenblas.so.0, torch
# libblas.so.3 -> openblas-pthread): report which kernel set it picked on this CPU.
blas_core=$($PY -c "import ctypes; l = ctypes.CDLL('libopenblas.so.0'); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())")
echo "== $(nproc --all) cores, $(lscpu | sed -n 's/^Model name: *//p'); OpenBLAS core: $blas_core (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"

shape() {
  case $1 in
    large) echo "--hidden 512 --intermediate 1376 --layers 4 --heads 8 --kv-heads 4 --vocab 4096 --max-pos 512" ;;
    small) echo "--hidden 256 --intermediate 688 --layers 2 --heads 4 --kv-heads 2 --vocab 2048 --max-pos 512" ;;
    *) echo "unknown config $1" >&2; exit 2 ;;
  esac
}

for cfg in $CONFIGS; do
  dir=$WORK/$cfg
  mkdir -p "$dir"
  # shellcheck disable=SC2046
  bin/shardlora-init "$dir/model.h5" --arch llama $(shape "$cfg") --seed 1 >/dev/null
  bin/shardlora-quantize "$dir/model.h5" "$dir/model.q.h5" --quant nf4 --double-quant >/dev/null
  vocab=$(shape "$cfg" | sed 's/.*--vocab \([0-9]*\).*/\1/')
  # random-token documents of exactly seq-len + 1 tokens: each is one training window
  $PY - "$dir/data.h5" "$vocab" $((SEQ + 1)) $((STEPS * MB * 2 + 16)) <<'EOF'
import sys, h5py, numpy as np
path, vocab, L, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
with h5py.File(path, "w") as f:
    f["tokens"] = rng.integers(0, vocab, n * L).astype(np.int32)
    f["doc_offsets"] = (np.arange(n + 1) * L).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(vocab)
EOF
  for np_ in $RANKS; do
    out=$dir/train_np$np_
    rm -rf "$out"
    echo "== $cfg: shardlora train, $np_ rank(s) x 1 thread, micro-batch $MB, $STEPS steps"
    mpirun -np "$np_" bin/shardlora train --model="$dir/model.h5" --data="$dir/data.h5" --out="$out" \
      --quant=nf4 --double-quant --lora-r=16 --lora-targets=all-linear --seq-len=$SEQ --micro-batch=$MB \
      --steps="$STEPS" --log-every=1 --threads=1 2>&1 | grep -E '^(train|step)' | sed 's/^/   /'
    $PY - "$out/metrics.h5" "$cfg" "$np_" $((np_ * MB * SEQ)) "$WARMUP" >>"$WORK/results.jsonl" <<'EOF'
import sys, json, statistics, h5py
path, cfg, ranks, toks, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with h5py.File(path, "r") as f:
    tps = f["metrics/tokens_per_s"][:]
ms = [1000 * toks / t for t in tps[warm:]]
med = statistics.median(ms)
print(json.dumps({"config": cfg, "impl": "shardlora", "ranks": ranks, "threads": 1, "tokens_per_step": toks,
                  "ms_per_step": round(med, 1), "ms_min": round(min(ms), 1), "ms_max": round(max(ms), 1),
                  "tokens_per_s": round(toks / (med / 1000), 1), "steps_timed": len(ms)}))
EOF
    echo "== $cfg: PyTorch fp32, $np_ thread(s), batch $((np_ * MB))"
    $PY bench/cpu_step/torch_step.py --model "$dir/model.h5" --quantized "$dir/model.q.h5" --data "$dir/data.h5" \
      --threads "$np_" --batch $((np_ * MB)) --seq-len $SEQ --lora-r 16 --steps $((STEPS - WARMUP)) --warmup "$WARMUP" \
      | $PY -c "import sys, json
for line in sys.stdin:
    d = json.loads(line); d['config'] = '$cfg'; d['ranks'] = $np_; print(json.dumps(d), flush=True)" \
      | tee -a "$WORK/results.jsonl" | sed 's/^/   /'
  done
done

# The table: one row per (config, ranks); ratio = shardlora ms/step / PyTorch (fp32 base) ms/step.
$PY - "$WORK/results.jsonl" "$(date -u +%Y-%m-%d)" "$blas_core" >"$WORK/results.md" <<'EOF'
import sys, json
rows = [json.loads(l) for l in open(sys.argv[1])]
date, core = sys.argv[2], sys.argv[3]
print("| date | OpenBLAS core | config | shardlora ranks x threads / torch threads | tokens/step | shardlora ms/step | "
      "PyTorch fp32 ms/step | ratio | PyTorch dequant-per-step ms/step | ratio | shardlora tok/s | "
      "PyTorch fp32 tok/s | PyTorch dequant tok/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
keys = sorted({(r["config"], r["ranks"]) for r in rows}, key=lambda k: (k[0] != "large", k[1]))
for cfg, ranks in keys:
    got = {r["impl"]: r for r in rows if r["config"] == cfg and r["ranks"] == ranks}
    s, t, d = got.get("shardlora"), got.get("torch-fp32"), got.get("torch-dequant")
    if not (s and t and d):
        continue
    print(f"| {date} | {core} | {cfg} | {ranks} x 1 / {t['threads']} | {s['tokens_per_step']} | {s['ms_per_step']:.0f} | "
          f"{t['ms_per_step']:.0f} | {s['ms_per_step'] / t['ms_per_step']:.2f} | {d['ms_per_step']:.0f} | "
          f"{s['ms_per_step'] / d['ms_per_step']:.2f} | {s['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} | "
          f"{d['tokens_per_s']:.0f} |")
EOF
echo "== results ($WORK/results.md)"
cat "$WORK/results.md"
