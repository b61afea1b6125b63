# Sourced by the batch scripts: run one shardlora step under srun, forward Slurm's warning
# signal to it, and requeue the job when shardlora stopped early for the time limit (status 3).
# The job then restarts from its newest checkpoint (the scripts pass --resume=auto).
#   run_requeueable bin/shardlora train --option=value ...
run_requeueable() {
  srun --mpi=pmix "$@" &
  local pid=$! rc
  # --signal=B:USR1@N reaches this shell only; srun passes USR1 on to every task.
  trap 'kill -USR1 "$pid" 2>/dev/null' USR1 TERM
  while :; do
    wait "$pid"; rc=$?
    kill -0 "$pid" 2>/dev/null || break   # wait returned for the trap: keep waiting for srun
  done
  if [ "$rc" -eq 3 ]; then
    echo "shardlora stopped early to checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
  fi
  return "$rc"
}
