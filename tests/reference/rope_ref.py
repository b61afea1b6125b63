"""Rotary frequencies of the rope types shardlora implements, in numpy, transcribed from the
published formulas (not from any implementation):
- default (RoFormer): inv_freq_i = theta^(-2i/d), i < d/2.
- linear (position interpolation, Chen et al. 2023): positions divided by the factor s, which is
  inv_freq / s.
- llama3 (Llama 3.1, as transformers documents its rope_type "llama3"): with the pretraining
  context L, wavelength w = 2 pi / inv_freq: w < L / high_freq_factor keeps inv_freq;
  w > L / low_freq_factor takes inv_freq / s; between, (1 - g) inv_freq / s + g inv_freq with
  g = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor).
- yarn (Peng et al. 2023, "YaRN"): the dimension turning r times over L is
  d ln(L / (2 pi r)) / (2 ln theta); between the dimensions of beta_fast and beta_slow rotations
  (floor and ceil unless truncate is false, clipped to [0, d - 1]) a linear ramp blends
  inv_freq (fast side) into inv_freq / s (slow side); cos and sin are scaled by the attention
  factor, 0.1 ln(s) + 1 (or mscale(s, mscale) / mscale(s, mscale_all_dim), or as given).
A rope is a dict: type, theta, and the fields of its type (factor, low_freq_factor,
high_freq_factor, original_max_position_embeddings, beta_fast, beta_slow, truncate,
attention_factor), as params() reads them from an HF config (either layout) or a model file."""
import math

import numpy as np


def _mscale(s, m=1.0):
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def _scaling_fields(kind, src, max_positions):
    r = {"type": kind}
    if kind == "default":
        return r
    r["factor"] = float(src["factor"])
    if kind == "llama3":
        r.update(low_freq_factor=float(src["low_freq_factor"]), high_freq_factor=float(src["high_freq_factor"]),
                 original_max_position_embeddings=int(src["original_max_position_embeddings"]))
    if kind == "yarn":
        r.update(original_max_position_embeddings=int(src.get("original_max_position_embeddings") or max_positions),
                 beta_fast=float(src.get("beta_fast") or 32), beta_slow=float(src.get("beta_slow") or 1),
                 truncate=bool(src.get("truncate", True)))
        m, m_all = src.get("mscale"), src.get("mscale_all_dim")
        if src.get("attention_factor") is not None:
            r["attention_factor"] = float(src["attention_factor"])
        elif m and m_all:
            r["attention_factor"] = _mscale(r["factor"], m) / _mscale(r["factor"], m_all)
        else:
            r["attention_factor"] = _mscale(r["factor"])
    return r


def params(cfg):
    """The rope of a config: a shardlora /config (rope_type and rope_* attributes; absent: default),
    a transformers 5 config.json (rope_parameters) or a transformers 4 one (rope_theta, rope_scaling)."""
    if "rope_parameters" in cfg and cfg["rope_parameters"] is not None:
        p = cfg["rope_parameters"]
        r = _scaling_fields(p.get("rope_type", p.get("type", "default")), p, cfg["max_position_embeddings"])
        r["theta"] = float(p.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        return r
    if "rope_type" in cfg:  # a model file's /config
        kind = cfg["rope_type"]
        src = {k[len("rope_"):]: v for k, v in cfg.items() if k.startswith("rope_")}
        r = _scaling_fields(kind, src, cfg["max_position_embeddings"])
    else:
        s = cfg.get("rope_scaling") or {}
        r = _scaling_fields(s.get("rope_type", s.get("type", "default")), s, cfg["max_position_embeddings"])
    r["theta"] = float(cfg.get("rope_theta", 10000.0))
    return r


def inv_freq(rope, head_dim, dtype=np.float64):
    """Inverse frequencies [head_dim / 2]. dtype float32 forms theta^(2i/d) in float32 first, the
    precision that transformers' init functions compute in on torch."""
    d = head_dim
    f = (1.0 / (np.asarray(rope["theta"], dtype) ** (np.arange(0, d, 2).astype(dtype) / dtype(d)))).astype(np.float64)
    kind, s = rope["type"], rope.get("factor", 1.0)
    if kind == "default":
        return f
    if kind == "linear":
        return f / s
    L = rope["original_max_position_embeddings"]
    if kind == "llama3":
        lo, hi = rope["low_freq_factor"], rope["high_freq_factor"]
        w = 2 * math.pi / f
        g = (L / w - lo) / (hi - lo)
        return np.where(w < L / hi, f, np.where(w > L / lo, f / s, (1 - g) * f / s + g * f))
    if kind == "yarn":
        def dim_of(rotations):
            return d * math.log(L / (2 * math.pi * rotations)) / (2 * math.log(rope["theta"]))
        lo, hi = dim_of(rope["beta_fast"]), dim_of(rope["beta_slow"])
        if rope["truncate"]:
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, d - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(d // 2) - lo) / (hi - lo), 0, 1)
        return f / s * ramp + f * (1 - ramp)
    raise ValueError(f"rope type {kind!r}")


def attention_factor(rope):
    return rope.get("attention_factor", 1.0) if rope["type"] == "yarn" else 1.0


def cos_sin(rope, head_dim, positions):
    """(cos, sin) [positions, head_dim / 2] in float64, times the attention factor."""
    angles = np.arange(positions, dtype=np.float64)[:, None] * inv_freq(rope, head_dim)[None, :]
    a = attention_factor(rope)
    return a * np.cos(angles), a * np.sin(angles)
