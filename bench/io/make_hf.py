"""A LLaMA-shaped Hugging Face checkpoint of random weights, as save_pretrained lays it out, for
bench/io/import.sh: config.json (transformers' keys), model-0000K-of-0000N.safetensors written by
safetensors.torch.save_file, and model.safetensors.index.json.

    python make_hf.py OUT_DIR

Every tensor is normal with std 0.02 in bfloat16 (norm weights too: the importer does not care),
drawn by torch.randn from one generator, on the GPU when there is one (the 8B shape's 8e9 values
take minutes on a few CPU cores). Tensors are put into shards in the model's order, a new shard
begun when the next tensor would take the current one past SHARD_MB megabytes, as
save_pretrained's max_shard_size does. Shape from the environment: HIDDEN (2048), INTERMEDIATE
(5632), LAYERS (16), HEADS (16), KV_HEADS (4), VOCAB (32000), the 0.85B shape; Llama-3-8B is
HIDDEN=4096 INTERMEDIATE=14336 LAYERS=32 HEADS=32 KV_HEADS=8 VOCAB=128256. SHARD_MB (500), SEED (1).
Only one shard's tensors are held at a time (plus the float32 draw of the largest tensor)."""
import json
import os
import sys

import torch
from safetensors.torch import save_file


def knob(name, default):
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        sys.exit(f"make_hf.py: {name}={value!r}: expected an integer")


def tensor_shapes(hidden, inter, layers, heads, kv_heads, vocab):
    """(name, shape) in the order of transformers' LlamaForCausalLM state dict (untied head)."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    yield "model.embed_tokens.weight", (vocab, hidden)
    for l in range(layers):
        p = f"model.layers.{l}."
        yield p + "self_attn.q_proj.weight", (hidden, hidden)
        yield p + "self_attn.k_proj.weight", (kv, hidden)
        yield p + "self_attn.v_proj.weight", (kv, hidden)
        yield p + "self_attn.o_proj.weight", (hidden, hidden)
        yield p + "mlp.gate_proj.weight", (inter, hidden)
        yield p + "mlp.up_proj.weight", (inter, hidden)
        yield p + "mlp.down_proj.weight", (hidden, inter)
        yield p + "input_layernorm.weight", (hidden,)
        yield p + "post_attention_layernorm.weight", (hidden,)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def shard_plan(shapes, limit):
    """Lists of (name, shape), each at most limit bytes of bfloat16 (or one tensor larger than that)."""
    shards, current, size = [], [], 0
    for name, shape in shapes:
        nbytes = 2 * torch.Size(shape).numel()
        if current and size + nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    if current:
        shards.append(current)
    return shards


def config(hidden, inter, layers, heads, kv_heads, vocab):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hidden // heads, "vocab_size": vocab,
        "max_position_embeddings": 8192 if vocab > 100000 else 2048, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0 if vocab > 100000 else 10000.0, "rope_scaling": None, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": 1,
        "eos_token_id": 2, "initializer_range": 0.02, "torch_dtype": "bfloat16", "use_cache": True,
        "transformers_version": "4.46.0",
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    sizes = [knob(k, d) for k, d in (("HIDDEN", 2048), ("INTERMEDIATE", 5632), ("LAYERS", 16), ("HEADS", 16),
                                     ("KV_HEADS", 4), ("VOCAB", 32000))]
    hidden, _, _, heads, kv_heads, _ = sizes
    if min(sizes) <= 0 or hidden % heads or heads % kv_heads:
        sys.exit(f"make_hf.py: HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, VOCAB = {sizes}: expected positive "
                 "sizes with HEADS dividing HIDDEN and KV_HEADS dividing HEADS")
    os.makedirs(out, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=device).manual_seed(knob("SEED", 1))
    shards = shard_plan(tensor_shapes(*sizes), knob("SHARD_MB", 500) * 1000000)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape in shard:
            x = torch.randn(shape, generator=g, device=device, dtype=torch.float32).mul_(0.02)
            tensors[name] = x.to(torch.bfloat16).cpu()
            weight_map[name] = fname
            total += 2 * x.numel()
        save_file(tensors, os.path.join(out, fname), metadata={"format": "pt"})
        print(f"{fname}: {len(tensors)} tensors", flush=True)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config(*sizes), f, indent=2)
    print(f"{out}: {sum(len(s) for s in shards)} tensors, {total} bytes in {len(shards)} shards ({device})")


if __name__ == "__main__":
    main()
