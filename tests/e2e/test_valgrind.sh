#!/usr/bin/env bash
# valgrind memcheck over a 2-rank training run (NF4 + double quantization, a checkpoint, the
# adapter) and a 2-rank eval of it, CPU backend: no invalid read or write, no use of uninitialised
# memory, no bad free in any process (Open MPI's own PMIx padding suppressed: valgrind.supp).
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
command -v valgrind >/dev/null || { not_ok "valgrind is not installed (tools/install-deps.sh --tests)"; exit 1; }
tiny_run_inputs 64 128 5 10 30 50 2 >/dev/null
vg=(valgrind -q --error-exitcode=99 --num-callers=30 --suppressions="$ROOT/tests/e2e/valgrind.supp"
    --log-file=vg.%p.log)
mpirun_n 2 "${vg[@]}" "$BIN/shardlora" train --model=model.h5 --data=train.h5 --out=run --device=cpu --seq-len=32 \
  --micro-batch=2 --quant=nf4 --double-quant --lora-r=4 --steps=3 --ckpt-every=3 >train.log 2>&1
check "a 2-rank training run under memcheck exits 0, with no memcheck error" test $? -eq 0
mpirun_n 2 "${vg[@]}" "$BIN/shardlora" eval --model=model.h5 --data=train.h5 --device=cpu --seq-len=32 \
  --adapter=run/adapter.h5 --out=eval.h5 >eval.log 2>&1
check "a 2-rank eval of its adapter under memcheck exits 0, with no memcheck error" test $? -eq 0
check "the run wrote its checkpoint and adapter" test -s run/checkpoints/step_00000003.h5 -a -s run/adapter.h5
# what memcheck said, for the log
cat vg.*.log
