# shardlora-plot on the metrics.h5 of a tiny training run and on a hand-made file with NaN rows:
# a PNG of plausible size, and the errors users meet (missing file, wrong kind, no gnuplot).
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
if ! command -v gnuplot >/dev/null; then
  not_ok "gnuplot is installed (shardlora-plot needs it: apt-get install gnuplot-nox)"
  exit 1
fi

is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
size_between() { local n; n=$(stat -c %s "$1"); [ "$n" -ge "$2" ] && [ "$n" -le "$3" ]; }
# width and height from the IHDR chunk (bytes 16..23, big-endian)
png_dims() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8}'; }

tiny_run_inputs 64 128 4 12 30 64 2 >/dev/null
"$PY" - <<'PY'
import h5py, numpy as np
# rows without a value are NaN: every 7th loss, the whole learning rate, all but one throughput
with h5py.File("gaps.h5", "w") as f:
    f.attrs["shardlora_kind"] = "metrics"
    step = np.arange(1, 301)
    loss = 3 * np.exp(-step / 50) + 0.1
    loss[::7] = np.nan
    tps = np.full(300, np.nan)
    tps[5] = 1000.0
    for name, v in (("step", step.astype(np.int64)), ("loss", loss), ("lr", np.full(300, np.nan)), ("tokens_per_s", tps)):
        f["metrics/" + name] = v
PY
mpirun_n 2 "$BIN/shardlora" train --model=model.h5 --data=train.h5 --seq-len=32 --micro-batch=2 --global-batch=4 \
  --steps=5 --log-every=1 --out=run >/dev/null

check "plot: metrics.h5 of a training run" "$BIN/shardlora-plot" run/metrics.h5 run.png
check "plot: the output starts with the PNG signature" is_png run.png
check "plot: plausible file size (5 KB .. 2 MB)" size_between run.png 5000 2000000
dims=$(png_dims run.png)
check "plot: image is 900x1000 ($dims)" test "$dims" = 900x1000
check "plot: no temporary files left beside the image" test -z "$(ls | grep -F 'run.png.tmp')"
check "plot: NaN rows and an empty series are skipped" "$BIN/shardlora-plot" gaps.h5 gaps.png
check "plot: the NaN plot is a PNG" is_png gaps.png

expect_fail "plot: missing metrics file" "missing\.h5'.*No such file" "$BIN/shardlora-plot" missing.h5 x.png
expect_fail "plot: not a metrics file" "train\.h5: not a metrics file" "$BIN/shardlora-plot" train.h5 x.png
expect_fail "plot: no gnuplot on PATH" "gnuplot not found: install it with apt-get install gnuplot-nox" \
  env PATH="$TMP/empty" "$BIN/shardlora-plot" run/metrics.h5 x.png
expect_fail "plot: output directory missing" "cannot create nodir/x\.png" "$BIN/shardlora-plot" run/metrics.h5 nodir/x.png
expect_fail "plot: wrong argument count" "expected a metrics file and an output PNG" "$BIN/shardlora-plot" run/metrics.h5
check "plot: a failed plot leaves no x.png" test ! -e x.png
