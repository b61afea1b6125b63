"""Float64 PyTorch reference of the LLaMA-family forward pass (llama, mistral, qwen2), written from
the math of the Hugging Face modelling code: RMSNorm, rotary embeddings in the HF "halves" convention
(element i paired with i + head_dim/2; the rope types' frequencies from rope_ref), grouped-query
causal attention, optional q/k/v biases, Qwen3's per-head q/k RMSNorm and the SwiGLU MLP. Weights are keyed by Hugging Face names
("model.layers.0.self_attn.q_proj.weight")."""
import h5py
import numpy as np
import torch

try:
    from . import rope_ref
except ImportError:  # imported as a top-level module
    import rope_ref

F64 = torch.float64


def rms_norm(x, weight, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def rotary(x, rope):
    """x: [heads, T, head_dim]; rotates the two halves of each head by position-dependent angles.
    rope: a rope_ref dict (type, theta, scaling fields), or a theta for the default type."""
    if not isinstance(rope, dict):
        rope = {"type": "default", "theta": float(rope)}
    T, hd = x.shape[1], x.shape[2]
    half = hd // 2
    cos, sin = (torch.from_numpy(np.concatenate([t] * 2, -1)) for t in rope_ref.cos_sin(rope, hd, T))
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def _linear(w, name, x):
    y = x @ w[name + ".weight"].T
    bias = w.get(name + ".bias")
    return y if bias is None else y + bias


def attention(w, prefix, h, cfg):
    T = h.shape[0]
    H, KV = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
    hd = int(cfg["head_dim"])
    q = _linear(w, prefix + "q_proj", h).view(T, H, hd).transpose(0, 1)
    k = _linear(w, prefix + "k_proj", h).view(T, KV, hd).transpose(0, 1)
    v = _linear(w, prefix + "v_proj", h).view(T, KV, hd).transpose(0, 1)
    if prefix + "q_norm.weight" in w:  # Qwen3: each head's q and k RMS-normalised before the rotation
        eps = float(cfg["rms_norm_eps"])
        q, k = rms_norm(q, w[prefix + "q_norm.weight"], eps), rms_norm(k, w[prefix + "k_norm.weight"], eps)
    rope = rope_ref.params(cfg)
    q, k = rotary(q, rope), rotary(k, rope)
    # query head j reads kv head j // (H / KV), as HF's repeat_kv arranges them
    k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
    scores = q @ k.transpose(1, 2) / hd ** 0.5
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    probs = scores.masked_fill(causal, float("-inf")).softmax(-1)
    return _linear(w, prefix + "o_proj", (probs @ v).transpose(0, 1).reshape(T, H * hd))


def mlp(w, prefix, h):
    gate, up = _linear(w, prefix + "gate_proj", h), _linear(w, prefix + "up_proj", h)
    return _linear(w, prefix + "down_proj", torch.nn.functional.silu(gate) * up)


def logits(weights, cfg, ids):
    """Logits [T, vocab] in float64 for one sequence of token ids (a LongTensor)."""
    w = {k: torch.as_tensor(v).to(F64) for k, v in weights.items()}
    eps = float(cfg["rms_norm_eps"])
    x = w["model.embed_tokens.weight"][ids]
    for layer in range(int(cfg["num_hidden_layers"])):
        p = f"model.layers.{layer}."
        x = x + attention(w, p + "self_attn.", rms_norm(x, w[p + "input_layernorm.weight"], eps), cfg)
        x = x + mlp(w, p + "mlp.", rms_norm(x, w[p + "post_attention_layernorm.weight"], eps))
    head = w["model.embed_tokens.weight"] if int(cfg["tie_word_embeddings"]) else w["lm_head.weight"]
    return rms_norm(x, w["model.norm.weight"], eps) @ head.T


def load_h5(path):
    """(weights, cfg) of a shardlora model file: tensors by HF name as float64, /config attributes."""
    weights = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                weights[name.replace("/", ".")] = torch.from_numpy(np.asarray(obj[...], dtype=np.float64))
        for top in ("model", "lm_head"):
            if top in f:
                f[top].visititems(lambda n, o, top=top: visit(f"{top}/{n}", o))
        cfg = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()}
    return weights, cfg
