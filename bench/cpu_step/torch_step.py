#!/usr/bin/python3
"""One QLoRA training step in PyTorch float32 on the CPU: the reference shardlora's CPU backend is
timed against (bench/cpu_step/run.sh).

Frozen base = the NF4(+double-quant) weights decoded from bin/shardlora-quantize's output (the seven
projections of every layer; embeddings, norms and the LM head in float32 as in the model file);
LoRA A/B (rank r, alpha 16) on all seven projections; forward + backward + clip_grad_norm_(1) +
AdamW over one batch of `--batch` random windows of `--seq-len` tokens, causal-LM mean loss.

Two variants:
  fp32      the base is decoded once at start and kept as float32 (the usual PyTorch CPU setup);
  dequant   the base is kept as packed 4-bit codes + uint8 absmax and decoded in every step, just
            before use, as shardlora does (it gathers each layer's shard and dequantizes it).
Prints one JSON line per variant: median/min/max ms per step over --steps timed steps after
--warmup steps, tokens per step, tokens/s."""
import argparse
import json
import os
import statistics
import sys
import time

# Debian's torch does its matmuls in OpenBLAS (pthreads build), whose thread count is fixed when the
# library loads (OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else all cores); torch.set_num_threads
# does not reach it. So --threads sets both variables before torch is imported.
for _i, _a in enumerate(sys.argv):
    if _a.startswith("--threads"):
        _n = _a.split("=", 1)[1] if "=" in _a else sys.argv[_i + 1]
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = _n

import h5py
import numpy as np
import torch
import torch.nn.functional as F

PROJ = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
        "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


class Quantized:
    """One projection as shardlora-quantize stores it; decode() gives the float32 weight."""

    def __init__(self, g):
        self.shape = tuple(int(s) for s in g.attrs["shape"])
        self.bs = int(g.attrs["blocksize"])
        self.n = int(np.prod(self.shape))
        self.code = torch.from_numpy(g["code"][:].astype(np.float32))
        self.packed = torch.from_numpy(g["packed"][:]) if "packed" in g else None
        self.codes = torch.from_numpy(g["codes"][:].astype(np.int64)) if "codes" in g else None
        self.absmax = torch.from_numpy(g["absmax"][:])
        self.double = "nested_absmax" in g
        if self.double:
            self.nested = torch.from_numpy(g["nested_absmax"][:].astype(np.float32))
            self.nested_code = torch.from_numpy(g["nested_code"][:].astype(np.float32))
            self.offset = float(np.float32(g.attrs["offset"]))

    def decode(self):
        if self.packed is not None:  # two codes per byte, element 2j in the high nibble
            idx = torch.stack([self.packed >> 4, self.packed & 15], 1).reshape(-1)[: self.n].long()
        else:
            idx = self.codes
        if self.double:  # absmax[b] = code8[u8[b]] * nested[b / 256] + offset
            nb = self.absmax.numel()
            absmax = self.nested_code[self.absmax.long()] * self.nested.repeat_interleave(256)[:nb] + self.offset
        else:
            absmax = self.absmax.float()
        scale = absmax.repeat_interleave(self.bs)[: self.n]
        return (self.code[idx] * scale).reshape(self.shape)


def load(model, quantized):
    """(cfg, float weights by HF name, quantized projections by HF name)."""
    floats, quant = {}, {}
    with h5py.File(model, "r") as f:
        cfg = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()}
    with h5py.File(quantized, "r") as f:
        def visit(name, obj):
            key = name.replace("/", ".")
            if isinstance(obj, h5py.Group) and "shape" in obj.attrs and "blocksize" in obj.attrs:
                quant[key] = Quantized(obj)
            elif isinstance(obj, h5py.Dataset) and not any(key.startswith(q + ".") for q in quant):
                floats[key] = torch.from_numpy(np.asarray(obj[...], dtype=np.float32))
        for top in ("model", "lm_head"):
            if top in f:
                f[top].visititems(lambda n, o, top=top: visit(f"{top}/{n}", o))
    return cfg, floats, quant


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hd, theta):
    inv = theta ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([ang.cos()] * 2, -1).float(), torch.cat([ang.sin()] * 2, -1).float()


def rotary(x, cos, sin):  # x [B, H, T, hd], HF halves convention
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class Step:
    def __init__(self, cfg, floats, quant, r, alpha, per_step_dequant, seq_len, seed=0):
        self.cfg, self.floats, self.quant = cfg, floats, quant
        self.per_step = per_step_dequant
        self.base = None if per_step_dequant else {k: q.decode() for k, q in quant.items()}
        self.scale = alpha / r
        self.L = int(cfg["num_hidden_layers"])
        self.H, self.KV, self.hd = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"]), int(cfg["head_dim"])
        self.eps = float(cfg["rms_norm_eps"])
        self.cos, self.sin = rope_tables(seq_len, self.hd, float(cfg["rope_theta"]))
        self.mask = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
        gen = torch.Generator().manual_seed(seed)
        self.lora = {}
        for layer in range(self.L):
            for p, mod in PROJ.items():
                key = f"model.layers.{layer}.{mod}.{p}.weight"
                out, inp = quant[key].shape
                a = torch.empty(r, inp)
                bound = 1 / inp ** 0.5  # kaiming_uniform_(a=sqrt(5)), as PEFT
                a.uniform_(-bound, bound, generator=gen)
                b = torch.randn(out, r, generator=gen) * 0.01  # nonzero, so every matmul is real work
                self.lora[key] = (a.requires_grad_(), b.requires_grad_())
        self.params = [t for ab in self.lora.values() for t in ab]
        self.opt = torch.optim.AdamW(self.params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def proj(self, w, key, x):
        a, b = self.lora[key]
        return F.linear(x, w[key]) + self.scale * F.linear(F.linear(x, a), b)

    def layer_weights(self, layer):
        keys = [f"model.layers.{layer}.{mod}.{p}.weight" for p, mod in PROJ.items()]
        if self.per_step:
            return {k: self.quant[k].decode() for k in keys}
        return {k: self.base[k] for k in keys}

    def forward(self, ids):
        fw, B, T = self.floats, ids.shape[0], ids.shape[1]
        H, KV, hd = self.H, self.KV, self.hd
        x = F.embedding(ids, fw["model.embed_tokens.weight"])
        for layer in range(self.L):
            p = f"model.layers.{layer}."
            w = self.layer_weights(layer)
            h = rms_norm(x, fw[p + "input_layernorm.weight"], self.eps)
            q = self.proj(w, p + "self_attn.q_proj.weight", h).view(B, T, H, hd).transpose(1, 2)
            k = self.proj(w, p + "self_attn.k_proj.weight", h).view(B, T, KV, hd).transpose(1, 2)
            v = self.proj(w, p + "self_attn.v_proj.weight", h).view(B, T, KV, hd).transpose(1, 2)
            q, k = rotary(q, self.cos[:T], self.sin[:T]), rotary(k, self.cos[:T], self.sin[:T])
            k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
            s = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
            s = s.masked_fill(self.mask[:T, :T], float("-inf")).softmax(-1)
            att = (s @ v).transpose(1, 2).reshape(B, T, H * hd)
            x = x + self.proj(w, p + "self_attn.o_proj.weight", att)
            h = rms_norm(x, fw[p + "post_attention_layernorm.weight"], self.eps)
            g = self.proj(w, p + "mlp.gate_proj.weight", h)
            u = self.proj(w, p + "mlp.up_proj.weight", h)
            x = x + self.proj(w, p + "mlp.down_proj.weight", F.silu(g) * u)
        x = rms_norm(x, fw["model.norm.weight"], self.eps)
        head = fw.get("lm_head.weight", fw["model.embed_tokens.weight"])
        return F.linear(x, head)

    def step(self, windows):
        """windows: LongTensor [B, T + 1]; returns the loss."""
        inp, tgt = windows[:, :-1], windows[:, 1:]
        self.opt.zero_grad(set_to_none=True)
        logits = self.forward(inp)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="float model file (for /config)")
    ap.add_argument("--quantized", required=True, help="bin/shardlora-quantize output")
    ap.add_argument("--data", required=True, help="token dataset (documents of seq-len + 1 tokens)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", default="fp32,dequant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg, floats, quant = load(args.model, args.quantized)
    with h5py.File(args.data, "r") as f:
        tokens, offs = f["tokens"][:].astype(np.int64), f["doc_offsets"][:]
    W = args.seq_len + 1
    docs = [tokens[offs[i]:offs[i] + W] for i in range(len(offs) - 1) if offs[i + 1] - offs[i] >= W]
    need = (args.warmup + args.steps) * args.batch
    assert len(docs) >= need, f"need {need} documents of {W} tokens, found {len(docs)}"
    batches = [torch.from_numpy(np.stack(docs[i * args.batch:(i + 1) * args.batch]))
               for i in range(args.warmup + args.steps)]
    for variant in args.variants.split(","):
        t0 = time.perf_counter()
        st = Step(cfg, floats, quant, args.lora_r, args.lora_alpha, variant == "dequant", args.seq_len)
        setup = time.perf_counter() - t0
        times, losses = [], []
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            losses.append(st.step(batch))
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times)
        toks = args.batch * args.seq_len
        print(json.dumps({"impl": f"torch-{variant}", "threads": args.threads, "batch": args.batch,
                          "seq_len": args.seq_len, "tokens_per_step": toks, "ms_per_step": round(ms, 1),
                          "ms_min": round(1000 * min(times), 1), "ms_max": round(1000 * max(times), 1),
                          "tokens_per_s": round(toks / (ms / 1000), 1), "steps_timed": len(times),
                          "setup_s": round(setup, 2), "loss_first": round(losses[0], 4),
                          "loss_last": round(losses[-1], 4), "torch": torch.__version__,
                          "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}), flush=True)


if __name__ == "__main__":
    main()
