/* tiny_files: the small valid model and dataset files the HDF5 targets start from, made by the
 * project's own writers (shardlora-import's model writer, shardlora-tokenize's corpus writer). */
#ifndef SL_FUZZ_TINY_FILES_H
#define SL_FUZZ_TINY_FILES_H

enum { TINY_VOCAB = 32, TINY_LABELS = 3 };

/* A llama model of 2 layers, hidden 8 and vocab TINY_VOCAB in float32; quantize ("nf4", ...) or
 * NULL: its projections quantized, with double quantization, in blocks of 64. */
void tiny_model_write(const char *path, const char *quantize);
/* Five documents of 1 to 9 tokens with BOS and EOS; masked: with a loss mask and labels in
 * [0, TINY_LABELS). It starts MPI as one rank (fuzz_start_mpi) for the collective writer. */
void tiny_dataset_write(const char *path, int masked);

#endif
