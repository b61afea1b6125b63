"""Stopping in time: USR1 or TERM to a rank makes every rank agree at the next step boundary,
checkpoint and exit with status 3 (requeue); the resumed run matches an uninterrupted one. A rank
killed with -9 ends the whole job within a bounded time, and the last checkpoint still loads; a rank
stopped alive (SIGSTOP) ends the job after --comm-timeout with a message naming the collective."""
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, finish, run  # noqa: E402

SL = f"{BIN}/shardlora"
rng = np.random.default_rng(4)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "128",
     "--layers", "3", "--vocab", "64", "--max-pos", "64", "--seed", "2"])
docs = [rng.integers(0, 64, rng.integers(10, 33)) for _ in range(400)]
with h5py.File("data.h5", "w") as f:
    f["tokens"] = np.concatenate(docs).astype(np.int32)
    f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    f.attrs["vocab_size"] = np.int64(64)
common = ["--model=model.h5", "--data=data.h5", "--seq-len=32", "--micro-batch=4", "--quant=nf4", "--lora-r=8",
          "--lr=1e-3", "--log-every=1", "--steps=60"]
MPI = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none"]


def steps_done(out):
    try:
        with h5py.File(f"{out}/metrics.h5", "r") as f:
            return len(f["metrics/step"])
    except (OSError, KeyError):
        return 0


def start(out, *extra):
    return subprocess.Popen(MPI + [SL, "train", *common, f"--out={out}", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def rank_pids(out):
    """This test's ranks writing into out: the same command may run in another suite at once, in
    another directory, so only processes working in this test's directory count."""
    p = subprocess.run(["pgrep", "-f", f"shardlora train.*--out={out}"], capture_output=True, text=True)
    here = os.path.realpath(os.getcwd())

    def mine(pid):
        try:
            return pid != os.getpid() and os.path.realpath(f"/proc/{pid}/cwd") == here
        except OSError:
            return False
    return [pid for pid in map(int, p.stdout.split()) if mine(pid)]


def wait_for_steps(out, n, proc, limit=60):
    t0 = time.time()
    while steps_done(out) < n and proc.poll() is None and time.time() - t0 < limit:
        time.sleep(0.05)


run([SL, "train", *common, "--out=straight"], np=2)
with h5py.File("straight/metrics.h5", "r") as f:
    straight = f["metrics/loss"][:]

for sig in (signal.SIGUSR1, signal.SIGTERM):
    out = f"stopped_{sig.name}"
    proc = start(out)
    wait_for_steps(out, 5, proc)
    pids = rank_pids(out)
    os.kill(pids[-1], sig)  # one rank only: the others learn of it at the step boundary
    stdout, stderr = proc.communicate(timeout=120)
    stopped_at = steps_done(out)
    check(f"{sig.name} to one rank: the job checkpoints and exits with status 3 (requeue)",
          proc.returncode == 3 and "exit status 3 asks the job script to requeue" in stdout, f"{proc.returncode}\n{stdout}\n{stderr}")
    check(f"{sig.name}: stopped early at step {stopped_at} with a checkpoint",
          5 <= stopped_at < 60 and os.path.exists(f"{out}/checkpoints/step_{stopped_at:08d}.h5"), os.listdir(out))
    run([SL, "train", *common, f"--out={out}", "--resume=auto"], np=2)
    with h5py.File(f"{out}/metrics.h5", "r") as f:
        resumed = f["metrics/loss"][:]
    check(f"{sig.name}: the resumed run's 60 losses equal the uninterrupted run's bit for bit",
          np.array_equal(resumed, straight), np.max(np.abs(resumed - straight)) if len(resumed) == 60 else len(resumed))

proc = start("killed", "--ckpt-every=5")
wait_for_steps("killed", 12, proc)
os.kill(rank_pids("killed")[-1], signal.SIGKILL)
t0 = time.time()
try:
    proc.communicate(timeout=60)
    ended = True
except subprocess.TimeoutExpired:
    proc.kill()
    ended = False
check(f"kill -9 of one rank: every rank ends (in {time.time() - t0:.1f} s) with a failure status",
      ended and proc.returncode != 0, proc.returncode)
check("no rank is left running after kill -9", not rank_pids("killed"))
with open("killed/checkpoints/step_99999999.h5.partial", "wb") as f:
    f.write(b"a checkpoint whose write was cut off")
p = run([SL, "train", *common, "--out=killed", "--resume=auto"], np=2)
check("after kill -9 the last complete checkpoint loads (a partial write is ignored)",
      "resume: from killed/checkpoints/step_000000" in p.stdout and "99999999" not in p.stdout, p.stdout)

# A stopped rank (alive, but making no progress: SIGSTOP) must not hang the job: the other rank's
# collective times out after --comm-timeout and ends the job with a message naming it.
proc = start("stuck", "--comm-timeout=3")
wait_for_steps("stuck", 5, proc)
stuck = rank_pids("stuck")[-1]
os.kill(stuck, signal.SIGSTOP)
t0 = time.time()
try:
    _, stderr = proc.communicate(timeout=60)
    ended = True
except subprocess.TimeoutExpired:
    proc.kill()
    _, stderr, ended = "", "", False
took = time.time() - t0
for pid in rank_pids("stuck"):  # whatever is left: let it go and end it
    os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGKILL)
check(f"a stopped rank ends the job in {took:.1f} s (--comm-timeout=3) with a failure status",
      ended and proc.returncode != 0 and took < 30, proc.returncode)
check("the message names the collective that made no progress and the timeout",
      re.search(r"rank \d: error: the (all-gather|reduce-scatter|all-reduce|agreement) made no progress for 3 s "
                r"\(--comm-timeout\): a peer rank is stuck or gone; ending the job", stderr) is not None, stderr)
finish()
