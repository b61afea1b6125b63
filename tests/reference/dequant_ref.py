"""Decode shardlora's pre-quantized weight groups (README: Model file; NF4/FP4 with or without
double quantization, INT8) in numpy, and load a model file's weights as its quantized base holds
them. Used by the reference tests and by tests/gpu/test_hf_peft_step.py."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llama_ref  # noqa: E402
from testlib import BIN, run  # noqa: E402


def decode_group(g):
    """The float32 weight [out, in] that a stored group holds (code[idx] * absmax of its block)."""
    shape, bs, code = tuple(g.attrs["shape"]), int(g.attrs["blocksize"]), g["code"][:]
    n = int(np.prod(shape))
    if "packed" in g:
        packed = g["packed"][:]
        idx = np.stack([packed >> 4, packed & 15], 1).reshape(-1)[:n]
    else:
        idx = g["codes"][:]
    if "nested_absmax" in g:
        u8, nested = g["absmax"][:], g["nested_absmax"][:]
        absmax = (g["nested_code"][:][u8] * np.repeat(nested, 256)[:len(u8)]).astype(np.float32) + np.float32(g.attrs["offset"])
    else:
        absmax = g["absmax"][:]
    return (code[idx].astype(np.float32) * np.repeat(absmax, bs)[:n]).reshape(shape)


def load_quantized(path):
    """(weights, cfg) of a model file as llama_ref.load_h5 gives them, with every quantized group
    (a pre-quantized file) decoded; float64 torch tensors."""
    import torch
    weights = {}
    with h5py.File(path, "r") as f:
        cfg = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()}

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "shape" in obj.attrs:
                weights[name.replace("/", ".")] = torch.from_numpy(decode_group(obj).astype(np.float64))
            elif isinstance(obj, h5py.Dataset) and "shape" not in obj.parent.attrs:  # not a group's member
                weights[name.replace("/", ".")] = torch.from_numpy(np.asarray(obj[...], dtype=np.float64))
        for top in ("model", "lm_head"):
            if top in f:
                f[top].visititems(lambda n, o, top=top: visit(f"{top}/{n}", o))
    return weights, cfg


def dequantized(model, quant_args):
    """Weights as the quantized base holds them: model quantized by shardlora-quantize with
    quant_args (none: the float weights) into MODEL.q.h5, and decoded."""
    if not quant_args:
        return llama_ref.load_h5(model)
    out = model.replace(".h5", ".q.h5")
    run([f"{BIN}/shardlora-quantize", model, out] + quant_args)
    return load_quantized(out)
