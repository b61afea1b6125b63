/* shardlora-tokenize: turn text, JSONL or raw token files into a shardlora dataset file
 * (/tokens, /doc_offsets, optional /loss_mask and /labels; see README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "tokenize.h"

#define SOURCE_MAX 4000 /* keep the attribute small (HDF5 attributes are limited to 64 KiB) */

/* The input file names, joined; past SOURCE_MAX characters the rest are counted, not named. */
static char *source_names(const tk_options *o)
{
    char *s = sl_calloc(SOURCE_MAX + 64, 1, "source attribute");
    size_t n = 0;
    int i = 0;
    for (; i < o->n_files && n + strlen(o->files[i]) + 2 < SOURCE_MAX; i++)
        n += (size_t)snprintf(s + n, SOURCE_MAX - n, "%s%s", i ? ", " : "", o->files[i]);
    if (i < o->n_files) snprintf(s + n, 64, "%s%d more files", i ? " and " : "", o->n_files - i);
    return s;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The ids --bos and --eos add: the tokenizer's, or LLaMA's 1 and 2 for token-id inputs. */
static void added_ids(const tk_options *o, const tokenizer *tok, int32_t *bos, int32_t *eos)
{
    *bos = o->bos ? (tok ? tok->bos_id : BOS_ID) : -1;
    *eos = o->eos ? (tok ? tok->eos_id : EOS_ID) : -1;
    if (o->bos && *bos < 0) sl_usage_error("option --bos: tokenizer '%s' has no BOS token", o->tokenizer);
    if (o->eos && *eos < 0) sl_usage_error("option --eos: tokenizer '%s' has no EOS token", o->tokenizer);
}

static corpus_meta read_inputs(const tk_options *o, const tokenizer *tok, corpus *c, progress *prog)
{
    corpus_meta m = {.vocab_size = o->vocab_size, .pad_id = -1, .bos_id = c->bos_id, .eos_id = c->eos_id};
    if (tok && o->vocab_size && o->vocab_size != tok->vocab_size)
        sl_fatal("--vocab-size %lld does not match tokenizer '%s', which has %lld tokens", (long long)o->vocab_size,
                 o->tokenizer, (long long)tok->vocab_size);
    if (tok) m.vocab_size = tok->vocab_size, m.bos_id = tok->bos_id, m.eos_id = tok->eos_id, m.pad_id = tok->pad_id;
    m.tokenizer = tok ? base_name(o->tokenizer) : o->input == INPUT_JSONL ? "jsonl" : o->input == INPUT_U16 ? "raw-u16" : "raw-u32";
    if (o->input == INPUT_TEXT) read_text(o, tok, c, prog);
    else if (o->input == INPUT_JSONL) read_jsonl(o, tok, c, prog);
    else read_raw(o, c, prog);
    return m;
}

/* Options and the tokenizer are checked before MPI starts, so their errors read as any tool's;
 * then every rank tokenizes its part of the inputs and all write the one dataset file. */
int main(int argc, char **argv)
{
    rt_init_serial("shardlora-tokenize");
    tk_options o;
    tk_parse_options(argc, argv, &o);
    tokenizer tok;
    if (o.tokenizer) tokenizer_load(&tok, o.tokenizer, o.pattern);
    if (o.decode) {
        decode_dataset(&o, &tok);
        tokenizer_free(&tok);
        return 0;
    }
    int32_t bos, eos;
    added_ids(&o, o.tokenizer ? &tok : NULL, &bos, &eos);
    rt_init(&argc, &argv, "shardlora-tokenize");
    corpus c;
    corpus_init(&c, o.max_docs, bos, eos, o.out);
    double t0 = rt_now();
    progress prog;
    corpus_meta m = read_inputs(&o, o.tokenizer ? &tok : NULL, &c, &prog);
    char *source = source_names(&o);
    m.source = source;
    int64_t tokens, docs = corpus_write(&c, o.out, &m, &tokens);
    double s = rt_now() - t0;
    log_info("shardlora-tokenize: %lld documents, %lld tokens -> %s (%.2f s, %.1f MB/s per rank)", (long long)docs,
             (long long)tokens, o.out, s, prog.bytes_done / 1e6 / (s > 0 ? s : 1));
    free(source);
    corpus_free(&c);
    if (o.tokenizer) tokenizer_free(&tok);
    rt_finalize();
    return 0;
}
