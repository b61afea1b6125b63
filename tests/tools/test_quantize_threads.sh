# shardlora-quantize and shardlora-import --quantize write the same bytes on 1 and on 2 OpenMP
# threads (the encoder splits tensors into blocks across threads), for every quantized format,
# from bf16 and f32 files, with partial last blocks and partial double-quantization groups.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
arch=(--hidden 96 --intermediate 200 --layers 2 --heads 4 --kv-heads 2 --vocab 500 --seed 5)
"$BIN/shardlora-init" model.bf16.h5 "${arch[@]}" --dtype bf16 >/dev/null
"$BIN/shardlora-init" model.f32.h5 "${arch[@]}" --dtype f32 >/dev/null

# same_bytes NAME CMD... (CMD writes OUT): run on 1 and 2 threads; h5diff must find no difference
same_bytes() {
  local name=$1; shift
  rm -f t1.h5 t2.h5
  OMP_NUM_THREADS=1 "${@/OUT/t1.h5}" >/dev/null && OMP_NUM_THREADS=2 "${@/OUT/t2.h5}" >/dev/null ||
    { not_ok "$name (the command failed)"; return; }
  check "$name" h5diff t1.h5 t2.h5
}
for m in bf16 f32; do
  for q in "nf4 --double-quant" "fp4 --double-quant --blocksize 128" "nf4 --blocksize 256" "int8 --blocksize 256"; do
    # shellcheck disable=SC2086 # q holds several options
    same_bytes "quantize $m --quant $q: 1 and 2 threads identical" "$BIN/shardlora-quantize" model.$m.h5 OUT --quant $q
  done
done
for q in "nf4 --double-quant" "fp4" "int8 --blocksize 64"; do
  # shellcheck disable=SC2086
  same_bytes "import llama2c --quantize $q --dtype bf16: 1 and 2 threads identical" \
    "$BIN/shardlora-import" llama2c "$SHARED/models/stories260K.bin" OUT --dtype bf16 --quantize $q
done
