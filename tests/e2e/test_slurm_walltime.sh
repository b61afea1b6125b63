#!/usr/bin/env bash
# A job with a short --time and no warning signal checkpoints before its limit by itself: rank 0
# reads the remaining wall time from libslurm, and all ranks stop with status 3 after a checkpoint.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
source "$ROOT/tests/slurm/demo_job.sh"
export STEPS=1000000 CKPT_BEFORE_END=50 OUT=short
# one minute of wall time, and the warning signal moved to SIGURG, which nothing traps or acts on
job=$(sbatch --parsable --time=1 --signal=B:URG@1 --output=short.out "$ROOT/jobs/demo.sbatch")
for _ in $(seq 450); do grep -q "requeueing job" short.out 2>/dev/null && break; sleep 0.2; done
scancel "$job"
check "the job stopped by itself before its time limit" grep -q "wall time nearly over" short.out
check "it checkpointed first" bash -c "ls short/checkpoints | grep -qE '^step_[0-9]+\.h5$'"
check "and asked to be requeued (status 3)" grep -q "requeueing job $job" short.out
