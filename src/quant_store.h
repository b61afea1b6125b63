/* quant_store: a quantized weight in a model file, stored as a group at the weight's path:
 *   packed (uint8 [ceil(n/2)], nf4/fp4) or codes (uint8 [n], int8); absmax (float32 [nblocks], or
 *   uint8 [nblocks] with double quantization); code (the float32 decoding table); with double
 *   quantization nested_absmax (float32 [ceil(nblocks/256)]) and nested_code (float32 [256]).
 *   Attributes: quant_type ("nf4", "fp4", "int8"), blocksize, shape (int64 [out, in]), dtype (the
 *   original dtype's name); with double quantization offset (float64, exactly the float32 value)
 *   and nested_blocksize (256).
 * Sharded loading: one rank probes every group (the model's validation), then every rank reads
 * its info (quant_store_read_info) and only its own block range with quant_store_read. On a file
 * opened with a communicator the reads are collective: every rank makes the same calls, with empty
 * ranges (b0 == b1) where it owns nothing. */
#ifndef SL_QUANT_STORE_H
#define SL_QUANT_STORE_H

#include <hdf5.h>
#include <stdint.h>

#include "h5io.h"
#include "quant.h"

typedef struct {
    quant_format fmt;
    int64_t shape[2]; /* [out, in] */
    int64_t n, nblocks;
    char dtype[16];   /* the original weight's dtype name ("f32", "bf16", ...) */
} quant_store_info;

/* 1 when path is a quantized group (info filled in), 0 when it is missing or a dataset. A group
 * with missing or ill-sized members, or an unknown format, is fatal, naming the file and path. */
int quant_store_probe(hid_t file, const char *path, quant_store_info *info);

/* The info of a group quant_store_probe has accepted, from its attributes alone: for a load, after
 * the model's validation probed every weight (on one rank, where every rank would repeat it). */
void quant_store_read_info(hid_t file, const char *path, quant_store_info *info);

/* Write a whole quantized tensor (q holds blocks [0, info->nblocks)) as a group at path. */
void quant_store_write(hid_t file, const char *path, const quant_store_info *info, const quant_view *q);

/* The file offsets of a group's members, for a writer that writes their bytes itself (pwrite, see
 * h5_create_dataset_at): codes (packed or codes), absmax, and nested_absmax with double quantization. */
typedef struct {
    int64_t codes, absmax, nested_absmax;
} quant_store_addrs;

/* Create the group of a quantized tensor with its members allocated and unwritten, but for the
 * decoding tables (rank 0 writes them through fd, a descriptor of the same file open for writing;
 * an I/O error is fatal), and every attribute but the double-quantization offset
 * (quant_store_set_offset); laid out as quant_store_write lays it out. Collective on a parallel file. */
quant_store_addrs quant_store_create(hid_t file, const char *path, const quant_store_info *info, int fd);
void quant_store_set_offset(hid_t file, const char *path, float offset);

/* The info of a weight of shape dims[0] x dims[1] and dtype (its name) quantized in format f. */
quant_store_info quant_store_describe(const quant_format *f, const int64_t dims[2], const char *dtype);

/* Quantize the float32 weight x[dims[0], dims[1]] (one rank) and write it: what
 * shardlora-quantize and shardlora-import --quantize share. */
void quant_store_quantize(hid_t file, const char *path, const quant_format *f, const int64_t dims[2],
                          const char *dtype, const float *x);

/* Read blocks [b0, b1) into q, laid out as quant_encode writes them: codes from byte 0 (sized by
 * quant_code_bytes), absmax or absmax_u8 (b1 - b0 entries), nested_absmax (quant_nested_count
 * entries, for the groups covering the range) and offset. With double quantization b0 must start
 * a group of QUANT_NESTED_BLOCKS blocks. Collective on a parallel file; b0 == b1 reads nothing. */
void quant_store_read(hid_t file, const char *path, const quant_store_info *info, int64_t b0, int64_t b1,
                      quant_view *q);
/* The same, its arrays kept in batch where they are read directly (q->offset is read now), to be
 * read with the other weights of a pool by h5_batch_finish. */
void quant_store_queue(h5_batch *batch, hid_t file, const char *path, const quant_store_info *info, int64_t b0,
                       int64_t b1, quant_view *q);

#endif
