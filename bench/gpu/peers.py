#!/usr/bin/env python3
"""The peers of bench/gpu/run.sh: the same QLoRA step as `shardlora train` in other trainers, each
in its own process, on the same model shape and tokens per step. Subcommands:

  model DIR     a random bf16 LlamaForCausalLM (--shape: Llama-3-8B by default, or Llama-2-7B; LAYERS
                layers, untied embeddings, every matrix normal(0, 0.02), norms ones) saved as
                safetensors, with a minimal tokenizer that has a pad token (Unsloth needs one); built
                on the GPU in seconds
  hw            HBM copy bandwidth (4 GiB device-to-device, bytes read + written) and the bf16 GEMM
                rate of the shape's MLP up projection over one micro-batch (16384x4096 @ 4096x14336
                for Llama-3-8B at 16,384 tokens, median of 20)
  train         one peer: hf (transformers + PEFT + bitsandbytes, gradient checkpointing on),
                unsloth (FastLanguageModel, no checkpointing), unsloth-gc (its offloaded checkpointing);
                2 warm-up steps, then the median of --steps timed steps (synchronize + perf_counter)
  shape         the run's shape as one JSON object (--out: the table's headline), or with
                --init-flags as shardlora-init's options (bench/gpu/step.sh's init source)
  table         the markdown table of a results file (one JSON object per line)

hw, train and shape append one JSON object per measurement to --out. `--tiny` shrinks everything
(hidden 64, 2 layers, vocab 512, seq 64, batch 2; the shape's own head structure) so the whole path
runs on a CPU for a smoke test.

Imports are local to each path: Unsloth patches transformers and PEFT, so in the unsloth peers it
must be imported before them (and before torch, as its documentation asks)."""
import argparse
import json
import os
import statistics
import sys
import time
import traceback

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PEERS = {
    "hf": "transformers + PEFT + bitsandbytes",
    "unsloth": "Unsloth",
    "unsloth-gc": "Unsloth, offloaded checkpointing",
}


# name: (the model shape, its --tiny variant: the same structure at hidden 64, for the CPU smoke test)
SHAPES = {
    "llama3-8b": (dict(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256,
                       max_pos=8192, rope_theta=500000.0),
                  dict(hidden=64, intermediate=172, layers=2, heads=4, kv_heads=2, vocab=512,
                       max_pos=512, rope_theta=500000.0)),
    "llama2-7b": (dict(hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32, vocab=32000,
                       max_pos=4096, rope_theta=10000.0),
                  dict(hidden=64, intermediate=172, layers=2, heads=4, kv_heads=4, vocab=512,
                       max_pos=512, rope_theta=10000.0)),
    # issue 9's 70B class on one GPU (step.sh's init source writes it pre-quantized: 39.5 GB)
    "llama3-70b": (dict(hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8, vocab=128256,
                        max_pos=8192, rope_theta=500000.0),
                   dict(hidden=128, intermediate=344, layers=2, heads=8, kv_heads=2, vocab=512,
                        max_pos=512, rope_theta=500000.0)),
}


def shape(name, tiny, layers=None, seq=None, batch=None):
    """The model and step shape of every side (run.sh passes the same numbers to shardlora): the
    named shape with `layers` decoder layers, seq 2048 (tiny 64), and by default a micro-batch of
    16,384 (tiny 128) tokens per step."""
    s = dict(SHAPES[name][1 if tiny else 0], name=name, tiny=tiny)
    s["layers"] = layers or s["layers"]
    s["seq"] = seq or (64 if tiny else 2048)
    s["batch"] = batch or max(1, (128 if tiny else 16384) // s["seq"])
    if s["seq"] > s["max_pos"]:  # as shardlora train refuses it; Unsloth would scale the rope instead
        sys.exit(f"peers.py: seq {s['seq']} exceeds the max_position_embeddings of {name}"
                 f"{' (tiny)' if tiny else ''}: {s['max_pos']}")
    return s


def flops_per_token(s):
    """Model FLOPs per token: forward and input-gradient backward of every base linear and the LM
    head (2 + 2 FLOPs per weight), plus causal attention (per layer 2 x seq/2 keys x heads*head_dim
    for each of QK^T and PV forward, and the backward's four products: 6 seq Q). The same formula
    as bench/gpu/step.sh; adapter and weight-gradient FLOPs are not counted."""
    D, F, V, L = s["hidden"], s["intermediate"], s["vocab"], s["layers"]
    hd = D // s["heads"]
    Q, KV = s["heads"] * hd, s["kv_heads"] * hd
    linear = D * Q + 2 * D * KV + Q * D + 3 * D * F
    return 4 * (L * linear + V * D) + L * 6 * s["seq"] * Q


def emit(path, row):
    line = json.dumps(row)
    print("result: " + line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def first_line(e):
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:300]


# ---------------------------------------------------------------------------------------- shape


def cmd_shape(a):
    s = shape(a.shape, a.tiny, a.layers, a.seq, a.batch)
    if a.init_flags:
        print(f"--hidden {s['hidden']} --intermediate {s['intermediate']} --layers {s['layers']} "
              f"--heads {s['heads']} --kv-heads {s['kv_heads']} --vocab {s['vocab']} --max-pos {s['max_pos']} "
              f"--rope-theta {s['rope_theta']:g}")
    else:
        emit(a.out, {"kind": "shape", **s})


# ---------------------------------------------------------------------------------------- model


def cmd_model(a):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    s = shape(a.shape, a.tiny, a.layers)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    cfg = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                      num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                      num_key_value_heads=s["kv_heads"], max_position_embeddings=s["max_pos"],
                      rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"]},
                      tie_word_embeddings=False, initializer_range=0.02, bos_token_id=1, eos_token_id=2,
                      pad_token_id=3, attention_bias=False, mlp_bias=False, use_cache=False)
    # Built where it runs, in bf16: on the GPU an 8B model takes seconds (a CPU float32 init takes
    # minutes). The explicit init below is what the model must hold, whatever transformers' own
    # init did (its padding row is zeroed, for instance): normal(0, 0.02) matrices, unit norms.
    torch.manual_seed(a.seed)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
            else:
                p.fill_(1.0)
    zero = [n for n, p in model.named_parameters() if p.dim() == 2 and not p.abs().amax().item()]
    if zero:
        sys.exit(f"peers.py model: all-zero weights after init: {zero[:3]}")
    if device == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    model.save_pretrained(a.dir, safe_serialization=True, max_shard_size="100GB")
    # A word-level vocabulary is enough: the peers are fed token ids, never text. Unsloth asks for
    # a pad token; the model's vocabulary is larger than the tokenizer's 256 words.
    words = ["<unk>", "<s>", "</s>", "<pad>"] + [f"w{i}" for i in range(252)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>", model_max_length=s["max_pos"]).save_pretrained(a.dir)
    t2 = time.perf_counter()
    n = sum(p.numel() for p in model.parameters())
    print(f"peers.py model: {a.dir}: {n:,} parameters, {s['layers']} layers, built on {device} in "
          f"{t1 - t0:.1f} s, saved in {t2 - t1:.1f} s", flush=True)


# ------------------------------------------------------------------------------------------- hw


def timed(fn, warmup, reps, sync):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def cmd_hw(a):
    import torch

    cuda = torch.cuda.is_available() and a.device != "cpu"
    dev = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    # bf16 GEMM of the MLP's up projection over one micro-batch: tokens x hidden @ hidden x inter.
    s = shape(a.shape, a.tiny, a.layers, a.seq, a.batch)
    M, K, N = (s["seq"] * s["batch"], s["hidden"], s["intermediate"]) if not a.tiny else (512, 256, 512)
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    w = torch.randn(K, N, device=dev, dtype=torch.bfloat16)
    t = timed(lambda: torch.matmul(x, w), 5, 20, sync)
    gemm = 2 * M * K * N / t
    del x, w
    # Device-to-device copy; the bytes read and written both count (as bench/gpu/dequant.cu).
    nbytes = (4 << 30) if not a.tiny else (64 << 20)
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    tc = timed(lambda: dst.copy_(src), 3, 20, sync)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    emit(a.out, {"kind": "hw", "device": name, "gemm_shape": [M, K, N], "gemm_ms": t * 1e3,
                 "gemm_flops": gemm, "copy_bytes": nbytes, "copy_ms": tc * 1e3, "copy_Bps": 2 * nbytes / tc,
                 "torch": torch.__version__})


# ---------------------------------------------------------------------------------------- train


def load_hf(a, s, torch, notes):
    """transformers + PEFT + bitsandbytes, as the QLoRA recipe: 4-bit NF4 with double quantization
    (bitsandbytes' 4-bit blocksize is 64), bf16 compute, gradient checkpointing (non-reentrant)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kw = dict(dtype=torch.bfloat16, attn_implementation="sdpa", device_map={"": 0 if a.dev == "cuda" else a.dev})
    if a.quant == "nf4":
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    else:
        notes.append("bf16 base, not 4-bit (--quant none)")
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, **kw)
    model.config.use_cache = False
    # prepare_model_for_kbit_training is left out on purpose: it casts the norms, embeddings and LM
    # head to float32, which is not the bf16 step the other sides take.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=PROJ, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    notes.append("gradient checkpointing (non-reentrant), sdpa")
    return model


def load_unsloth(a, s, torch, notes):
    """Unsloth's FastLanguageModel: 4-bit load (it builds the same NF4 + double-quant config), LoRA on
    all seven projections with dropout 0 and no bias (its fast LoRA kernels' case)."""
    from unsloth import FastLanguageModel

    gc = "unsloth" if a.peer == "unsloth-gc" else False
    model, _tok = FastLanguageModel.from_pretrained(
        model_name=a.model_dir, max_seq_length=s["seq"], dtype=torch.bfloat16, load_in_4bit=True,
        use_gradient_checkpointing=gc)
    model = FastLanguageModel.get_peft_model(
        model, r=16, lora_alpha=32, lora_dropout=0.0, target_modules=PROJ, bias="none",
        use_gradient_checkpointing=gc, random_state=3407, use_rslora=False)
    FastLanguageModel.for_training(model)
    emb = model.get_input_embeddings().weight.device
    notes.append("checkpointing " + ("unsloth (offloaded)" if gc else "off"))
    if emb.type != "cuda":
        notes.append(f"input embedding on {emb.type} (Unsloth moved it)")
    return model


def describe_4bit(model):
    """What the frozen base really is: the bitsandbytes 4-bit linears and their quantization states
    (each peer builds its own BitsAndBytesConfig, so this checks NF4, double quant, blocksize 64)."""
    kinds = {}
    for m in model.modules():  # bitsandbytes' own Linear4bit (PEFT's wrapper shares its weight)
        if not type(m).__module__.startswith("bitsandbytes"):
            continue
        qs = getattr(getattr(m, "weight", None), "quant_state", None)
        if qs is not None:
            dt = str(getattr(m, "compute_dtype", None)).replace("torch.", "")
            k = (qs.quant_type, qs.blocksize, qs.state2 is not None, dt)
            kinds[k] = kinds.get(k, 0) + 1
    if not kinds:
        return "no 4-bit linears"
    return ", ".join(f"{n} {t} linears (blocksize {b}{', double quant' if dq else ''}, {d} compute)"
                     for (t, b, dq, d), n in sorted(kinds.items()))


def run_steps(model, torch, s, batch, a):
    """warm-up + timed steps at one batch size; returns (median s, min, max, last loss)."""
    cuda = a.dev != "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    params = [p for p in model.parameters() if p.requires_grad]
    # AdamW as shardlora's defaults: lr 1e-4 (run.sh), no weight decay, clip the gradient norm to 1.
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator(device=a.dev).manual_seed(0)
    n = a.warmup + a.steps
    # Random ids (3..vocab-1, as shardlora's documents); a new batch for every step.
    data = torch.randint(3, s["vocab"], (n, batch, s["seq"]), generator=g, device=a.dev)
    times, loss = [], float("nan")
    for i in range(n):
        sync()
        t = time.perf_counter()
        out = model(input_ids=data[i], labels=data[i])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t)
        loss = out.loss.item()
        del out
    timed_ = times[a.warmup:]
    return statistics.median(timed_), min(timed_), max(timed_), loss


def cmd_train(a):
    s = shape(a.shape, a.tiny, a.layers, a.seq, a.batch)
    notes, row = [], {"kind": "peer", "peer": a.peer, "name": PEERS[a.peer], "layers": s["layers"],
                      "seq": s["seq"], "batch": s["batch"], "flops_per_token": flops_per_token(s)}
    try:
        if a.peer.startswith("unsloth"):
            import unsloth  # noqa: F401  (first: it patches transformers and PEFT as they load)
        import torch

        a.dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if a.quant == "auto":
            a.quant = "nf4"
        t0 = time.perf_counter()
        model = (load_unsloth if a.peer.startswith("unsloth") else load_hf)(a, s, torch, notes)
        row["load_s"] = time.perf_counter() - t0
        row["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        row["base"] = describe_4bit(model)
        want = f"{7 * s['layers']} nf4 linears (blocksize 64, double quant, bfloat16 compute)"
        if a.quant == "nf4" and row["base"] != want:  # say so where the table is read
            notes.append("base: " + row["base"])
        versions = {"torch": torch.__version__}
        for m in ("transformers", "peft", "bitsandbytes", "unsloth"):
            if m in sys.modules:
                versions[m] = getattr(sys.modules[m], "__version__", "?")
        row["versions"] = versions
    except Exception as e:  # a peer that cannot load is a row with its error, not a stopped run
        traceback.print_exc()
        row.update(error=first_line(e), notes="; ".join(notes))
        emit(a.out, row)
        return 1
    cuda = a.dev != "cpu"
    if a.wait_for:  # run.sh builds shardlora's model on the CPU meanwhile; never while timing
        t = time.perf_counter()
        if not os.path.exists(a.wait_for):
            print(f"peers.py: waiting for {a.wait_for}", flush=True)
        while not os.path.exists(a.wait_for) and time.perf_counter() - t < 600:
            time.sleep(0.5)
        row["waited_s"] = time.perf_counter() - t
    batches = [s["batch"]]
    if a.fallback:  # on running out of memory, halve the batch (the row says so)
        while batches[-1] > 1:
            batches.append(batches[-1] // 2)
    for batch in batches:
        oom = None
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            med, lo, hi, loss = run_steps(model, torch, s, batch, a)
        except torch.OutOfMemoryError as e:
            oom = first_line(e)
        except Exception as e:
            traceback.print_exc()
            row.update(batch=batch, error=first_line(e), notes="; ".join(notes))
            emit(a.out, row)
            return 1
        if oom:  # out of the except block, so the failed step's tensors can be freed
            for p in model.parameters():
                p.grad = None
            import gc
            gc.collect()
            notes.append(f"batch {batch}: out of memory")
            row["oom"] = oom
            print(f"peers.py: {a.peer}: batch {batch}: {oom}", flush=True)
            continue
        tokens = batch * s["seq"]
        row.update(batch=batch, tokens_per_step=tokens, step_s=med, step_s_min=lo, step_s_max=hi,
                   tokens_per_s=tokens / med, loss=loss, steps=a.steps, warmup=a.warmup)
        if cuda:
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            row["reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        if loss != loss or loss == float("inf"):
            notes.append("loss not finite")
        row["notes"] = "; ".join(notes)
        emit(a.out, row)
        return 0
    row.update(batch=batches[-1], error=row.get("oom", "out of memory"), notes="; ".join(notes))
    emit(a.out, row)
    return 1


# ---------------------------------------------------------------------------------------- table


def rate(x, unit):
    """1234e12 -> '1234 T<unit>' (G below a tera: the CPU smoke test)."""
    return f"{x / 1e12:.0f} T{unit}" if x >= 1e12 else f"{x / 1e9:.2f} G{unit}"


def cmd_table(a):
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    hw = next((r for r in rows if r.get("kind") == "hw"), None)
    run = next((r for r in rows if r.get("kind") == "shape"), None)
    gemm = hw["gemm_flops"] if hw else None
    out = []
    if run:
        out.append(f"{run['name']}{' (tiny)' if run['tiny'] else ''} shape: hidden {run['hidden']}, "
                   f"{run['layers']} layers, {run['heads']} heads, {run['kv_heads']} kv heads, intermediate "
                   f"{run['intermediate']}, vocab {run['vocab']}, rope theta {run['rope_theta']:g}, untied "
                   f"embeddings; seq {run['seq']} x micro-batch {run['batch']} = {run['seq'] * run['batch']:,} "
                   f"tokens per step")
    if hw:
        M, K, N = hw["gemm_shape"]
        out.append(f"{hw['device']}: bf16 GEMM {M}x{K} @ {K}x{N} {rate(gemm, 'FLOP/s')} ({hw['gemm_ms']:.2f} ms, "
                   f"median of 20); copy {rate(hw['copy_Bps'], 'B/s')} ({hw['copy_bytes'] / 2**30:g} GiB device "
                   f"to device, bytes read + written)")
    for r in rows:
        if r.get("kind") == "dequant":
            out.append(f"bench/gpu/dequant: {r['line']}")
    sides = [r for r in rows if r.get("kind") in ("peer", "shardlora")]
    timed = next((r for r in sides if "flops_per_token" in r and "steps" in r), None)
    if timed:
        out.append(f"model FLOPs per token ({timed['layers']} layers, seq {timed['seq']}): "
                   f"{timed['flops_per_token'] / 1e9:.3f} GFLOP (forward + input-gradient backward of every "
                   f"base linear and the LM head, causal attention); tokens/s: median of {timed['steps']} "
                   f"steps after {timed['warmup']} warm-up; MFU = tokens/s x FLOPs per token / the GEMM rate")
    out += ["", "| peer | batch | tokens/s | MFU | peak GiB | notes |", "|---|---|---|---|---|---|"]
    for r in sides:
        name = r.get("name") or PEERS.get(r["peer"], r["peer"])
        notes = [r["notes"]] if r.get("notes") else []
        # shardlora's shape is read from its own model file: one of another shape shows here
        notes += [f"model {k} {v}, not the run's {run[k]}" for k, v in r.get("shape", {}).items()
                  if run and v != run.get(k, v)]
        if r.get("error"):
            notes.append("FAILED: " + r["error"])
        notes = "; ".join(notes).replace("|", "/")
        if r.get("error"):
            out.append(f"| {name} | {r.get('batch', '-')} | - | - | - | {notes} |")
            continue
        tps = r["tokens_per_s"]
        mfu = f"{100 * tps * r['flops_per_token'] / gemm:.1f}%" if gemm else "-"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-"
        out.append(f"| {name} | {r['batch']} | {tps:,.0f} | {mfu} | {peak} | {notes} |")
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("model", "hw", "train", "shape"):
        q = sub.add_parser(name)
        q.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
        q.add_argument("--tiny", action="store_true", help="smoke-test shape: hidden 64, 2 layers, vocab 512")
        q.add_argument("--layers", type=int, default=int(os.environ.get("LAYERS", 0)) or None)
        q.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
        q.add_argument("--out", default=None, help="append the JSON result here")
        if name != "model":  # the weights do not depend on the step
            q.add_argument("--seq", type=int, default=None, help="default 2048 (tiny 64)")
            q.add_argument("--batch", type=int, default=None,
                           help="micro-batch; default 16,384 (tiny 128) tokens per step / seq")
        if name == "shape":
            q.add_argument("--init-flags", action="store_true", help="print shardlora-init's shape options")
        if name == "model":
            q.add_argument("dir")
            q.add_argument("--seed", type=int, default=1)
        if name == "train":
            q.add_argument("--peer", choices=sorted(PEERS), required=True)
            q.add_argument("--model-dir", required=True)
            q.add_argument("--steps", type=int, default=5)
            q.add_argument("--warmup", type=int, default=2)
            q.add_argument("--wait-for", default=None, help="after loading, wait for this file to exist")
            q.add_argument("--fallback", action="store_true", help="halve the batch on out of memory")
            q.add_argument("--quant", choices=("auto", "nf4", "none"), default="auto",
                           help="hf peer's base: nf4 (bitsandbytes) or none (bf16, for CPUs without it)")
    q = sub.add_parser("table")
    q.add_argument("results")
    a = p.parse_args()
    cmds = {"model": cmd_model, "hw": cmd_hw, "train": cmd_train, "shape": cmd_shape, "table": cmd_table}
    sys.exit(cmds[a.cmd](a) or 0)


if __name__ == "__main__":
    main()
