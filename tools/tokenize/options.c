/* Command-line options of shardlora-tokenize. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "tokenize.h"

static const char USAGE[] =
    "usage: shardlora-tokenize INPUT --out D.h5 [--bos] [--eos] [--vocab-size V] [--max-docs N]\n"
    "INPUT is one of:\n"
    "  --text FILE... --tokenizer TOK [--pattern P] [--doc-per-file]\n"
    "      plain UTF-8 text; one document per paragraph (runs of non-blank lines; blank lines hold\n"
    "      only spaces, tabs or CRs), or per file. TOK is recognised by its content: a Hugging Face\n"
    "      tokenizer.json (BPE), a SentencePiece .model (BPE), a tiktoken rank file (with --pattern:\n"
    "      llama3, qwen2, qwen3.5, cl100k or a regular expression) or a llama2.c tokenizer.bin\n"
    "  --jsonl FILE... --vocab-size V | --jsonl FILE... --tokenizer TOK [--chat-template T] [--train-on W]\n"
    "      one document per line: {\"input_ids\": [...], \"loss_mask\": [0/1...], \"label\": k}\n"
    "      (loss_mask and label optional; labels on every line or none); with --tokenizer also\n"
    "      {\"text\": \"...\"} and {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}, rendered with the\n"
    "      chat template T (llama3, chatml, mistral; default: tokenizer_config.json's beside TOK when it\n"
    "      is one of them); --train-on assistant (default: the assistant turns and their end tokens\n"
    "      are the loss targets), last (the last assistant turn only) or all\n"
    "  --tokens-u16 FILE... --vocab-size V | --tokens-u32 FILE... --vocab-size V\n"
    "      little-endian token ids, one document per file\n"
    "  --decode D.h5 --tokenizer TOK [--max-docs N]\n"
    "      print a dataset's documents as text, the loss targets between \u27e6 and \u27e7 (no --out)\n"
    "--bos / --eos add the tokenizer's BOS / EOS (ids 1 / 2 without one) around every document;\n"
    "--max-docs N keeps the first N documents. Under mpirun -np N every rank tokenizes a part of the\n"
    "inputs into the same file as one rank writes.\n";

static int64_t parse_count(const char *opt, const char *s, int64_t min)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > INT32_MAX)
        sl_usage_error("option %s: expected an integer from %lld to %d, found '%s'", opt, (long long)min, INT32_MAX, s);
    return v;
}

static chat_template template_option(const char *s)
{
    chat_template t = chat_template_named(s);
    if (t == CHAT_NONE) sl_usage_error("option --chat-template: expected llama3, chatml or mistral, found '%s'", s);
    return t;
}

static train_on train_on_option(const char *s)
{
    if (!strcmp(s, "assistant")) return TRAIN_ON_ASSISTANT;
    if (!strcmp(s, "last")) return TRAIN_ON_LAST;
    if (!strcmp(s, "all")) return TRAIN_ON_ALL;
    sl_usage_error("option --train-on: expected assistant, last or all, found '%s'", s);
}

static const char *value_of(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) sl_usage_error("option %s needs a value (see --help)", argv[*i]);
    return argv[++*i];
}

/* --text and the like take every following argument up to the next option. */
static void take_files(int argc, char **argv, int *i, tk_options *o, tk_input input)
{
    if (o->input != INPUT_NONE) sl_usage_error("option %s: only one input kind may be given (see --help)", argv[*i]);
    o->input = input;
    o->files = (const char **)argv + *i + 1;
    while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) ++*i, o->n_files++;
    if (o->n_files == 0) sl_usage_error("option %s needs at least one file", o->files[-1]);
}

static void check_input_files(const tk_options *o)
{
    static const char *const OPTION[] = {[INPUT_TEXT] = "--text", [INPUT_JSONL] = "--jsonl",
                                         [INPUT_U16] = "--tokens-u16", [INPUT_U32] = "--tokens-u32"};
    for (int i = 0; i < o->n_files; i++) rt_expect_regular_file(OPTION[o->input], o->files[i]);
    if (o->tokenizer) rt_expect_regular_file("--tokenizer", o->tokenizer);
}

static void check_decode(const tk_options *o)
{
    if (!o->tokenizer) sl_usage_error("--decode needs --tokenizer TOK, the tokenizer the dataset was made with");
    if (o->out) sl_usage_error("--decode prints to standard output; --out is not used with it");
    rt_expect_regular_file("--decode", o->decode);
    rt_expect_regular_file("--tokenizer", o->tokenizer);
}

static void check_options(const tk_options *o)
{
    if (o->decode) return check_decode(o);
    if (o->input == INPUT_NONE)
        sl_usage_error("no input given: use --text, --jsonl, --tokens-u16, --tokens-u32 or --decode (see --help)");
    if (!o->out) sl_usage_error("no output given: use --out D.h5");
    if (o->input == INPUT_TEXT && !o->tokenizer) sl_usage_error("--text needs --tokenizer TOK (see --help for the formats)");
    if (o->input != INPUT_TEXT && o->input != INPUT_JSONL && o->tokenizer)
        sl_usage_error("--tokenizer is only used with --text and --jsonl");
    if ((o->chat_template != CHAT_NONE || o->train_on_given) && !(o->input == INPUT_JSONL && o->tokenizer))
        sl_usage_error("--chat-template and --train-on are only used with --jsonl and --tokenizer");
    if (o->pattern && !o->tokenizer) sl_usage_error("--pattern is only used with --tokenizer (a tiktoken file)");
    if (o->input != INPUT_TEXT && o->doc_per_file) sl_usage_error("--doc-per-file is only used with --text");
    if (o->input != INPUT_TEXT && !o->tokenizer && !o->vocab_size)
        sl_usage_error("--jsonl, --tokens-u16 and --tokens-u32 need --vocab-size V to check the token ids");
    if ((o->bos || o->eos) && !o->tokenizer && o->vocab_size && o->vocab_size <= EOS_ID)
        sl_usage_error("--bos/--eos add ids %d/%d, but --vocab-size is %lld", BOS_ID, EOS_ID, (long long)o->vocab_size);
    check_input_files(o);
}

void tk_parse_options(int argc, char **argv, tk_options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) fputs(USAGE, stdout), exit(0);
        else if (!strcmp(a, "--text")) take_files(argc, argv, &i, o, INPUT_TEXT);
        else if (!strcmp(a, "--jsonl")) take_files(argc, argv, &i, o, INPUT_JSONL);
        else if (!strcmp(a, "--tokens-u16")) take_files(argc, argv, &i, o, INPUT_U16);
        else if (!strcmp(a, "--tokens-u32")) take_files(argc, argv, &i, o, INPUT_U32);
        else if (!strcmp(a, "--decode")) o->decode = value_of(argc, argv, &i), o->input = INPUT_DECODE;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = value_of(argc, argv, &i);
        else if (!strcmp(a, "--pattern")) o->pattern = value_of(argc, argv, &i);
        else if (!strcmp(a, "--chat-template")) o->chat_template = template_option(value_of(argc, argv, &i));
        else if (!strcmp(a, "--train-on")) o->train_on = train_on_option(value_of(argc, argv, &i)), o->train_on_given = 1;
        else if (!strcmp(a, "--out")) o->out = value_of(argc, argv, &i);
        else if (!strcmp(a, "--vocab-size")) o->vocab_size = parse_count(a, value_of(argc, argv, &i), 1);
        else if (!strcmp(a, "--max-docs")) o->max_docs = parse_count(a, value_of(argc, argv, &i), 1);
        else if (!strcmp(a, "--bos")) o->bos = 1;
        else if (!strcmp(a, "--eos")) o->eos = 1;
        else if (!strcmp(a, "--doc-per-file")) o->doc_per_file = 1;
        else sl_usage_error("unknown argument '%s' (see --help)", a);
    }
    check_options(o);
}
