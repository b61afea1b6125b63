# shardlora-inspect on files from shardlora-tokenize and from h5py (bf16, f16, groups, /config),
# and h5dump reading what shardlora-tokenize writes.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
TOK=$SHARED/data/llama2c_tokenizer.bin
head -c 20000 "$SHARED/data/tinyshakespeare.txt" > play.txt
"$BIN/shardlora-tokenize" --text play.txt --tokenizer "$TOK" --bos --eos --out play.h5 >/dev/null

# The reference numbers come from h5py, not from the tool under test.
read -r ntok ndoc < <("$PY" -c 'import h5py; f = h5py.File("play.h5", "r"); print(len(f["tokens"]), len(f["doc_offsets"]))')
"$BIN/shardlora-inspect" play.h5 > play.out
check "inspect: dataset kind" grep -qx "kind: dataset" play.out
check "inspect: /tokens with its shape [$ntok] and int32" grep -qE "^  /tokens +\[$ntok\] +int32 " play.out
check "inspect: /doc_offsets [$ndoc] int64" grep -qE "^  /doc_offsets +\[$ndoc\] +int64 " play.out
check "inspect: root attributes" grep -qE '^  vocab_size = 32000$' play.out
check "inspect: string attribute" grep -qE '^  tokenizer = "llama2c_tokenizer.bin"$' play.out
check "inspect: totals" grep -qE "^total: 2 datasets, $((ntok + ndoc)) elements" play.out

"$PY" - <<'PY'
import h5py, numpy as np
bf16 = h5py.h5t.IEEE_F32LE.copy()  # HDF5 custom float: f32 cut to 16 bits, 7 mantissa bits
bf16.set_fields(15, 7, 8, 0, 7); bf16.set_offset(0); bf16.set_precision(16); bf16.set_size(2); bf16.set_ebias(127)
with h5py.File("model.h5", "w") as f:
    f.attrs["shardlora_kind"] = "model"
    f.create_group("config").attrs.update({"hidden_size": 64, "norm_eps": 1e-5, "architecture": "llama"})
    g = f.require_group("model/layers/0/self_attn/q_proj")
    w = np.random.default_rng().standard_normal((64, 48)).astype(np.float32)
    d = h5py.h5d.create(g.id, b"weight", bf16, h5py.h5s.create_simple(w.shape))
    d.write(h5py.h5s.ALL, h5py.h5s.ALL, (w.view(np.uint32) >> 16).astype(np.uint16), mtype=bf16)  # raw bits
    assert np.allclose(g["weight"][()], w, rtol=1e-2, atol=1e-2)  # h5py reads it back as float32
    f["model/norm/weight"] = np.ones(64, np.float16)
    q = f.require_group("model/layers/0/mlp/up_proj/weight")
    q["packed"] = np.zeros(512, np.uint8)
    q["absmax"] = np.ones(16, np.float32)
with h5py.File("plain.h5", "w") as f:
    f["x"] = np.arange(3.0)
PY
"$BIN/shardlora-inspect" model.h5 > model.out
check "inspect: model kind" grep -qx "kind: model" model.out
check "inspect: custom bf16 type named bfloat16" grep -qE '^  /model/layers/0/self_attn/q_proj/weight +\[64, 48\] +bfloat16 +6.00 KiB' model.out
check "inspect: float16" grep -qE '^  /model/norm/weight +\[64\] +float16 ' model.out
check "inspect: quantized weight group members listed" grep -qE '^  /model/layers/0/mlp/up_proj/weight/packed +\[512\] +uint8 ' model.out
check "inspect: /config attributes" grep -qE '^  hidden_size = 64$' model.out
check "inspect: float attribute" grep -qE '^  norm_eps = 1e-05$' model.out
"$BIN/shardlora-inspect" plain.h5 > plain.out
check "inspect: file without shardlora_kind is unknown" grep -qx "kind: unknown" plain.out

echo "not an HDF5 file" > notes.txt
expect_fail "inspect: non-HDF5 file" "notes\.txt' is not an HDF5 file" "$BIN/shardlora-inspect" notes.txt
expect_fail "inspect: missing file" "missing\.h5'.*No such file" "$BIN/shardlora-inspect" missing.h5
expect_fail "inspect: no argument" "expected one HDF5 file" "$BIN/shardlora-inspect"

# h5dump, an independent reader, sees the tokenize output's types and first tokens.
first=$("$PY" -c 'import h5py; print(", ".join(map(str, h5py.File("play.h5", "r")["tokens"][:4])))')
h5dump -d /tokens -c 4 play.h5 > dump.out 2>&1
check "h5dump reads /tokens as 32-bit integers" grep -q "H5T_STD_I32LE" dump.out
check "h5dump shows the first tokens ($first)" grep -qF "(0): $first" dump.out
check "h5dump reads the dataset attributes" bash -c 'h5dump -a /shardlora_kind play.h5 | grep -q "\"dataset\""'
