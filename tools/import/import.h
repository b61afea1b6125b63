/* shardlora-import: shared pieces of the importers (options, the model-file writer, JSON files). */
#ifndef SL_IMPORT_H
#define SL_IMPORT_H

#include <cJSON.h>
#include <stdint.h>

#include "dtype.h"
#include "modelcfg.h"
#include "quant.h"
#include "quant_store.h"

typedef struct {
    sl_dtype out_dtype; /* SL_DTYPE_OTHER: keep each tensor's stored type */
    const char *quantize; /* --quantize, --double-quant, --blocksize as given */
    int double_quant, blocksize;
    quant_format quant;   /* resolved from them; QUANT_NONE stores projections unquantized */
} import_options;

/* Where a model came from: the root attributes of the output file. */
typedef struct {
    const char *source;        /* path of the imported file or directory */
    const char *source_format; /* "hf-safetensors" or "llama2c" */
    const char *model_name;    /* directory or file name, later PEFT's base_model_name_or_path */
} import_origin;

/* DIR/config.json into cfg: architecture, sizes and HF's defaults; unsupported options are fatal. */
void hfconfig_read(const char *dir, sl_model_config *cfg);
/* The same from config.json parsed already (path names it in messages); json stays the caller's,
 * also after an error caught by rt_try. */
void hfconfig_from_json(const cJSON *json, const char *path, sl_model_config *cfg);

void import_hf(const char *dir, const char *out_path, const import_options *opt);
void import_llama2c(const char *bin_path, const char *out_path, const import_options *opt);

/* A tensor's values as an importer reads them: read puts elements [first, first + count) into dst
 * as dtype and returns 0, or writes why not into err and returns -1. It is called from every
 * thread at once, so it must not end the program (no sl_fatal). */
#define IMPORT_MSG_LEN 6144 /* room for a message naming a tensor (its where) and a reason */
typedef struct import_source import_source;
struct import_source {
    sl_dtype dtype;
    char where[4352]; /* the tensor in messages, e.g. "DIR/model.safetensors: tensor lm_head.weight" */
    int (*read)(const import_source *s, int64_t first, int64_t count, void *dst, char *err, size_t len);
    const void *ctx;  /* the reader's own */
};

/* The output model file, written under a temporary name and renamed by writer_finish, so a failed
 * import never leaves a file that looks complete. Every function is collective: all ranks make the
 * same calls for the same tensors in the same order. A tensor is cut into pieces (stream.h) that
 * the ranks share, rank r of R taking pieces [P r / R, P (r + 1) / R); one of fewer pieces than
 * ranks goes whole to rank i mod R (i: its place in the table). Each rank reads, checks, converts
 * or quantizes its pieces on every thread and writes them into place itself, so the file depends
 * on the table alone, never on the rank or thread count. */
typedef struct import_writer import_writer;

import_writer *writer_open(const char *out_path, const import_options *opt, const import_origin *origin,
                           const sl_model_config *cfg);
/* Write one tensor of the table from src (spec->dims elements). Values must be finite, before and
 * after a conversion to the output dtype; with --quantize, projection weights are converted to the
 * output dtype, then quantized. */
void writer_tensor(import_writer *w, const sl_tensor_spec *spec, const import_source *src);
/* Write one projection weight already quantized in the file's format (a bitsandbytes checkpoint's
 * bytes, kept as they are): the rank that owns it (i mod R) calls fill, which reads and checks
 * them into q (malloc'd members, freed by the writer) and may end with sl_fatal, reported as any
 * other problem; offset is the double-quantization offset, the same on every rank. */
void writer_quantized(import_writer *w, const sl_tensor_spec *spec, const quant_store_info *info, float offset,
                      void (*fill)(void *ctx, quant_view *q), void *ctx);
/* Close, move into place and print the summary. */
void writer_finish(import_writer *w);

/* Collective: a rank passes key >= 0 and msg when it found a problem (-1 when not). If any did, the
 * one with the lowest key (of equal keys, the lowest rank) prints its msg, the output (w, when not
 * NULL) is closed and removed, and every rank exits with status 1. Keys order problems as one
 * rank would have met them (an element's index, for values), so the message is the same for any
 * rank count. */
void import_agree(import_writer *w, int64_t key, const char *msg);
/* Run fn(arg) (checks that may end with sl_fatal, the same on every rank, such as reading headers)
 * and agree on its outcome: a failure is printed once, by the lowest rank, and ends every rank. */
void import_checked(void (*fn)(void *), void *arg);

/* Parse a whole JSON file; a missing file or bad JSON is fatal, "what" names its role (and holds
 * nothing of the file then, for callers that catch the error with rt_try). */
cJSON *json_read_file(const char *path, const char *what);

#endif
