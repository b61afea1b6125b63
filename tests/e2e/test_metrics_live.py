"""metrics.h5 is readable while the run writes it: a C driver appends 30 rows 0.1 s apart while
h5py (plain and swmr=True) and h5dump read the file over and over. Every successful read must be a
consistent prefix of what the driver writes; opens that race an append may fail and are retried."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import h5py  # noqa: E402
import numpy as np  # noqa: E402

from testlib import CC, ROOT, TMP, check, finish  # noqa: E402

ROWS, DELAY = 30, 0.1
SERIES = {"loss": lambda i: 1.0 / (i + 1), "lr": lambda i: 1e-3 * i, "grad_norm": lambda i: float(i * i),
          "tokens_per_s": lambda i: 100.0 + i, "seen": lambda i: float(i)}


def build_driver():
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "mpi", "hdf5-openmpi", "openblas", "libcjson"],
                           capture_output=True, text=True, check=True).stdout.split()
    exe = os.path.join(TMP, "metrics_writer")
    subprocess.run([*CC, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                    "-I" + os.path.join(ROOT, "src"), "-I" + os.path.join(ROOT, "kernels"),
                    os.path.join(ROOT, "tests", "e2e", "metrics_writer.c"), "-o", exe,
                    os.path.join(ROOT, "build", "libshardlora.a")] + flags + ["-fopenmp", "-lm"], check=True)
    return exe


def read_prefix(path, swmr):
    """The rows visible now, checked against the driver's formulas; None if the open raced a write."""
    try:
        f = h5py.File(path, "r", swmr=swmr)
    except OSError:
        return None
    with f:
        g = f["metrics"]
        step = g["step"][:]
        n = len(step)
        problems = [f"{name} has {len(g[name])} rows, step has {n}" for name in g if len(g[name]) != n]
        if not np.array_equal(step, 5 * np.arange(1, n + 1)):
            problems.append(f"steps {step.tolist()}")
        for name, value in SERIES.items():
            if n and name not in g:
                problems.append(f"{name} missing")
            elif n and not np.array_equal(g[name][:], [value(i) for i in range(n)]):
                problems.append(f"{name} = {g[name][:].tolist()}")
        return n, problems


def main():
    exe = build_driver()
    path = os.path.join(TMP, "metrics.h5")
    writer = subprocess.Popen([exe, path, str(ROWS), str(DELAY)], stderr=subprocess.PIPE, text=True)
    lengths, problems, raced, swmr_reads, dumps = set(), [], 0, 0, 0
    while writer.poll() is None:
        if not os.path.exists(path):
            continue
        swmr = len(lengths) % 2 == 1
        got = read_prefix(path, swmr)
        if got is None:
            raced += 1
            continue
        lengths.add(got[0])
        problems += got[1]
        swmr_reads += swmr
        dump = subprocess.run(["h5dump", "-d", "/metrics/step", path], capture_output=True, text=True)
        if writer.poll() is None and dump.returncode == 0 and "DATASET \"/metrics/step\"" in dump.stdout:
            dumps += 1
        time.sleep(0.02)
    check("driver exits 0", writer.returncode == 0, writer.stderr.read())
    check("every read mid-run is a consistent prefix of the rows written", not problems, "\n".join(problems[:10]))
    check("h5py sees at least 3 different lengths while the run writes",
          len([n for n in lengths if 0 < n < ROWS]) >= 3, f"lengths seen: {sorted(lengths)}; {raced} opens raced")
    check("h5py opens it with swmr=True mid-run", swmr_reads > 0)
    check("h5dump reads it mid-run", dumps > 0)
    final = read_prefix(path, False)
    check("the finished file holds every row", final == (ROWS, []), str(final))
    print(f"# {len(lengths)} lengths, {raced} opens raced an append, {dumps} h5dump reads", flush=True)
    finish()


main()
