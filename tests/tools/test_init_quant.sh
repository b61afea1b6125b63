# shardlora-init --quant writes the file that shardlora-init followed by shardlora-quantize writes
# (h5diff: every dataset and attribute), for each format, from f32 and bf16, with partial last
# blocks and partial double-quantization groups; on 1 and 3 threads; in bounded memory; and it
# evaluates as the same model quantized at load time. Bad option combinations exit with status 2.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
arch=(--hidden 96 --intermediate 200 --layers 2 --heads 4 --kv-heads 2 --vocab 500 --seed 5)
for d in f32 bf16; do "$BIN/shardlora-init" plain.$d.h5 "${arch[@]}" --dtype $d >/dev/null; done
for d in f32 bf16; do
  for q in "nf4 --double-quant" "int8" "fp4 --double-quant --blocksize 128" "nf4 --blocksize 256" "int8 --blocksize 64"; do
    # shellcheck disable=SC2086 # q holds several options
    "$BIN/shardlora-quantize" plain.$d.h5 two_steps.h5 --quant $q >/dev/null &&
      "$BIN/shardlora-init" direct.h5 "${arch[@]}" --dtype $d --quant $q >/dev/null ||
      { not_ok "init --dtype $d --quant $q (a command failed)"; continue; }
    check "init --dtype $d --quant $q: h5diff-identical to init + shardlora-quantize" h5diff two_steps.h5 direct.h5
  done
done
"$BIN/shardlora-init" tied.h5 "${arch[@]}" --tie --dtype bf16 >/dev/null &&
  "$BIN/shardlora-quantize" tied.h5 tied_q.h5 --quant nf4 --double-quant >/dev/null &&
  "$BIN/shardlora-init" tied_direct.h5 "${arch[@]}" --tie --dtype bf16 --quant nf4 --double-quant >/dev/null
check "init --tie --quant nf4 --double-quant: identical to the two steps" h5diff tied_q.h5 tied_direct.h5

# each value is a function of its index, pieces go to threads in any split: the thread count changes no byte
for extra in "--dtype bf16" "--dtype f32 --quant nf4 --double-quant" "--dtype bf16 --quant nf4 --double-quant" \
  "--dtype bf16 --quant int8"; do
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 "$BIN/shardlora-init" t1.h5 "${arch[@]}" $extra >/dev/null &&
    OMP_NUM_THREADS=3 "$BIN/shardlora-init" t3.h5 "${arch[@]}" $extra >/dev/null
  check "init $extra: 1 and 3 threads write identical files" h5diff t1.h5 t3.h5
done

# memory: 0.44 GB of f32 weights (largest projection 16 MB) generated in well under that
big=(--hidden 1024 --intermediate 4096 --layers 6 --heads 8 --kv-heads 4 --vocab 8192 --seed 2)
/usr/bin/time -f '%M' -o rss.txt "$BIN/shardlora-init" big.h5 "${big[@]}" --dtype bf16 --quant nf4 --double-quant >/dev/null
rss_kb=$(tail -1 rss.txt)
check "init --quant of a 0.44 GB-in-f32 model peaks at ${rss_kb} kB, under 200 MB" test "$rss_kb" -lt 200000
/usr/bin/time -f '%M' -o rss.txt "$BIN/shardlora-init" big_plain.h5 "${big[@]}" --dtype f32 >/dev/null
rss_kb=$(tail -1 rss.txt)
check "init of the same model in f32 (0.44 GB file) peaks at ${rss_kb} kB, under 200 MB" test "$rss_kb" -lt 200000
check "the finished file is renamed: no .partial left" test ! -e big_plain.h5.partial
rm -f big.h5 big_plain.h5

# the pre-quantized file evaluates exactly as the plain file quantized at load time
"$PY" - <<'PY'
import sys
sys.path.insert(0, __import__("os").environ["SHARDLORA_ROOT"] + "/tests")
import numpy as np
from testlib import write_tokens
rng = np.random.default_rng(1)
write_tokens("data.h5", [rng.integers(3, 500, 40) for _ in range(6)], 500)
PY
"$BIN/shardlora-init" direct.h5 "${arch[@]}" --dtype bf16 --quant nf4 --double-quant >/dev/null
ev=(--data=data.h5 --seq-len=16 --micro-batch=2 --device=cpu)
mpirun_n 2 "$BIN/shardlora" eval --model=plain.bf16.h5 --quant=nf4 --double-quant "${ev[@]}" --out=e_load.h5 >/dev/null 2>&1 &&
  mpirun_n 2 "$BIN/shardlora" eval --model=direct.h5 "${ev[@]}" --out=e_direct.h5 >/dev/null 2>&1
check "eval of init --quant's file = eval of the plain file with --quant at load (same loss, bit for bit)" \
  h5diff e_load.h5 e_direct.h5 /eval/loss

# usage_error NAME REGEX ARGS...: shardlora-init ARGS must exit with status 2 and say REGEX
usage_error() {
  local name=$1 pattern=$2 err rc; shift 2
  err=$("$BIN/shardlora-init" bad.h5 "${arch[@]}" "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -eq 2 ] && printf '%s' "$err" | grep -qE -- "$pattern" && [ ! -e bad.h5 ]; then ok "$name"
  else not_ok "$name (exit status $rc, stderr:)"; printf '%s\n' "$err" | sed 's/^/#   /'; fi
}
usage_error "init --quant q5: unknown type named" "options --quant q5: unknown quantization type 'q5' \(expected nf4, fp4 or int8\)" --quant q5
usage_error "init --quant int8 --double-quant is refused" "double quantization applies to nf4 and fp4 only" --quant int8 --double-quant
usage_error "init --quant nf4 --blocksize 100 is refused" "options --quant nf4 --blocksize 100: .*64, 128 or 256" --quant nf4 --blocksize 100
usage_error "init --quant int8 --blocksize 128 is refused" "int8 blocksize must be 64, 256 or 4096" --quant int8 --blocksize 128
usage_error "init --double-quant without --quant is refused" "option --double-quant needs --quant \(nf4, fp4 or int8\)" --double-quant
usage_error "init --blocksize without --quant is refused" "option --blocksize needs --quant" --blocksize 64
usage_error "init --quant nf4 --dtype f16 is refused" "option --dtype: expected f32 or bf16, found 'f16'" --quant nf4 --dtype f16
usage_error "init --quant without a value is refused" "option --quant needs a value" --quant
