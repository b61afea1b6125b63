#!/usr/bin/env bash
# shardlora-tokenize on a generated 2 GB corpus, 1 and 2 ranks, against tokenizers' batch encoding on the
# same machine and tokenizer (bench/README.md, "tokenize"). Run from the project root after make:
#   nice bench/tokenize/run.sh [OUT_DIR]     (default runs/bench_tokenize; needs about 9 GB of disk there)
# The corpus is tinyshakespeare 1,900 times over (2.1 GB); the tokenizer a Llama 3 layout byte-level BPE
# trained here (hf_batch.py train). Each rank's peak RSS and CPU seconds come from GNU time around that
# rank (CPU seconds, besides wall time, because these machines' 2 cores are shared).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/bench_tokenize}
mkdir -p "$out"
py=$(tools/hf-venv.sh)
shakespeare=../shared/data/tinyshakespeare.txt
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
[ -f "$out/tokenizer.json" ] || "$py" bench/tokenize/hf_batch.py train "$out" "$shakespeare"
if [ ! -f "$out/corpus.txt" ]; then
  for _ in $(seq 1900); do cat "$shakespeare"; done >"$out/corpus.txt"
fi
results=$out/results.jsonl
: >"$results"
for np in 1 2; do
  rm -f "$out/data.h5" "$out"/rss.*
  t0=$(date +%s.%N)
  mpirun -np "$np" --bind-to none sh -c '/usr/bin/time -f "%M %U %S" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$out/rss" \
    bin/shardlora-tokenize --text "$out/corpus.txt" --tokenizer "$out/tokenizer.json" --out "$out/data.h5" \
    | tee "$out/log.$np"
  t1=$(date +%s.%N)
  rss=$(cut -d' ' -f1 "$out"/rss.* | sort -n | tail -1)
  cpu=$(awk '{ s += $2 + $3 } END { print s / NR }' "$out"/rss.*)
  tokens=$(sed -n 's/.* documents, \([0-9]*\) tokens .*/\1/p' "$out/log.$np")
  bytes=$(stat -c %s "$out/corpus.txt")
  echo "{\"tool\": \"shardlora-tokenize\", \"ranks\": $np, \"seconds\": $(echo "$t1 - $t0" | bc), \"mb\": $((bytes / 1000000)), \"tokens\": $tokens, \"peak_rss_mb_per_rank\": $((rss / 1024)), \"cpu_seconds_per_rank\": $cpu}" >>"$results"
done
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads "$py" bench/tokenize/hf_batch.py encode "$out/tokenizer.json" "$out/corpus.txt" 200 \
    | sed 's/^{/{"tool": "tokenizers encode_batch", /' >>"$results"
done
cat "$results"
