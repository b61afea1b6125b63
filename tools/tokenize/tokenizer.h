/* tokenizer: one description of every supported tokenizer (llama2.c, SentencePiece BPE, tiktoken,
 * Hugging Face tokenizer.json BPE) as a pipeline: split off added tokens, normalize each segment,
 * pre-tokenize it into words, and merge each word's symbols by BPE. The loaders fill it in; the
 * encoder (encode.c) runs it. */
#ifndef SL_TOKENIZER_H
#define SL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "pairs.h"
#include "regex.h"
#include "pieces.h"

/* Token ids lie below this (16,777,216, far above any published vocabulary): the piece table is
 * indexed by id, so an id read from a file is checked against it before anything is allocated. */
#define TOKENIZER_MAX_IDS (1 << 24)

/* How BPE picks the next merge of two adjacent symbols; ties go to the leftmost pair. */
typedef enum {
    MERGE_PAIR_RANK,   /* tokenizer.json: the lowest rank in the merges list */
    MERGE_PIECE_RANK,  /* tiktoken: the concatenation with the lowest rank (its id) */
    MERGE_PIECE_SCORE, /* SentencePiece, llama2.c: the concatenation with the highest score */
} merge_rule;

typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC } norm_kind;
typedef struct {
    norm_kind kind;
    char *a, *b; /* PREPEND a (to a non-empty segment); REPLACE every a by b; NFC: Unicode's form C */
} norm_step;

typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE } pre_kind;
typedef enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS } prepend_scheme;
typedef struct {
    pre_kind kind;
    regex *re;            /* SPLIT, and BYTELEVEL with its GPT-2 pattern (NULL: no split) */
    int add_prefix_space; /* BYTELEVEL */
    char *replacement;    /* METASPACE: stands for a space */
    prepend_scheme prepend;
    int split; /* METASPACE: a word starts at each replacement */
} pre_step;

typedef struct {
    char *text;
    int len;
    int32_t id;
} added_token;

typedef struct {
    const char *path;
    const char *format; /* "tokenizer.json", "sentencepiece", "tiktoken", "llama2.c" */
    piece_table v;      /* the model's pieces, as raw bytes; findable: what text may map to */
    merge_rule rule;
    pair_map pairs;        /* MERGE_PAIR_RANK */
    int units_are_bytes;   /* a word starts as one symbol per byte (byte-level), else per character */
    int keep_invalid_utf8; /* llama2.c: bytes go in as they are, else ill-formed UTF-8 becomes U+FFFD */
    int whole_word_first;  /* a word that is a piece is that piece (tiktoken; ignore_merges) */
    int byte_fallback;     /* a symbol that is no piece becomes its bytes' <0xNN> tokens */
    int fuse_unk;          /* consecutive unknown symbols become one unk */
    int32_t byte_id[256];  /* byte_fallback's ids, -1 when absent */
    int32_t unk_id;        /* -1: none (an unknown symbol is then dropped, as Hugging Face's BPE drops it) */
    norm_step *norm;
    int n_norm;
    pre_step *pre;
    int n_pre;
    added_token *added; /* tokens matched in the text before anything else (tokenizer.json) */
    int n_added;
    added_token *special; /* named tokens the text never produces (templates, BOS/EOS) */
    int n_special;
    int32_t *atomic; /* SentencePiece user-defined pieces: kept whole, never merged */
    int n_atomic;
    int32_t bos_id, eos_id, pad_id; /* -1 when none */
    char *chat_template;            /* tokenizer_config.json's, or NULL */
    int64_t vocab_size;             /* the largest id + 1 */
    char *file;                     /* while loading: the file's bytes */
    struct cJSON *json;             /* while loading a tokenizer.json: its parsed tree */
} tokenizer;

/* Load a tokenizer file, recognised by its content. pattern: the tiktoken pre-tokenizer (a
 * preset name or a regular expression; NULL for the other formats). Every problem is fatal and
 * names the file and what was expected. After an error caught by rt_try, tokenizer_free releases
 * what was loaded, the file's bytes and a tokenizer.json's tree included. */
void tokenizer_load(tokenizer *t, const char *path, const char *pattern);
void tokenizer_free(tokenizer *t);
/* The id of a named special or added token, or -1. */
int32_t tokenizer_special_id(const tokenizer *t, const char *text);

/* Per-format loaders, called by tokenizer_load on a zeroed tokenizer with the file in memory. */
void load_llama2c(tokenizer *t, const char *buf, size_t len);
void load_hf_json(tokenizer *t, const char *buf, size_t len);
void load_sentencepiece(tokenizer *t, const char *buf, size_t len);
void load_tiktoken(tokenizer *t, const char *buf, size_t len, const char *pattern);

/* Helpers shared by the loaders. */
/* Fatal, naming the file and what s is, unless s is valid UTF-8 (text a step puts into the text). */
void tokenizer_require_utf8(const tokenizer *t, const char *s, const char *what);
void tokenizer_add_norm(tokenizer *t, norm_kind kind, const char *a, const char *b);
pre_step *tokenizer_add_pre(tokenizer *t, pre_kind kind);
void tokenizer_add_special(tokenizer *t, const char *text, int len, int32_t id, int matched_in_text);
/* Find the byte-fallback pieces <0x00>..<0xFF> among the pieces. */
void tokenizer_find_byte_pieces(tokenizer *t);

#endif
