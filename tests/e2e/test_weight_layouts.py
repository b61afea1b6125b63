"""The model loader reads weights in three ways (src/weights.c): contiguous datasets with pread on
every thread (float32 as stored, bfloat16 and float16 widened piece by piece), datasets HDF5 must
read itself (chunked and compressed, as h5py writes with compression=), and a recipe's values made
at load. Every way must deliver the same values: the same weights stored as float32, as float16,
as bfloat16, contiguous or gzip-compressed, in one dtype or mixed, give bit-identical eval losses
(the 16-bit values are exact in float32), kept in float and quantized at load (nf4 + double
quantization, whose codes then come piece by piece from the reader), on 1 and 2 ranks."""
import os
import sys
import zlib

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import BIN, check, finish, run, write_tokens  # noqa: E402

SL = f"{BIN}/shardlora"
# wide enough that a tensor is many loader pieces (65,536 elements) on two threads
run([f"{BIN}/shardlora-init", "base.h5", "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--intermediate",
     "640", "--layers", "2", "--vocab", "1024", "--max-pos", "64", "--seed", "5", "--std", "0.1"])
rng = np.random.default_rng(5)
write_tokens("data.h5", [rng.integers(3, 1024, n) for n in (40, 33, 57)], 1024)


def f16_exact(a):
    """Values that float16 and bfloat16 both hold exactly: bfloat16's 8 significant bits, within float16's
    normal range."""
    a = np.clip(np.abs(a), 2.0 ** -13, 60000.0) * np.sign(a)
    bits = a.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def rewrite(src, dst, store):
    """dst: src's file with every weight rounded by f16_exact, each stored as store(name) gives:
    (numpy dtype or "bf16", compressed)."""
    with h5py.File(src, "r") as fi, h5py.File(dst, "w") as fo:
        for k, v in fi.attrs.items():
            fo.attrs[k] = v
        fi.copy("config", fo)
        names = []
        fi.visit(lambda n: names.append(n) if isinstance(fi[n], h5py.Dataset) and not n.startswith("config") else None)
        for path in names:
            a = f16_exact(fi[path][...].astype(np.float32))
            kind, compressed = store(path)
            opts = {"compression": "gzip", "chunks": True} if compressed else {}
            if kind == "bf16":  # HDF5's custom float: the top 16 bits of float32, as shardlora writes it
                t = h5py.h5t.IEEE_F32LE.copy()
                t.set_fields(15, 7, 8, 0, 7)
                t.set_offset(0)
                t.set_precision(16)
                t.set_size(2)
                t.set_ebias(127)
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                if compressed:
                    dcpl.set_chunk((min(a.shape[0], 64),) + a.shape[1:])
                    dcpl.set_deflate(4)
                fo.require_group(os.path.dirname(path))
                d = h5py.h5d.create(fo.id, path.encode(), t, h5py.h5s.create_simple(a.shape), dcpl=dcpl)
                d.write(h5py.h5s.ALL, h5py.h5s.ALL, (a.view(np.uint32) >> 16).astype(np.uint16), mtype=t)
            else:
                fo.create_dataset(path, data=a.astype(kind), **opts)


layouts = {
    "f32": lambda p: (np.float32, False),
    "f16": lambda p: (np.float16, False),
    "bf16": lambda p: ("bf16", False),
    "f16-gzip": lambda p: (np.float16, True),
    "bf16-gzip": lambda p: ("bf16", True),
    "mixed": lambda p: [(np.float32, True), ("bf16", False), (np.float16, False), (np.float32, False)][zlib.crc32(p.encode()) % 4],
}
for name, store in layouts.items():
    rewrite("base.h5", f"{name}.h5", store)


def loss(model, ranks, *extra):
    out = f"eval.{model}.{ranks}.{len(extra)}.h5"
    run([SL, "eval", f"--model={model}", "--data=data.h5", "--seq-len=32", f"--out={out}", "--threads=2", *extra],
        np=ranks)
    with h5py.File(out, "r") as f:
        return float(f["eval/loss"][()])


os.environ["OMP_NUM_THREADS"] = "2"
for extra in ((), ("--quant=nf4", "--double-quant")):
    what = "quantized at load (nf4 + DQ)" if extra else "kept in float"
    for ranks in (1, 2):
        want = loss("f32.h5", ranks, *extra)
        for name in layouts:
            if name == "f32":
                continue
            got = loss(f"{name}.h5", ranks, *extra)
            check(f"{what}, {ranks} rank(s): {name} gives the float32 file's loss bit for bit ({got!r} vs {want!r})",
                  got == want)
finish()
