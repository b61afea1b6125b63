"""The output directory: a run never mixes its state with another run's. An OUT holding a finished
run's checkpoints, metrics.h5 or adapter.h5 is an error unless --resume or --overwrite says what to
do; a run lock keeps a second run out of an OUT in use, a stale lock (dead process) is taken over,
and the lock is gone when a run ends (also at the checkpoint-and-requeue exit)."""
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, expect_exit, finish, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
LOCK = "shardlora.lock"
rng = np.random.default_rng(7)
run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
     "--layers", "2", "--vocab", "64", "--max-pos", "64", "--seed", "3"])
docs = [rng.integers(3, 64, rng.integers(12, 30)) for _ in range(200)]
write_tokens("data.h5", docs, 64)
common = ["--model=model.h5", "--data=data.h5", "--seq-len=16", "--micro-batch=2", "--lora-r=4", "--log-every=1"]


def train(out, *extra, np_=2, check_rc=True):
    return run([SL, "train", *common, f"--out={out}", *extra], np=np_, check_rc=check_rc)


def listing(out):
    return sorted(os.listdir(f"{out}/checkpoints"))


def metrics_steps(out):
    with h5py.File(f"{out}/metrics.h5", "r") as f:
        return list(f["metrics/step"][:])


def contents(path):
    with open(path, "rb") as f:
        return f.read()


# 1. an OUT holding a finished run
train("used", "--steps=6", "--ckpt-every=2")
before = {name: contents(f"used/{name}") for name in ("metrics.h5", "adapter.h5")}
old_checkpoints = listing("used")
expect_exit("training into an OUT holding another run's state is an error naming it and what it holds",
            [SL, "train", *common, "--out=used", "--steps=3", "--ckpt-every=1"], 1,
            r"output directory 'used' holds another run's state: 3 checkpoints \(checkpoints/step_\*\.h5\), metrics\.h5, "
            r"adapter\.h5; pass --resume=auto to continue that run, --overwrite to replace it", np=2)
check("the refused run changed nothing in OUT", listing("used") == old_checkpoints and
      all(contents(f"used/{k}") == v for k, v in before.items()), listing("used"))
expect_exit("--dry-run reports it too", [SL, "train", *common, "--out=used", "--steps=3", "--dry-run"], 1,
            r"output directory 'used' holds another run's state", np=2)
expect_exit("--resume and --overwrite together are an error",
            [SL, "train", *common, "--out=used", "--steps=3", "--resume=auto", "--overwrite"], 1,
            r"options --resume=auto and --overwrite contradict each other", np=2)
os.makedirs("only_metrics")
os.link("used/metrics.h5", "only_metrics/metrics.h5")
expect_exit("an OUT holding only a metrics.h5 is refused too", [SL, "train", *common, "--out=only_metrics", "--steps=2"], 1,
            r"output directory 'only_metrics' holds another run's state: metrics\.h5;", np=2)
p = train("used", "--steps=3", "--ckpt-every=1", "--overwrite")
check("--overwrite says what it removed",
      "--overwrite: removed the previous run's state from used: 3 checkpoints (checkpoints/step_*.h5), metrics.h5, "
      "adapter.h5" in p.stdout, p.stdout)
check("--overwrite: only the new run's checkpoints are left (the old later ones are gone)",
      listing("used") == ["step_00000001.h5", "step_00000002.h5", "step_00000003.h5"], listing("used"))
check("--overwrite: metrics.h5 holds the new run's steps alone", metrics_steps("used") == [1, 2, 3], metrics_steps("used"))
p = train("used", "--steps=5", "--resume=auto")
check("--resume=auto then continues the new run", "resume: from used/checkpoints/step_00000003.h5" in p.stdout and
      metrics_steps("used") == [1, 2, 3, 4, 5], p.stdout)
check("no lock is left after a normal end", not os.path.exists(f"used/{LOCK}"), os.listdir("used"))

# 2. the run lock
os.makedirs("locked")
with open(f"locked/{LOCK}", "w") as held:
    held.write(f"host={socket.gethostname()}\npid={os.getpid()}\nslurm_job=4242\n")
    held.flush()
    fcntl.flock(held, fcntl.LOCK_EX)
    expect_exit("a live lock is an error naming host, pid and job",
                [SL, "train", *common, "--out=locked", "--steps=2", "--resume=auto"], 1,
                rf"output directory 'locked' is in use by another run: host {socket.gethostname()}, pid {os.getpid()}, "
                r"Slurm job 4242 \(lock file locked/shardlora.lock\)", np=2)
    check("the live lock is left alone", os.path.exists(f"locked/{LOCK}") and not os.path.exists("locked/metrics.h5"))
dead = subprocess.Popen(["true"])
dead.wait()
os.makedirs("stale")
with open(f"stale/{LOCK}", "w") as f:
    f.write(f"host={socket.gethostname()}\npid={dead.pid}\nslurm_job=none\n")
p = train("stale", "--steps=2", check_rc=False)
check("a stale lock (dead pid on this host) is reported and taken over",
      p.returncode == 0 and f"taking over the stale run lock stale/{LOCK} of pid {dead.pid} on host "
      f"{socket.gethostname()}" in p.stderr, f"{p.returncode}\n{p.stderr}")
check("and removed at the end of the run", not os.path.exists(f"stale/{LOCK}"))
os.makedirs("reused")
with open(f"reused/{LOCK}", "w") as f:
    f.write(f"host={socket.gethostname()}\npid={os.getpid()}\nslurm_job=none\n")
p = train("reused", "--steps=2", check_rc=False)
check("a lock whose flock is free is stale even when its pid names a live process now (reused pid, zombie)",
      p.returncode == 0 and f"taking over the stale run lock reused/{LOCK} of pid {os.getpid()}" in p.stderr,
      f"{p.returncode}\n{p.stderr}")


def requeued(out, restart):
    """A run as the requeued Slurm job 77 (SLURM_RESTART_COUNT=restart), into an OUT whose lock was
    left by job 77's first run on a node that is gone."""
    os.makedirs(out)
    with open(f"{out}/{LOCK}", "w") as f:
        f.write("host=node-that-died\npid=1\nslurm_job=77\nslurm_restart=0\n")
    env = dict(os.environ, SLURM_JOB_ID="77", SLURM_RESTART_COUNT=str(restart), OMPI_MCA_ras="^slurm",
               OMPI_MCA_plm="^slurm", OMPI_MCA_ess="^slurm")
    return subprocess.run(["mpirun", "-np", "1", SL, "train", *common, f"--out={out}", "--steps=2", "--resume=auto"],
                          capture_output=True, text=True, env=env, timeout=300)


p = requeued("requeued", 1)
check("a requeued Slurm job takes over the lock its earlier run left on another node",
      p.returncode == 0 and f"taking over the stale run lock requeued/{LOCK} of pid 1 on host node-that-died (Slurm job 77)"
      in p.stderr, f"{p.returncode}\n{p.stderr}")
p = requeued("same_run", 0)
check("a lock of the same job run on another host is live: the error says to remove it if that run has ended",
      p.returncode == 1 and "is in use by another run: host node-that-died, pid 1, Slurm job 77" in p.stderr and
      "it runs on another host: if it has ended, remove the lock file" in p.stderr, f"{p.returncode}\n{p.stderr}")

MPI = ["mpirun", "-np", "1", "--oversubscribe", "--bind-to", "none"]
racers = [subprocess.Popen(MPI + [SL, "train", *common, "--out=race", "--steps=400", "--resume=auto"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
results = [(r.wait(timeout=600), r.communicate()) for r in racers]
codes = sorted(rc for rc, _ in results)
loser = [err for rc, (_, err) in results if rc != 0]
check("two runs started into one OUT: one trains, the other stops at the lock",
      codes == [0, 1] and "output directory 'race' is in use by another run" in loser[0],
      f"{codes}\n" + "\n".join(err for _, (_, err) in results))

proc = subprocess.Popen(MPI + [SL, "train", *common, "--out=stopped", "--steps=2000"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
t0 = time.time()
while not os.path.exists("stopped/metrics.h5") and proc.poll() is None and time.time() - t0 < 60:
    time.sleep(0.05)
for pid in subprocess.run(["pgrep", "-x", "shardlora"], capture_output=True, text=True).stdout.split():
    try:
        with open(f"/proc/{pid}/cmdline") as f:  # this test's run only, not another test's elsewhere
            if "--out=stopped" in f.read().split("\0") and os.readlink(f"/proc/{pid}/cwd") == os.getcwd():
                os.kill(int(pid), signal.SIGUSR1)
    except (FileNotFoundError, ProcessLookupError):
        pass
proc.communicate(timeout=120)
check("the checkpoint-and-exit-3 path removes the lock", proc.returncode == 3 and not os.path.exists(f"stopped/{LOCK}"),
      f"{proc.returncode} {os.listdir('stopped')}")
finish()
