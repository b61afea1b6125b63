"""shardlora eval against a float64 PyTorch reference (tests/reference/llama_ref.py) on the real
pretrained stories260K model and on a random Qwen2-style model with biases, at 1, 2 and 4 ranks.
Documents are text sampled from the model itself plus random ids, with a partial loss mask."""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llama_ref  # noqa: E402
from testlib import BIN, SHARED, check, check_close, finish, run  # noqa: E402

SEQ_LEN = 64


def sample(weights, cfg, n, gen):
    """n tokens sampled from the model (temperature 1), starting from BOS."""
    ids = [1]
    while len(ids) < n:
        logits = llama_ref.logits(weights, cfg, torch.tensor(ids))[-1]
        ids.append(int(torch.multinomial(logits.softmax(-1), 1, generator=gen)))
    return np.array(ids)


def write_dataset(path, docs, vocab, mask=None):
    tokens = np.concatenate(docs).astype(np.int32)
    with h5py.File(path, "w") as f:
        f["tokens"] = tokens
        f["doc_offsets"] = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        if mask is not None:
            f["loss_mask"] = mask.astype(np.uint8)
        f.attrs["vocab_size"] = vocab
        f.attrs["shardlora_kind"] = "dataset"


def reference_loss(weights, cfg, data_path):
    """Mean masked next-token loss over windows of SEQ_LEN + 1 tokens overlapping by one."""
    with h5py.File(data_path, "r") as f:
        tokens, offsets = f["tokens"][:], f["doc_offsets"][:]
        mask = f["loss_mask"][:] if "loss_mask" in f else np.ones_like(tokens)
    total, count = 0.0, 0
    for d in range(len(offsets) - 1):
        start, end = int(offsets[d]), int(offsets[d + 1])
        while end - start >= 2:
            n = min(SEQ_LEN + 1, end - start)
            window = torch.tensor(tokens[start:start + n], dtype=torch.long)
            logp = llama_ref.logits(weights, cfg, window[:-1]).log_softmax(-1)
            picked = -logp[torch.arange(n - 1), window[1:]]
            keep = torch.tensor(mask[start + 1:start + n], dtype=torch.bool)
            total += float(picked[keep].sum())
            count += int(keep.sum())
            start += SEQ_LEN
    return total / count, count


def eval_ranks(name, model, data, weights, cfg, elements, itemsize):
    want, want_tokens = reference_loss(weights, cfg, data)
    losses = {}
    for np_ in (1, 2, 4):
        out = f"eval_{name}_{np_}.h5"
        run([f"{BIN}/shardlora", "eval", f"--model={model}", f"--data={data}", f"--seq-len={SEQ_LEN}",
             "--micro-batch=3", f"--out={out}"], np=np_)
        with h5py.File(out, "r") as f:
            loss, tokens = float(f["eval/loss"][()]), int(f["eval/tokens"][()])
            check_close(f"{name}: perplexity is exp(loss) at np={np_}", float(f["eval/perplexity"][()]),
                        float(np.exp(loss)), 1e-12)
            read = f["io/model_bytes_read"][:]
        check_close(f"{name}: eval loss equals the float64 PyTorch reference at np={np_}", loss, want, 1e-5)
        check(f"{name}: predicted-token count at np={np_}", tokens == want_tokens, f"{tokens} != {want_tokens}")
        share = elements * itemsize / np_
        check(f"{name}: each of {np_} ranks read about 1/{np_} of the model",
              all(abs(r - share) <= 0.01 * share + 64 * itemsize for r in read), f"{list(read)} vs {share:.0f} each")
        losses[np_] = loss
    spread = max(losses.values()) - min(losses.values())
    check(f"{name}: results agree across rank counts (spread {spread:.2e})", spread <= 1e-5 * abs(want), losses)


def stories():
    model = "stories.h5"
    run([f"{BIN}/shardlora-import", "llama2c", f"{SHARED}/models/stories260K.bin", model])
    weights, cfg = llama_ref.load_h5(model)
    gen = torch.Generator().manual_seed(1234)
    text = sample(weights, cfg, 220, gen)
    rng = np.random.default_rng(7)
    # documents cut from sampled text, plus random ids; lengths hit 1, 2, seq_len and seq_len + 1..2
    docs = [text[:1], text[1:3], text[3:67], text[67:132], text[132:220], rng.integers(0, 512, 66), rng.integers(0, 512, 150)]
    mask = (rng.random(sum(len(d) for d in docs)) > 0.2).astype(np.uint8)
    write_dataset("stories_data.h5", docs, 512, mask)
    elements = sum(w.numel() for w in weights.values())
    eval_ranks("stories260K", model, "stories_data.h5", weights, cfg, elements, 4)


def qwen2_bf16():
    model = "qwen2.h5"
    run([f"{BIN}/shardlora-init", model, "--arch", "qwen2", "--hidden", "96", "--heads", "6", "--kv-heads", "2",
         "--intermediate", "160", "--layers", "3", "--vocab", "300", "--std", "0.08", "--seed", "5", "--dtype", "bf16"])
    # shardlora-init writes zero biases and unit norms: make them random so they are tested
    rng = np.random.default_rng(11)
    with h5py.File(model, "r+") as f:
        for name, obj in list(f["model/layers"].items()):
            for key in ("self_attn/q_proj/bias", "self_attn/k_proj/bias", "self_attn/v_proj/bias",
                        "input_layernorm/weight", "post_attention_layernorm/weight"):
                d = obj[key]
                base = 1.0 if "layernorm" in key else 0.0
                d[...] = (base + 0.1 * rng.standard_normal(d.shape)).astype(np.float32)
    weights, cfg = llama_ref.load_h5(model)
    docs = [rng.integers(0, 300, n) for n in (5, 64, 65, 200, 31)]
    write_dataset("qwen2_data.h5", docs, 300)
    elements = sum(w.numel() for w in weights.values())
    eval_ranks("qwen2 bf16 with biases", model, "qwen2_data.h5", weights, cfg, elements, 2)


stories()
qwen2_bf16()
finish()
