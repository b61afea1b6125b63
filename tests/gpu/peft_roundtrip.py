"""Run on a machine with transformers and PEFT (the GPU host): an adapter exported by
shardlora-export loads with PeftModel.from_pretrained onto the same base (built here from the
shardlora model file) and gives the loss shardlora eval --quant=none --adapter computed.
usage: peft_roundtrip.py MODEL.h5 PEFT_DIR DATA.h5 SEQ_LEN EXPECTED_LOSS"""
import sys

import h5py
import numpy as np
import torch
from peft import PeftModel
from transformers import LlamaConfig, LlamaForCausalLM

model_path, peft_dir, data_path, seq_len, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
with h5py.File(model_path, "r") as f:
    c = dict(f["config"].attrs)
    state = {}
    f.visititems(lambda k, o: state.__setitem__(k.replace("/", "."), torch.from_numpy(np.asarray(o[...], np.float32)))
                 if isinstance(o, h5py.Dataset) and (k.startswith("model/") or k.startswith("lm_head")) else None)
cfg = LlamaConfig(hidden_size=int(c["hidden_size"]), intermediate_size=int(c["intermediate_size"]),
                  num_hidden_layers=int(c["num_hidden_layers"]), num_attention_heads=int(c["num_attention_heads"]),
                  num_key_value_heads=int(c["num_key_value_heads"]), vocab_size=int(c["vocab_size"]),
                  max_position_embeddings=int(c["max_position_embeddings"]), rope_theta=float(c["rope_theta"]),
                  rms_norm_eps=float(c["rms_norm_eps"]), tie_word_embeddings=bool(c["tie_word_embeddings"]))
base = LlamaForCausalLM(cfg).float()
missing, unexpected = base.load_state_dict(state, strict=False)
assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
model = PeftModel.from_pretrained(base, peft_dir).eval()
with h5py.File(data_path, "r") as f:
    tokens, offsets = f["tokens"][:], f["doc_offsets"][:]
total, count = 0.0, 0
with torch.no_grad():
    for d in range(len(offsets) - 1):
        s, e = int(offsets[d]), int(offsets[d + 1])
        while e - s >= 2:
            n = min(seq_len + 1, e - s)
            ids = torch.tensor(tokens[s:s + n], dtype=torch.long)[None]
            logits = model(input_ids=ids[:, :-1]).logits.double()
            total += float(torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
            count += n - 1
            s += seq_len
loss = total / count
rel = abs(loss - expected) / abs(expected)
print(f"PEFT loss {loss:.6f}, shardlora eval {expected:.6f}, relative difference {rel:.2e}")
print("ok - PEFT loads the export and matches shardlora eval" if rel < 1e-4 else "not ok - PEFT loss differs")
sys.exit(0 if rel < 1e-4 else 1)
