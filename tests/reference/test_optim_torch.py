"""The optimizer room against PyTorch in float32: torch.optim.AdamW (two parameter groups, one without
weight decay), torch.nn.utils.clip_grad_norm_ over both tensors, and LambdaLR with the Hugging Face
warmup schedules written from their documented definitions (transformers' get_constant_/linear_/
cosine_schedule_with_warmup, num_cycles 0.5). The C side is optim_driver.c, compiled here against
build/libshardlora.a and run on 1 and 2 ranks, so the clipping norm is global over shards. Fresh
random parameters and gradients each run; gradient scales straddle the clipping threshold."""
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import CC, ROOT, TMP, check, expect_fail, finish, not_ok, run  # noqa: E402

N, DECAYED = 10007, 6000  # elements; the first DECAYED get weight decay
# fp32 vs fp32 in a different operation order (torch fuses some multiply-adds): a few ulps of the
# tensor's largest element after tens of steps.
TOL = 1e-6


def hf_lambda(kind, warmup, total):
    """lr_lambda of transformers.get_{kind}_schedule_with_warmup, as documented."""
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    return f


def build_driver():
    exe = os.path.join(TMP, "optim_driver")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "mpi", "hdf5-openmpi", "openblas", "libcjson"],
                           capture_output=True, text=True, check=True).stdout.split()
    if os.path.exists("/usr/include/slurm/slurm.h"):
        flags.append("-lslurm")  # the library was built with libslurm (see the Makefile)
    run([*CC, "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-fopenmp",
         f"-I{ROOT}/src", f"-I{ROOT}/kernels", os.path.join(ROOT, "tests/reference/optim_driver.c"),
         os.path.join(ROOT, "build/libshardlora.a"), "-o", exe] + flags + ["-fopenmp", "-lm"])
    return exe


def torch_run(p0, grads, kind, warmup, total, lr, wd, max_norm):
    w = torch.tensor(p0[:DECAYED], requires_grad=True)
    b = torch.tensor(p0[DECAYED:], requires_grad=True)
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, hf_lambda(kind, warmup, total))
    lrs, norms = [], []
    for g in grads:
        w.grad, b.grad = torch.tensor(g[:DECAYED]), torch.tensor(g[DECAYED:])
        total_norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm if max_norm > 0 else math.inf)
        norms.append(float(total_norm))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    state = [opt.state[w], opt.state[b]]
    cat = lambda key: torch.cat([s[key] for s in state]).numpy()  # noqa: E731
    return {"param": torch.cat([w, b]).detach().numpy(), "exp_avg": cat("exp_avg"),
            "exp_avg_sq": cat("exp_avg_sq")}, np.array(lrs), np.array(norms)


def c_run(exe, np_ranks, p0, grads, kind, warmup, total, lr, wd, max_norm):
    src, out = os.path.join(TMP, "optim_in.bin"), os.path.join(TMP, "optim_out")
    with open(src, "wb") as f:
        f.write(np.array([N, len(grads)], np.int64).tobytes() + p0.tobytes() + grads.tobytes())
    run([exe, src, out, kind, str(warmup), str(total), repr(lr), repr(wd), str(DECAYED), repr(max_norm)], np=np_ranks)
    steps, parts, tail = len(grads), [], None
    for r in range(np_ranks):
        raw = open(f"{out}.{r}", "rb").read()
        length = N * (r + 1) // np_ranks - N * r // np_ranks
        parts.append(np.frombuffer(raw[:12 * length], np.float32).reshape(3, length))
        if r == 0:
            tail = raw[12 * length:]
    state = np.concatenate(parts, axis=1)
    lrs = np.frombuffer(tail[:4 * steps], np.float32).astype(np.float64)
    norms = np.frombuffer(tail[4 * steps:], np.float64)
    return dict(zip(["param", "exp_avg", "exp_avg_sq"], state)), lrs, norms


def compare(exe, name, np_ranks, kind, warmup, total, steps, lr, wd, max_norm, rng):
    p0 = rng.uniform(-1, 1, N).astype(np.float32)
    scales = 10.0 ** rng.uniform(-3.5, -1.0, (steps, 1))  # global norms from ~0.03 to ~10
    grads = (rng.standard_normal((steps, N)) * scales).astype(np.float32)
    want, want_lr, want_norm = torch_run(p0, grads, kind, warmup, total, lr, wd, max_norm)
    got, got_lr, got_norm = c_run(exe, np_ranks, p0, grads, kind, warmup, total, lr, wd, max_norm)
    if max_norm > 0:
        clipped = int(np.sum(want_norm > max_norm))
        check(f"{name}: gradients straddle the clipping norm", 0 < clipped < steps, f"{clipped} of {steps} clipped")
    # Two float roundings (the float --lr, the float result) against torch's double: 2^-23.
    lr_diff = np.abs(got_lr - want_lr)
    lr_err = np.max(lr_diff / np.where(want_lr > 0, want_lr, 1.0))
    check(f"{name}: lr per step as LambdaLR (max rel err {lr_err:.1e})", np.all(lr_diff <= 2.0 ** -23 * want_lr))
    norm_err = np.max(np.abs(got_norm - want_norm) / want_norm)
    check(f"{name}: global gradient norm as clip_grad_norm_ (max rel err {norm_err:.1e})", norm_err <= TOL)
    for key in want:
        diff = np.abs(got[key].astype(np.float64) - want[key])
        err = diff.max() / np.abs(want[key]).max()
        elem = np.max(diff / np.maximum(np.abs(want[key]), 1e-3 * np.abs(want[key]).max()))
        check(f"{name}: {key} as torch.optim.AdamW (max err {err:.1e} of the largest element, "
              f"{elem:.1e} elementwise)", err <= TOL, f"error {err:.3e} > {TOL:.0e}")


def main():
    if not os.path.exists(os.path.join(ROOT, "build/libshardlora.a")) or not shutil.which("cc"):
        not_ok("optim driver builds", "needs cc and build/libshardlora.a (make CUDA=0 tests-bin)")
        return finish()
    exe = build_driver()
    rng = np.random.default_rng()
    compare(exe, "cosine, 2 ranks", 2, "cosine", 5, 40, 40, 1e-3, 0.1, 1.0, rng)
    compare(exe, "linear, 1 rank", 1, "linear", 3, 30, 30, 2e-3, 0.01, 0.5, rng)
    compare(exe, "constant, no clipping, 2 ranks", 2, "constant", 0, 20, 20, 5e-4, 0.0, 0.0, rng)
    expect_fail("an unknown --schedule is an error naming the option and the choices",
                [exe, "/dev/null", "/dev/null", "exponential", "0", "1", "1e-3", "0", "0", "1"],
                r"--schedule=exponential.*constant, linear or cosine")
    finish()


if __name__ == "__main__":
    main()
