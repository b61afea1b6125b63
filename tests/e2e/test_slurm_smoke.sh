#!/usr/bin/env bash
# A real local Slurm (tests/slurm/cluster.sh: munged, slurmctld, slurmd under $TMP/slurm): a 2-task
# batch job runs `srun --mpi=pmix` (hostname, then a 2-rank shardlora eval that must match mpirun),
# exit codes reach sbatch --wait and scontrol, USR1 reaches the batch shell or the steps as asked,
# --signal=B:USR1@N fires, scontrol requeue (from outside and from the job itself) reruns the job
# under the same id with SLURM_RESTART_COUNT=1, and libslurm's slurm_get_rem_time answers.
source "$SHARDLORA_ROOT/tests/lib.sh"
cd "$TMP"
CLUSTER=$ROOT/tests/slurm/cluster.sh
SD=$TMP/slurm
trap '"$CLUSTER" stop "$SD" >/dev/null 2>&1' EXIT
trap 'exit 143' TERM INT

for d in slurmctld slurmd munged sbatch; do
  command -v "$d" >/dev/null || { not_ok "Slurm is installed ($d missing: apt-get install slurmctld slurmd slurm-client munge)"; exit 1; }
done
if env_line=$("$CLUSTER" start "$SD"); then eval "$env_line"; ok "cluster starts and the node is idle"
else not_ok "cluster starts and the node is idle"; exit 1; fi
check "start again is a no-op" "$CLUSTER" start "$SD"
check "MpiDefault=pmix" grep -qx 'MpiDefault=pmix' "$SD/slurm.conf"

# job_field ID FIELD: one field of scontrol show job (kept MinJobAge=600 s after the end).
job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# wait_end ID SECS: wait until the job has ended; prints its state.
wait_end() {
  local s= end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    s=$(job_field "$1" JobState)
    case "$s" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) echo "$s"; return 0 ;; esac
    sleep 0.3
  done
  echo "${s:-unknown}-after-$2s"; return 1
}
# wait_grep FILE REGEX SECS: wait until a line of FILE matches.
wait_grep() {
  local end=$((SECONDS + $3))
  until grep -qE -- "$2" "$1" 2>/dev/null; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
# wait_files SECS FILE...: wait until all exist.
wait_files() {
  local end=$((SECONDS + $1)) f; shift
  for f in "$@"; do until [ -e "$f" ]; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done; done
}
show() { echo "# $1:"; sed 's/^/#   /' "$1" 2>/dev/null; }

# Inputs: a tiny model and dataset, and the loss of a plain mpirun -np 2 eval to compare with.
"$BIN/shardlora-init" model.h5 --hidden 32 --heads 4 --kv-heads 2 --intermediate 48 --layers 2 \
  --vocab 64 --max-pos 128 --seed 3 >/dev/null
"$PY" - <<'EOF'
import h5py, numpy as np
rng = np.random.default_rng(3)
with h5py.File("data.h5", "w") as f:
    f["tokens"] = rng.integers(0, 64, 300).astype(np.int32)
    f["doc_offsets"] = np.array([0, 100, 300], dtype=np.int64)
    f.attrs["vocab_size"] = 64
EOF
mpirun_n 2 "$BIN/shardlora" eval --model=model.h5 --data=data.h5 --seq-len=32 --out=ref.h5 >/dev/null 2>&1
loss() { "$PY" -c 'import h5py, sys; print(repr(float(h5py.File(sys.argv[1])["eval/loss"][()])))' "$1" 2>/dev/null; }

# 1. A 2-task batch job: srun --mpi=pmix makes one 2-rank MPI world of Open MPI processes.
cat >mpi.sh <<EOF
#!/bin/bash
#SBATCH --ntasks=2 --job-name=smoke --output=mpi.out
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
set -e
srun --mpi=pmix hostname
srun --mpi=pmix "$BIN/shardlora" eval --model=model.h5 --data=data.h5 --seq-len=32 --out=slurm_eval.h5
EOF
t0=$SECONDS
timeout 120 sbatch --wait --parsable mpi.sh >mpi.id 2>mpi.err; rc=$?
id=$(cut -d';' -f1 mpi.id)
echo "# 2-task job $id: sbatch --wait returned $rc after $((SECONDS - t0)) s"
if [ "$rc" -eq 0 ] && [ "$(job_field "$id" JobState)" = COMPLETED ] && [ "$(job_field "$id" ExitCode)" = 0:0 ]; then
  ok "2-task job completes (sbatch --wait 0, JobState=COMPLETED, ExitCode=0:0)"
else not_ok "2-task job completes (rc $rc, state $(job_field "$id" JobState) $(job_field "$id" ExitCode))"; show mpi.err; show mpi.out; fi
if [ "$(grep -cx "$(hostname)" mpi.out)" -eq 2 ]; then ok "srun --mpi=pmix hostname runs 2 tasks"
else not_ok "srun --mpi=pmix hostname runs 2 tasks"; show mpi.out; fi
if grep -q ', 2 ranks' mpi.out; then ok "shardlora eval under srun --mpi=pmix forms one 2-rank world"
else not_ok "shardlora eval under srun --mpi=pmix forms one 2-rank world"; show mpi.out; fi
got=$(loss slurm_eval.h5); want=$(loss ref.h5)
if [ -n "$got" ] && [ "$got" = "$want" ]; then ok "eval loss under Slurm equals mpirun's ($got)"
else not_ok "eval loss under Slurm equals mpirun's (got '${got}', want '${want}')"; fi

# 2. A failing job: the exit status reaches sbatch --wait and scontrol.
timeout 60 sbatch --wait --parsable --output=fail.out --wrap 'exit 3' >fail.id 2>/dev/null; rc=$?
id=$(cut -d';' -f1 fail.id)
if [ "$rc" -eq 3 ] && [ "$(job_field "$id" JobState)" = FAILED ] && [ "$(job_field "$id" ExitCode)" = 3:0 ]; then
  ok "exit 3 gives sbatch --wait status 3, JobState=FAILED, ExitCode=3:0"
else not_ok "exit 3 gives sbatch --wait status 3 (got $rc, $(job_field "$id" JobState) $(job_field "$id" ExitCode))"; fi

# 3. Signals: USR1 to the batch shell only (--batch), to the steps only (default), to all (--full).
cat >sig.sh <<'EOF'
#!/bin/bash
#SBATCH --ntasks=2 --output=sig.out
trap 'echo batch >>marks' USR1
bash -c 'trap "echo child >>marks" USR1; touch child.ready; while [ ! -e stop ]; do sleep 0.1; done' &
srun --ntasks=1 bash -c 'trap "echo step >>marks" USR1; touch step.ready; while [ ! -e stop ]; do sleep 0.1; done' &
while [ ! -e stop ]; do sleep 0.1; done
wait
EOF
id=$(sbatch --parsable sig.sh)
if wait_files 30 child.ready step.ready; then
  : >marks
  scancel --signal=USR1 --batch "$id"; wait_grep marks '^batch$' 5; sleep 1
  if [ "$(sort marks | tr '\n' ' ')" = "batch " ]; then ok "scancel --signal=USR1 --batch reaches only the batch shell"
  else not_ok "scancel --signal=USR1 --batch reaches only the batch shell"; show marks; fi
  : >marks
  scancel --signal=USR1 "$id"; wait_grep marks '^step$' 5; sleep 1
  if [ "$(sort marks | tr '\n' ' ')" = "step " ]; then ok "scancel --signal=USR1 reaches only the steps' tasks"
  else not_ok "scancel --signal=USR1 reaches only the steps' tasks"; show marks; fi
  : >marks
  scancel --signal=USR1 --full "$id"; wait_grep marks '^step$' 5; wait_grep marks '^batch$' 5; wait_grep marks '^child$' 5; sleep 0.5
  if [ "$(sort -u marks | tr '\n' ' ')" = "batch child step " ]; then ok "scancel --signal=USR1 --full reaches the batch shell, its children and the steps"
  else not_ok "scancel --signal=USR1 --full reaches the batch shell, its children and the steps"; show marks; fi
else
  not_ok "signal job starts (state $(job_field "$id" JobState))"; show sig.out
fi
touch stop
state=$(wait_end "$id" 20)
check "signalled job still ends normally ($state)" test "$state" = COMPLETED

# 4. --signal=B:USR1@50 with --time=1: the batch shell gets USR1 before the limit (Slurm may send
#    it up to a minute early; here it comes at once).
rm -f stop
cat >warn.sh <<'EOF'
#!/bin/bash
#SBATCH --ntasks=1 --time=1 --signal=B:USR1@50 --output=warn.out
trap 'echo "usr1 after $SECONDS s" >>warn.marks; exit 0' USR1
while [ ! -e stop ]; do sleep 0.1; done
EOF
t0=$SECONDS; id=$(sbatch --parsable warn.sh)
if wait_grep warn.marks usr1 50; then ok "--signal=B:USR1@50 reaches the batch shell ($(cat warn.marks), $((SECONDS - t0)) s after sbatch)"
else not_ok "--signal=B:USR1@50 reaches the batch shell"; show warn.out; fi
touch stop; wait_end "$id" 20 >/dev/null

# 5. Requeue: from outside (scontrol requeue ID) and from inside (the job requeues itself, as after
#    exit 3). The job keeps its id, Restarts=1, and the rerun sees SLURM_RESTART_COUNT=1.
cat >rq.sh <<'EOF'
#!/bin/bash
#SBATCH --ntasks=1 --open-mode=append
echo "id=$SLURM_JOB_ID restart=${SLURM_RESTART_COUNT:-0}" >>"$1.log"
[ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] && exit 0
if [ "$1" = self ]; then scontrol requeue "$SLURM_JOB_ID"; fi
sleep 60
EOF
t0=$SECONDS
ext=$(sbatch --parsable --output=ext.out rq.sh ext)
self=$(sbatch --parsable --output=self.out rq.sh self)
if wait_grep ext.log restart=0 20; then scontrol requeue "$ext"; fi
for j in "ext $ext" "self $self"; do
  set -- $j
  state=$(wait_end "$2" 40)
  runs=$(tr '\n' ' ' <"$1.log" 2>/dev/null)
  if [ "$state" = COMPLETED ] && [ "$(job_field "$2" Restarts)" = 1 ] && [ "$runs" = "id=$2 restart=0 id=$2 restart=1 " ]; then
    ok "requeue ($1) reruns job $2 under its id with SLURM_RESTART_COUNT=1"
  else not_ok "requeue ($1): state $state, Restarts=$(job_field "$2" Restarts), runs: $runs"; show "$1.out"; fi
done
echo "# requeue cases took $((SECONDS - t0)) s (cred_expire delays the rerun)"

# 6. libslurm's slurm_get_rem_time for a job with --time=5.
if cc -o remtime "$ROOT/tests/slurm/remtime.c" -lslurm 2>remtime.err; then
  id=$(sbatch --parsable --time=5 --output=rem.out --wrap "$TMP/remtime")
  wait_end "$id" 30 >/dev/null
  rem=$(sed -n 's/.* rem_time \([-0-9]*\) .*/\1/p' rem.out)
  if [ -n "$rem" ] && [ "$rem" -gt 240 ] && [ "$rem" -le 300 ]; then ok "slurm_get_rem_time in a --time=5 job: $rem s"
  else not_ok "slurm_get_rem_time in a --time=5 job: '$rem'"; show rem.out; fi
else not_ok "remtime probe builds with -lslurm (libslurm-dev)"; show remtime.err; fi

# 7. stop leaves no daemon behind, and is idempotent.
pids=$(cat "$SD"/run/*.pid 2>/dev/null)
"$CLUSTER" stop "$SD"
left=; for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
check "stop ends munged, slurmctld and slurmd${left:+ (left:$left)}" test -z "$left"
check "stop again is a no-op" "$CLUSTER" stop "$SD"
