/* h5edit: the HDF5 targets' mutations. libFuzzer mutating an HDF5 file's bytes would mostly fuzz the
 * HDF5 library's own parser; shardlora's validators meet files that HDF5 reads fine but that hold
 * the wrong things. So a fuzz input here is a list of edits to a valid file: objects deleted,
 * copied or replaced by datasets of another type and shape, values and attributes changed. */
#ifndef SL_FUZZ_H5EDIT_H
#define SL_FUZZ_H5EDIT_H

#include <stddef.h>
#include <stdint.h>

/* Apply the edits ops[0..n) spells to the HDF5 file at path (edits HDF5 refuses are skipped), in a
 * child process, so that a file HDF5 fails to close is never left open in this one.
 * extra_paths and extra_attrs (NULL-terminated, or NULL) name objects and attributes the file does
 * not hold but that edits may create. */
void h5edit_apply(const char *path, const uint8_t *ops, size_t n, const char *const *extra_paths,
                  const char *const *extra_attrs);

/* Each target's valid file, made once: its bytes. make(path) writes it; it runs under fuzz_try. */
const uint8_t *h5edit_base(const char *name, void (*make)(void *path), size_t *size);

#endif
