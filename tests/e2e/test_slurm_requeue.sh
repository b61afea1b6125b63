#!/usr/bin/env bash
# jobs/demo.sbatch through a real local Slurm: warned with USR1 mid-run, the job checkpoints, exits 3,
# requeues itself, resumes and finishes with the losses of an uninterrupted job.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
source "$ROOT/tests/slurm/demo_job.sh"
export STEPS=80
OUT=straight timeout 300 sbatch --wait --output=straight.out "$ROOT/jobs/demo.sbatch" >/dev/null
check "the uninterrupted demo job completes" test -f straight/adapter.h5

job=$(OUT=warned sbatch --parsable --output=warned.out "$ROOT/jobs/demo.sbatch")
steps() { "$PY" -c "import h5py; print(len(h5py.File('warned/metrics.h5','r')['metrics/step']))" 2>/dev/null || echo 0; }
for _ in $(seq 600); do [ "$(steps)" -ge 10 ] && break; sleep 0.1; done
scancel --signal=USR1 --batch "$job"
for _ in $(seq 900); do
  state=$(scontrol show job "$job" 2>/dev/null | grep -oE 'JobState=[A-Z]+' | cut -d= -f2)
  restarts=$(scontrol show job "$job" 2>/dev/null | grep -oE 'Restarts=[0-9]+' | cut -d= -f2)
  [ "$state" = COMPLETED ] && break; sleep 0.2
done
check "warned job stopped with status 3 and requeued itself" grep -q "requeueing job $job" warned.out
check "the requeued job resumed from its checkpoint" grep -qE "resume: from warned/checkpoints/step_[0-9]+\.h5" warned.out
check "the job finished after the requeue (state $state, restarts $restarts)" test "$state" = COMPLETED -a "${restarts:-0}" -ge 1
check "its 80 losses equal the uninterrupted job's bit for bit" "$PY" -c "
import h5py, numpy as np, sys
a = h5py.File('straight/metrics.h5', 'r')['metrics/loss'][:]; b = h5py.File('warned/metrics.h5', 'r')['metrics/loss'][:]
sys.exit(0 if len(a) == 80 and np.array_equal(a, b) else 1)"
