"""The model families people fine-tune, as tiny random transformers models: each family's config
(its rope type, window, biases, norms and tying as the released checkpoints have them), random
non-zero fp32 weights, `save_pretrained` in transformers 5's layout and the same directory rewritten
in transformers 4's config.json layout, and transformers' own loss over the windows shardlora eval
cuts (README: eval)."""
import json
import os
import shutil
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import write_tokens  # noqa: E402

torch.set_num_threads(1)  # the suite shares 2 cores; one thread also keeps the sums in one order

VOCAB = 128
SHAPE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=VOCAB, max_position_embeddings=128, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
# Short original contexts, so 64-token windows reach the part of the spectrum the scaling changes.
LLAMA3_ROPE = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=32)


class Family:
    """One family: its transformers config class and arguments; seq_len, the window eval and training
    use; v4_omit, keys transformers 4 did not write for it (Llama 2's config.json has no rope_theta);
    v4_extra, keys it wrote that transformers 5 drops (Qwen2.5's unused sliding_window);
    v4_rope_type_key, the key its rope_scaling names the type under ("type" in Qwen2.5's)."""

    def __init__(self, name, config_class, seq_len=64, v4_omit=(), v4_extra=None, v4_rope_type_key="rope_type",
                 **config):
        self.name, self.config_class, self.seq_len, self.config = name, config_class, seq_len, config
        self.v4_omit, self.v4_extra, self.v4_rope_type_key = v4_omit, v4_extra or {}, v4_rope_type_key

    def hf_config(self, **changes):
        return self.config_class(**{**self.config, **changes})


FAMILIES = [
    Family("llama2", LlamaConfig, **dict(SHAPE, num_key_value_heads=4),
           rope_parameters=dict(rope_type="default", rope_theta=10000.0),
           v4_omit=("rope_theta", "head_dim", "attention_bias", "attention_dropout", "mlp_bias")),
    Family("llama3.1", LlamaConfig, **dict(SHAPE, eos_token_id=[2, 3]),
           rope_parameters=dict(LLAMA3_ROPE, rope_theta=500000.0)),
    Family("llama3.2", LlamaConfig, **SHAPE, tie_word_embeddings=True,
           rope_parameters=dict(LLAMA3_ROPE, factor=32.0, rope_theta=500000.0)),
    # LlamaConfig's attention_bias puts biases on q, k, v and o (Qwen2's are on q, k and v only)
    Family("llama-attention-bias", LlamaConfig, **SHAPE, attention_bias=True,
           rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=10000.0)),
    Family("mistral-v0.3", MistralConfig, **SHAPE, sliding_window=None,
           rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    # evaluated and trained at seq-len = window: the longest that sliding-window attention leaves whole
    Family("mistral-window", MistralConfig, seq_len=32, **SHAPE, sliding_window=32,
           rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    Family("qwen2", Qwen2Config, **dict(SHAPE, bos_token_id=None), tie_word_embeddings=True,
           rope_parameters=dict(rope_type="default", rope_theta=1000000.0), use_sliding_window=False,
           v4_extra=dict(sliding_window=16, max_window_layers=2)),
    Family("qwen2.5-yarn", Qwen2Config, **dict(SHAPE, bos_token_id=None),
           rope_parameters=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=32,
                                rope_theta=1000000.0),
           use_sliding_window=False, v4_rope_type_key="type"),
    Family("qwen3", Qwen3Config, **dict(SHAPE, bos_token_id=None), head_dim=32, attention_bias=False,
           rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
]


def random_model(family, seed, **config_changes):
    """The family's model with every parameter drawn afresh (norm weights near 1, biases non-zero:
    transformers' own init leaves biases and norms constant, which would hide their handling;
    matrices with std 1.6 / sqrt(columns), so wider models keep the tiny ones' logit scale)."""
    model = AutoModelForCausalLM.from_config(family.hf_config(**config_changes), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.3 * noise)
            else:
                p.copy_(noise * (0.5 if name.endswith(".bias") else 1.6 / p.shape[-1] ** 0.5))
    return model


def v4_layout(config5, family):
    """config.json as transformers 4 wrote it, from transformers 5's: rope_theta and rope_scaling
    (null for the default rope) at the top level, torch_dtype for dtype, no layer_types."""
    c = {k: v for k, v in config5.items() if k not in ("rope_parameters", "dtype", "layer_types")}
    rope = dict(config5["rope_parameters"])
    c["rope_theta"] = rope.pop("rope_theta")
    rope_type = rope.pop("rope_type")
    c["rope_scaling"] = None if rope_type == "default" else {**rope, family.v4_rope_type_key: rope_type}
    c["torch_dtype"], c["transformers_version"] = config5["dtype"], "4.51.3"
    for k in family.v4_omit:
        c.pop(k)
    return {**c, **family.v4_extra}


def save_both_layouts(model, family, where):
    """The model saved by transformers 5 into WHERE/FAMILY-v5 and the same weights with transformers
    4's config.json into WHERE/FAMILY-v4; returns the two directories."""
    v5, v4 = (os.path.join(where, f"{family.name}-{layout}") for layout in ("v5", "v4"))
    model.save_pretrained(v5)
    shutil.copytree(v5, v4)
    with open(os.path.join(v5, "config.json")) as f:
        config5 = json.load(f)
    with open(os.path.join(v4, "config.json"), "w") as f:
        json.dump(v4_layout(config5, family), f, indent=2, sort_keys=True)
    return v5, v4


def rope_parameters(directory):
    """The rope parameters transformers 5 reads from a saved directory, either layout."""
    return AutoConfig.from_pretrained(directory).rope_parameters


def random_docs(seed, lengths):
    rng = np.random.default_rng(seed)
    return [np.concatenate([[1], rng.integers(3, VOCAB, n - 1)]) for n in lengths]


def write_docs(path, docs):
    write_tokens(path, docs, VOCAB)


def windows(doc, seq_len):
    """shardlora eval's windows of one document: at most seq_len + 1 tokens, overlapping by one."""
    return [doc[s:s + seq_len + 1] for s in range(0, len(doc) - 1, seq_len)]


def hf_loss(model, docs, seq_len):
    """Mean next-token cross-entropy (nats) of a transformers (or PEFT) model over those windows,
    summed in float64."""
    total, count = 0.0, 0
    with torch.no_grad():
        for doc in docs:
            for w in windows(doc, seq_len):
                ids = torch.tensor(w, dtype=torch.long)[None]
                logits = model(input_ids=ids[:, :-1]).logits[0].double()
                total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
                count += len(w) - 1
    return total / count
