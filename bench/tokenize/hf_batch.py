"""The reference side of bench/tokenize/run.sh, with the Hugging Face stack's python.
  hf_batch.py train OUT_DIR          a tokenizer.json in Llama 3's layout (byte-level BPE, its split
                                     pattern, ignore_merges), 8,000 tokens, trained on tinyshakespeare
  hf_batch.py encode TOK CORPUS MB   tokenizers' encode_batch over the first MB megabytes of CORPUS,
                                     paragraph documents in batches of 10,000; prints MB/s, CPU
                                     seconds (all threads, the Python loop included) and the token
                                     count as one JSON line"""
import json
import os
import resource
import sys
import time

import tokenizers
from tokenizers import Regex, models, pre_tokenizers, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def train(out_dir, shakespeare):
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.train([shakespeare], trainers.BpeTrainer(vocab_size=8000, show_progress=False, special_tokens=["<|endoftext|>"],
                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(os.path.join(out_dir, "tokenizer.json"))


def paragraphs(f, limit):
    """Paragraphs (runs of non-blank lines) as shardlora-tokenize cuts them, up to limit bytes read."""
    cur, read = [], 0
    for line in f:
        read += len(line)
        body = line[:-1] if line.endswith("\n") else line
        if body.strip(" \t\r"):
            cur.append(body)
        elif cur:
            yield "\n".join(cur)
            cur = []
        if read >= limit:
            break
    if cur:
        yield "\n".join(cur)


def encode(tok_path, corpus, mb):
    tok = tokenizers.Tokenizer.from_file(tok_path)
    t0, tokens, batch = time.perf_counter(), 0, []
    with open(corpus, encoding="utf-8") as f:
        for doc in paragraphs(f, mb * 1e6):
            batch.append(doc)
            if len(batch) == 10000:
                tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
                batch = []
    tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
    s = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"mb": mb, "seconds": round(s, 2), "mb_per_s": round(mb / s, 2), "tokens": tokens,
                      "cpu_seconds": round(use.ru_utime + use.ru_stime, 2),
                      "peak_rss_mb": use.ru_maxrss // 1024,
                      "threads": os.environ.get("RAYON_NUM_THREADS", "all")}))


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3])
    else:
        encode(sys.argv[2], sys.argv[3], int(sys.argv[4]))
