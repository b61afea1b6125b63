/* shardlora-inspect: a readable summary of any shardlora HDF5 file. */
#ifndef SL_INSPECT_H
#define SL_INSPECT_H

#include <hdf5.h>
#include <stdint.h>

typedef struct {
    int64_t datasets, elements, stored_bytes;
} inspect_totals;

/* Print "  name = value" for every attribute of the object at path obj. */
void print_attributes(hid_t file, const char *obj);
/* Print one line per dataset (path, shape, dtype, storage), walking every group. */
inspect_totals print_datasets(hid_t file);
/* Bytes as "1.41 MiB"; buf needs 32 characters. */
const char *human_bytes(int64_t bytes, char *buf);

#endif
