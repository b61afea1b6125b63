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

/* The output model file. It is written under a temporary name and renamed by writer_finish, so a
 * failed import never leaves a file that looks complete. */
typedef struct import_writer import_writer;

import_writer *writer_open(const char *out_path, const import_options *opt, const import_origin *origin,
                           const sl_model_config *cfg);
/* Write one tensor of the table; data holds spec->dims elements of src_dtype. "where" names the
 * source tensor in messages (e.g. "DIR/model.safetensors: tensor lm_head.weight"). With
 * --quantize, projection weights are converted to the output dtype, then quantized. */
void writer_tensor(import_writer *w, const sl_tensor_spec *spec, sl_dtype src_dtype, const void *data,
                   const char *where);
/* Write one projection weight already quantized in the file's format (a bitsandbytes checkpoint's
 * bytes, kept as they are). */
void writer_quantized(import_writer *w, const sl_tensor_spec *spec, const quant_store_info *info,
                      const quant_view *q);
/* Close, move into place and print the summary. */
void writer_finish(import_writer *w);

/* Parse a whole JSON file; a missing file or bad JSON is fatal, "what" names its role (and holds
 * nothing of the file then, for callers that catch the error with rt_try). */
cJSON *json_read_file(const char *path, const char *what);

#endif
