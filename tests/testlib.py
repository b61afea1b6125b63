"""Helpers for Python tests: paths, subprocess runs and TAP-style checks that count in make test."""
import os
import re
import shlex
import subprocess
import sys

ROOT = os.environ.get("SHARDLORA_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SHARDLORA_SHARED") or os.path.join(os.path.dirname(ROOT), "shared")
BIN = os.path.join(ROOT, "bin")
TMP = os.environ.get("TEST_TMP") or os.getcwd()
# The compiler of test harnesses that link libshardlora.a: the build's own (make test-asan sets CC).
CC = shlex.split(os.environ.get("CC", "cc"))
_failures = 0


def ok(name):
    print(f"ok - {name}", flush=True)


def not_ok(name, detail=""):
    global _failures
    _failures += 1
    print(f"not ok - {name}", flush=True)
    for line in str(detail).splitlines():
        print(f"#   {line}", flush=True)


def check(name, cond, detail=""):
    (ok(name) if cond else not_ok(name, detail))
    return cond


def rel_err(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def check_close(name, got, want, rtol):
    err = rel_err(got, want)
    return check(name, err <= rtol, f"got {got!r}, want {want!r}, relative error {err:.3e} > {rtol:.1e}")


def run(cmd, np=None, check_rc=True, timeout=600):
    """Run a command (a list); np=N runs it under mpirun with N ranks. Returns CompletedProcess."""
    if np is not None:
        cmd = ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p


def expect_fail(name, cmd, pattern, np=None):
    """The command must fail and its stderr must match the regular expression."""
    p = run(cmd, np=np, check_rc=False)
    if p.returncode == 0:
        return not_ok(name, f"exit status 0, expected a failure\n{p.stdout}")
    return check(name, re.search(pattern, p.stderr) is not None,
                 f"stderr did not match /{pattern}/:\n{p.stderr}")


def expect_exit(name, cmd, status, pattern, np=None, timeout=600):
    """The command must exit with this status (not a crash, not a hang past timeout seconds) and its
    stderr must match the regular expression."""
    try:
        p = run(cmd, np=np, check_rc=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return not_ok(name, f"still running after {timeout} s (hung?)")
    if p.returncode != status:
        return not_ok(name, f"exit status {p.returncode}, expected {status}\n{p.stderr}")
    return check(name, re.search(pattern, p.stderr) is not None,
                 f"stderr did not match /{pattern}/:\n{p.stderr}")


def finish():
    sys.exit(1 if _failures else 0)


def paragraphs(data):
    """The documents shardlora-tokenize --text cuts bytes into: runs of non-blank lines (blank: only
    spaces, tabs, CRs), joined by their newlines."""
    docs, cur = [], []
    for line in data.split(b"\n"):
        if line.strip(b" \t\r"):
            cur.append(line)
        elif cur:
            docs.append(b"\n".join(cur))
            cur = []
    if cur:
        docs.append(b"\n".join(cur))
    return docs


def write_tokens(path, docs, vocab, loss_mask=None, labels=None, num_labels=0):
    """A dataset file (README: Dataset file) of the token-id arrays docs; loss_mask: one 0/1 array per
    document; labels: one class per document, for sequence classification."""
    import h5py
    import numpy as np
    with h5py.File(path, "w") as f:
        f["tokens"] = np.concatenate(docs).astype(np.int32)
        f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        if loss_mask is not None:
            f["loss_mask"] = np.concatenate(loss_mask).astype(np.uint8)
        f.attrs["vocab_size"] = np.int64(vocab)
        if labels is not None:
            f["labels"] = np.array(labels, np.int32)
            f.attrs["num_labels"] = np.int64(num_labels)


def eval_windows(doc_offsets, seq_len):
    """(start, length) of every window shardlora eval cuts (README: eval): at most seq_len + 1 tokens,
    one every seq_len tokens of each document while two or more are left."""
    for d in range(len(doc_offsets) - 1):
        s, e = int(doc_offsets[d]), int(doc_offsets[d + 1])
        while e - s >= 2:
            yield s, min(seq_len + 1, e - s)
            s += seq_len


def tiny_run_inputs(vocab, intermediate, seed, doc_len, n_docs, layers=3):
    """model.h5 (shardlora-init: hidden 64, 4 heads, 2 kv heads, std 0.1) and train.h5 (n_docs documents
    of BOS plus doc_len = (lo, hi) random tokens, drawn from numpy's generator seeded with seed)."""
    import numpy as np
    run([f"{BIN}/shardlora-init", "model.h5", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate",
         str(intermediate), "--layers", str(layers), "--vocab", str(vocab), "--max-pos", "64", "--std", "0.1",
         "--seed", str(seed)])
    rng = np.random.default_rng(seed)
    write_tokens("train.h5", [np.concatenate([[1], rng.integers(3, vocab, rng.integers(*doc_len))])
                              for _ in range(n_docs)], vocab)


def read_metrics(out, name="loss"):
    """The series `name` of a training run's OUT/metrics.h5."""
    import h5py
    with h5py.File(f"{out}/metrics.h5", "r") as f:
        return f[f"metrics/{name}"][:]


def read_grads(out):
    """The step-1 gradients a run wrote with --dump-grads (OUT/grads_step1.h5), by dataset path, in float64."""
    import h5py
    import numpy as np
    g = {}
    with h5py.File(f"{out}/grads_step1.h5", "r") as f:
        f.visititems(lambda k, o: g.__setitem__(k, o[...].astype(np.float64)) if isinstance(o, h5py.Dataset) else None)
    return g
