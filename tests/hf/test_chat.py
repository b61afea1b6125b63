"""shardlora-tokenize --jsonl with {"messages": ...} records against transformers'
apply_chat_template, for each built-in template given the way a model ships it (the Jinja source in
tokenizer_config.json beside tokenizer.json), on tokenizers trained here by the tokenizers library.
The ids must equal apply_chat_template's; the loss mask must cover exactly each assistant turn's
tokens: from where the conversation rendered up to that turn (with the generation prompt) stops
agreeing with the whole, through the token that ends the turn (the last end-of-turn token of the
conversation rendered through that turn; content may hold the same token's text). Also {"text": ...} records, and the
refusals."""
import json
import os
import sys

import h5py
import numpy as np
import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, os.path.join(os.environ["SHARDLORA_ROOT"], "tests"))
from testlib import BIN, SHARED, TMP, check, expect_fail, finish, run  # noqa: E402

TOOL = os.path.join(BIN, "shardlora-tokenize")
SHAKESPEARE = os.path.join(SHARED, "data", "tinyshakespeare.txt")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))

# The templates as the models' tokenizer_config.json files hold them.
TEMPLATES = {
    "llama3": ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
               "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
               "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
               "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
               "{% endif %}"),
    "chatml": ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
               "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    "mistral": ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
                "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
                "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"),
}
END_OF_TURN = {"llama3": "<|eot_id|>", "chatml": "<|im_end|>", "mistral": "</s>"}

PHRASES = ["What is the hour?", "  Good morrow, my lord.  ", "\nA line after a newline", "Привет, мир! 日本語 👍🏽",
           "Two lines\n\nand a gap", "", " ", "numbers 12345 and 3.14", "<|eot_id|> typed by a user",
           "'S THEY'LL we'Ve", "tabs\tand  spaces  ", "trailing newline\n"]


def byte_level():
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
    tok.train([SHAKESPEARE], trainers.BpeTrainer(vocab_size=1500, show_progress=False, special_tokens=specials,
                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}


def sentencepiece_style():
    tok = tokenizers.Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.train([SHAKESPEARE], trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                                 special_tokens=["<unk>", "<s>", "</s>"]))
    spec = json.loads(tok.to_str())
    for b in range(256):
        spec["model"]["vocab"].setdefault(f"<0x{b:02X}>", len(spec["model"]["vocab"]))
    return tokenizers.Tokenizer.from_str(json.dumps(spec)), {"bos_token": "<s>", "eos_token": "</s>"}


def save(name, tok, config):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    json.dump(config, open(os.path.join(d, "tokenizer_config.json"), "w"))
    return os.path.join(d, "tokenizer.json")


def conversations(template, n):
    convs = []
    for _ in range(n):
        turns = int(rng.integers(1, 4))
        msgs = [{"role": "system", "content": str(rng.choice(PHRASES))}] if template != "mistral" and rng.random() < 0.5 else []
        for _ in range(turns):
            msgs.append({"role": "user", "content": str(rng.choice(PHRASES))})
            msgs.append({"role": "assistant", "content": str(rng.choice(PHRASES))})
        if rng.random() < 0.3:
            msgs.pop()  # a conversation may end with the user
        convs.append(msgs)
    return convs


def ids_of(hf, msgs, template, **kw):
    r = hf.apply_chat_template(msgs, chat_template=TEMPLATES[template], tokenize=True, **kw)
    return list(r["input_ids"] if hasattr(r, "keys") else r)


def reference_mask(hf, msgs, template, train_on):
    full = ids_of(hf, msgs, template)
    if train_on == "all":
        return full, [1] * len(full)
    end_id = hf.convert_tokens_to_ids(END_OF_TURN[template])
    mask = [0] * len(full)
    assistants = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    for i in assistants[-1:] if train_on == "last" else assistants:
        prefix = ids_of(hf, msgs[:i], template, add_generation_prompt=template != "mistral") if i else []
        start = next((k for k, (a, b) in enumerate(zip(prefix, full)) if a != b), min(len(prefix), len(full)))
        upto = ids_of(hf, msgs[:i + 1], template)  # the turn's own end token is the last one of this render
        end = len(upto) - 1 - upto[::-1].index(end_id)
        for k in range(start, end + 1):
            mask[k] = 1
    return full, mask


def ours(path, lines, *extra):
    jsonl, out = os.path.join(TMP, "chat.jsonl"), os.path.join(TMP, "chat.h5")
    with open(jsonl, "w") as f:
        for rec in lines:
            f.write(json.dumps(rec, ensure_ascii=rng.random() < 0.5) + "\n")
    run([TOOL, "--jsonl", jsonl, "--tokenizer", path, *extra, "--out", out])
    with h5py.File(out, "r") as f:
        t, o = f["tokens"][:], f["doc_offsets"][:]
        m = f["loss_mask"][:] if "loss_mask" in f else np.ones_like(t, dtype=np.uint8)
    return [(t[o[i]:o[i + 1]].tolist(), m[o[i]:o[i + 1]].tolist()) for i in range(len(o) - 1)]


def compare(label, hf, path, template, convs, train_on, *extra):
    got = ours(path, [{"messages": c} for c in convs], *extra)
    bad_ids = bad_mask = None
    for k, (c, (ids, mask)) in enumerate(zip(convs, got)):
        want_ids, want_mask = reference_mask(hf, c, template, train_on)
        if ids != want_ids and bad_ids is None:
            bad_ids = f"conversation {k} {c!r}:\nours      {ids}\nreference {want_ids}"
        if mask != want_mask and bad_mask is None:
            bad_mask = f"conversation {k} {c!r}:\nids       {ids}\nours      {mask}\nreference {want_mask}"
    check(f"{label}: ids equal apply_chat_template's ({len(convs)} conversations)", len(got) == len(convs) and bad_ids is None,
          bad_ids or f"{len(got)} documents for {len(convs)} conversations")
    check(f"{label}: the loss mask covers exactly the {train_on} tokens", bad_mask is None, bad_mask)


def decoded(label, hf, path, template, convs):
    """--decode prints each document as transformers decodes it, the loss targets between ⟦ and ⟧."""
    ours(path, [{"messages": c} for c in convs])
    p = run([TOOL, "--decode", os.path.join(TMP, "chat.h5"), "--tokenizer", path])
    want = []
    for k, c in enumerate(convs):
        ids, mask = reference_mask(hf, c, template, "assistant")
        text, i = "", 0
        while i < len(ids):
            j = i
            while j < len(ids) and mask[j] == mask[i]:
                j += 1
            run_text = hf.decode(ids[i:j], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            text += f"⟦{run_text}⟧" if mask[i] else run_text
            i = j
        want.append(f"--- document {k}: {len(ids)} tokens, {sum(mask)} loss targets\n{text}\n")
    got = p.stdout
    i = first = next((n for n, (a, b) in enumerate(zip(got, "".join(want))) if a != b), None)
    check(f"{label}: --decode prints the documents as transformers decodes them, targets marked", got == "".join(want),
          f"first difference at character {first}: ours {got[i - 40:i + 40]!r}, reference {''.join(want)[i - 40:i + 40]!r}"
          if first is not None else f"lengths {len(got)} and {len(''.join(want))}")


def templates():
    bl, bl_cfg = byte_level()
    sp, sp_cfg = sentencepiece_style()
    cases = [("llama3", bl, bl_cfg), ("chatml", bl, bl_cfg), ("mistral", sp, sp_cfg)]
    for template, tok, cfg in cases:
        path = save(f"tok-{template}", tok, {**cfg, "chat_template": TEMPLATES[template]})
        hf = PreTrainedTokenizerFast(tokenizer_file=path, **cfg)
        convs = conversations(template, 25)
        compare(f"{template} (from tokenizer_config.json)", hf, path, template, convs, "assistant")
        compare(f"{template} --chat-template={template} --train-on=last", hf, path, template, convs, "last",
                "--chat-template", template, "--train-on", "last")
        compare(f"{template} --train-on=all", hf, path, template, convs[:5], "all", "--train-on", "all")
        if template != "mistral":  # transformers' SentencePiece-style decoders also drop the first space
            decoded(template, hf, path, template, convs)
    return bl, sp


def mistral_models():
    """--chat-template=mistral on Mistral's own SentencePiece models against mistral-common's
    encode_chat_completion (finetuning mode: conversations that end with the assistant); the loss
    targets are each assistant message's own encoding (sentencepiece; v2 on without trailing
    spaces) and its </s>."""
    import sentencepiece
    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    data = os.path.join(os.path.dirname(tokenizers.__file__), "..", "mistral_common", "data")
    convs = [c for c in conversations("mistral", 40) if c[-1]["role"] == "assistant" and all(m["content"].strip() for m in c)]
    for name in ("tokenizer.model.v1", "mistral_instruct_tokenizer_240216.model.v2",
                 "mistral_instruct_tokenizer_240323.model.v3", "mistral_instruct_tokenizer_241114.model.v7"):
        path = os.path.join(data, name)
        mt = MistralTokenizer.from_file(path, mode=ValidationMode.finetuning)
        sp = sentencepiece.SentencePieceProcessor(model_file=path)
        got = ours(path, [{"messages": c} for c in convs], "--chat-template", "mistral")
        bad_ids = bad_mask = None
        for c, (ids, mask) in zip(convs, got):
            msgs = [UserMessage(content=m["content"]) if m["role"] == "user" else AssistantMessage(content=m["content"]) for m in c]
            want = mt.encode_chat_completion(ChatCompletionRequest(messages=msgs)).tokens
            strip = name != "tokenizer.model.v1"
            targets = sum(len(sp.encode(m["content"].rstrip(" ") if strip else m["content"])) + 1 for m in c if m["role"] == "assistant")
            if ids != want and bad_ids is None:
                bad_ids = f"{c!r}:\nours      {ids}\nreference {want}"
            if (sum(mask) != targets or mask[-1] != 1) and bad_mask is None:
                bad_mask = f"{c!r}: {sum(mask)} targets, reference {targets}\nids  {ids}\nmask {mask}"
        check(f"{name} --chat-template=mistral: ids equal mistral-common's ({len(convs)} conversations)", bad_ids is None, bad_ids)
        check(f"{name}: the loss targets are the assistant messages and their </s>", bad_mask is None, bad_mask)


def text_records(bl):
    path = save("tok-text", bl, {})
    texts = PHRASES + [open(SHAKESPEARE).read()[:20000]]
    got = ours(path, [{"text": t} for t in texts])
    want = [bl.encode(t, add_special_tokens=False).ids for t in texts]
    check("{\"text\"} records: ids equal tokenizers' encode, every token a target",
          [g[0] for g in got] == want and all(all(m) for _, m in got), f"ours {got[:2]}\nreference {want[:2]}")


def refusals(bl, sp):
    jsonl, out = os.path.join(TMP, "bad.jsonl"), os.path.join(TMP, "bad.h5")
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]
    open(jsonl, "w").write(json.dumps({"messages": conv}) + "\n")
    sp_path = save("tok-sp-plain", sp, {"bos_token": "<s>", "eos_token": "</s>"})
    expect_fail("a template whose special tokens the tokenizer lacks is refused, naming them",
                [TOOL, "--jsonl", jsonl, "--tokenizer", sp_path, "--chat-template", "chatml", "--out", out],
                r"--chat-template=chatml: tokenizer '.*' lacks the template's special tokens: <\|im_start\|>, <\|im_end\|>")
    expect_fail("messages without a template are refused, naming --chat-template",
                [TOOL, "--jsonl", jsonl, "--tokenizer", sp_path, "--out", out], r"bad.jsonl line 1: .*give --chat-template")
    other = save("tok-other-template", sp, {"bos_token": "<s>", "chat_template": "{{ messages[0]['content'] }}"})
    expect_fail("a chat_template that is no built-in one is refused",
                [TOOL, "--jsonl", jsonl, "--tokenizer", other, "--out", out], r"is not one of the built-in templates")
    open(jsonl, "w").write(json.dumps({"messages": conv[::-1]}) + "\n")
    expect_fail("mistral: roles that do not alternate from the user are refused, naming the message",
                [TOOL, "--jsonl", jsonl, "--tokenizer", sp_path, "--chat-template", "mistral", "--out", out],
                r"bad.jsonl line 1: message 0 is from the assistant, but the mistral template needs the roles to alternate")
    expect_fail("--train-on takes assistant, last or all",
                [TOOL, "--jsonl", jsonl, "--tokenizer", sp_path, "--train-on", "users", "--out", out],
                r"option --train-on: expected assistant, last or all, found 'users'")


bl, sp = templates()
mistral_models()
text_records(bl)
refusals(bl, sp)
finish()
