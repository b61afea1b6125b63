"""Float64 PyTorch autograd reference of LoRA training on a LLaMA-family model: the forward of
llama_ref with y = W x + b + scale * B (A x) on every adapted projection, the causal-LM loss over
masked targets or the sequence-classification loss on the last token, and the gradients."""
import h5py
import numpy as np
import torch

import llama_ref

PROJ = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
        "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def write_adapter(path, cfg, r, alpha, targets, rng, num_labels=0, std=0.05):
    """A random adapter file (A and B both nonzero, so every gradient is informative)."""
    tensors = {}
    D, F = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    Q = int(cfg["num_attention_heads"]) * int(cfg["head_dim"])
    KV = int(cfg["num_key_value_heads"]) * int(cfg["head_dim"])
    shape = {"q_proj": (Q, D), "k_proj": (KV, D), "v_proj": (KV, D), "o_proj": (D, Q),
             "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}
    with h5py.File(path, "w") as f:
        for key, value in {"shardlora_kind": "adapter", "task": "seq_cls" if num_labels else "causal_lm",
                           "target_modules": ",".join(targets)}.items():
            f.attrs[key] = value
        f.attrs["num_labels"] = np.int64(num_labels)
        f.attrs["lora_r"] = np.int64(r)
        f.attrs["lora_alpha"] = float(alpha)
        f.attrs["lora_dropout"] = 0.0
        f.attrs["rslora"] = np.int64(0)
        for layer in range(int(cfg["num_hidden_layers"])):
            for p in targets:
                out, inp = shape[p]
                base = f"lora/model/layers/{layer}/{PROJ[p]}/{p}/"
                for name, dims in (("lora_A", (r, inp)), ("lora_B", (out, r))):
                    value = (std * rng.standard_normal(dims)).astype(np.float32)
                    f[base + name] = value
                    tensors[base + name] = value
        if num_labels:
            value = (0.05 * rng.standard_normal((num_labels, D))).astype(np.float32)
            f["score/weight"] = value
            tensors["score/weight"] = value
    return tensors


def _same(kind, t):
    return t


def hidden(weights, cfg, ids, adapter, scale, at=_same):
    """Final normalised hidden states [T, hidden] with adapters applied (float64).
    at(kind, t) sees (and may replace, e.g. round) each intermediate on its way: "x" the residual
    stream after the embedding and after each residual add, "h" every projection's input (the
    normed activations, the attention output, silu(gate) * up), "y" every projection's output
    (base + LoRA) and the rotated q and k, "u" each LoRA intermediate A x; bf16_sensitivity.py
    uses it to model which values a bf16 backend stores."""
    w = {k: torch.as_tensor(v).to(torch.float64) for k, v in weights.items()}
    eps = float(cfg["rms_norm_eps"])
    H, KV, hd = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"]), int(cfg["head_dim"])

    def proj(layer, name, x):
        mod = f"model.layers.{layer}.{PROJ[name]}.{name}"
        x = at("h", x)
        y = x @ w[mod + ".weight"].T
        if mod + ".bias" in w:
            y = y + w[mod + ".bias"]
        key = f"lora/model/layers/{layer}/{PROJ[name]}/{name}/"
        if key + "lora_A" in adapter:
            y = y + scale * at("u", x @ adapter[key + "lora_A"].T) @ adapter[key + "lora_B"].T
        return at("y", y)

    T = len(ids)
    x = at("x", w["model.embed_tokens.weight"][ids])
    for layer in range(int(cfg["num_hidden_layers"])):
        p = f"model.layers.{layer}."
        h = llama_ref.rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = proj(layer, "q_proj", h).view(T, H, hd).transpose(0, 1)
        k = proj(layer, "k_proj", h).view(T, KV, hd).transpose(0, 1)
        v = proj(layer, "v_proj", h).view(T, KV, hd).transpose(0, 1)
        rope = llama_ref.rope_ref.params(cfg)
        q, k = at("y", llama_ref.rotary(q, rope)), at("y", llama_ref.rotary(k, rope))
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        scores = q @ k.transpose(1, 2) / hd ** 0.5
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(0, 1).reshape(T, H * hd)
        x = at("x", x + proj(layer, "o_proj", att))
        h = llama_ref.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = at("x", x + proj(layer, "down_proj", torch.nn.functional.silu(proj(layer, "gate_proj", h)) * proj(layer, "up_proj", h)))
    return at("h", llama_ref.rms_norm(x, w["model.norm.weight"], eps)), w


def loss_and_grads(weights, cfg, adapter_np, scale, docs, masks=None, labels=None, at=_same):
    """Mean loss over the batch (all masked targets, or all documents) and its gradients; at: as
    for hidden, plus "logits" (the LM head's output)."""
    adapter = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in adapter_np.items()}
    total, count = 0, 0
    for i, doc in enumerate(docs):
        ids = torch.tensor(doc[:-1] if labels is None else doc, dtype=torch.long)
        xn, w = hidden(weights, cfg, ids, adapter, scale, at)
        if labels is None:
            head = w["model.embed_tokens.weight"] if int(cfg["tie_word_embeddings"]) else w["lm_head.weight"]
            logp = at("logits", xn @ head.T).log_softmax(-1)
            keep = torch.tensor(masks[i][1:], dtype=torch.bool)
            picked = -logp[torch.arange(len(doc) - 1), torch.tensor(doc[1:], dtype=torch.long)]
            total, count = total + picked[keep].sum(), count + int(keep.sum())
        else:
            logits = xn[-1] @ adapter["score/weight"].T
            total, count = total - logits.log_softmax(-1)[labels[i]], count + 1
    loss = total / count
    loss.backward()
    return float(loss), {k: v.grad.numpy() for k, v in adapter.items()}
