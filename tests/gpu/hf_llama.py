"""Hugging Face transformers LlamaForCausalLM + PEFT LoRA on the weights of a shardlora model file
(decoded by tests/reference/dequant_ref.py), with the trainable LoRA tensors named by shardlora's
adapter paths. Shared by test_hf_peft_step.py (one step) and test_hf_curve.py (a training curve)."""
import numpy as np
import torch


def rel(a, b):
    """Relative norm distance of a from b."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def base_model(weights, c):
    """transformers' LlamaForCausalLM (float32, on the CPU) holding weights ({HF name: tensor}, as
    load_quantized gives them) of a model with config attributes c."""
    from transformers import LlamaConfig, LlamaForCausalLM
    assert c["architecture"] == "llama" and c["rope_type"] == "default" and not int(c["attention_bias"]), c
    cfg = LlamaConfig(hidden_size=int(c["hidden_size"]), intermediate_size=int(c["intermediate_size"]),
                      num_hidden_layers=int(c["num_hidden_layers"]), num_attention_heads=int(c["num_attention_heads"]),
                      num_key_value_heads=int(c["num_key_value_heads"]), head_dim=int(c["head_dim"]),
                      vocab_size=int(c["vocab_size"]), max_position_embeddings=int(c["max_position_embeddings"]),
                      rope_theta=float(c["rope_theta"]), rms_norm_eps=float(c["rms_norm_eps"]),
                      tie_word_embeddings=bool(c["tie_word_embeddings"]), attention_bias=False, mlp_bias=False,
                      hidden_act="silu", bos_token_id=int(c["bos_token_id"]), eos_token_id=int(c["eos_token_id"]))
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg)
    state = {k: v.to(torch.float32) for k, v in weights.items()}
    missing, unexpected = base.load_state_dict(state, strict=False)
    tied = bool(c["tie_word_embeddings"])  # then the file has no lm_head: HF's head is the embedding
    assert not unexpected and all("rotary" in k or (tied and k == "lm_head.weight") for k in missing), (missing, unexpected)
    assert not tied or base.lm_head.weight.data_ptr() == base.model.embed_tokens.weight.data_ptr()
    return base


def peft_model(weights, c, r, alpha, targets, device, dtype, dropout=0.0):
    """(model, {adapter path: parameter}): the base of weights (as load_quantized gives them; config
    attributes c) in dtype on device, LoRA r / alpha / dropout on targets. The adapters are float32
    whatever dtype is (PEFT's autocast_adapter_dtype, as in QLoRA); PEFT draws their values (A
    random, B zero), so copy into the parameters to start from a given adapter."""
    from peft import LoraConfig, get_peft_model
    base = base_model(weights, c).to(device=device, dtype=dtype)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                                            target_modules=list(targets)))
    params = {}
    for name, p in model.named_parameters():
        if p.requires_grad:  # base_model.model.model.layers.L.self_attn.q_proj.lora_A.default.weight
            key = "lora/" + name.split("base_model.model.", 1)[1].replace(".default.weight", "").replace(".", "/")
            assert p.dtype == torch.float32, (key, p.dtype)  # PEFT's autocast_adapter_dtype
            params[key] = p
    return model, params


def set_adapter(params, adapter):
    """Copy an adapter ({path: array}) into the parameters of peft_model; the paths must match."""
    assert set(params) == set(adapter), (sorted(set(params) ^ set(adapter)))[:4]
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(torch.from_numpy(np.asarray(adapter[key], np.float32)))
