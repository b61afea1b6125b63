/* shardlora-inspect FILE.h5: the file's kind, its root and /config attributes, and every dataset
 * with shape, dtype and stored size. Generic: it knows the file kinds, not particular models. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "inspect.h"
#include "runtime.h"

static const char USAGE[] =
    "usage: shardlora-inspect FILE.h5\n"
    "Prints the kind of a shardlora HDF5 file (model, dataset, checkpoint, eval, metrics, adapter or\n"
    "unknown), the attributes of / and /config, and every dataset with its shape, dtype and size.\n";

static void print_kind(hid_t f)
{
    char *kind = h5_has_attr(f, "/", "shardlora_kind") ? h5_attr_string(f, "/", "shardlora_kind") : NULL;
    printf("kind: %s\n", kind ? kind : "unknown");
    free(kind);
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-inspect");
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) fputs(USAGE, stdout), exit(0);
    if (argc != 2) sl_usage_error("expected one HDF5 file name, found %d arguments (see --help)", argc - 1);
    hid_t f = h5_open(argv[1], "input", 0, MPI_COMM_NULL);
    hsize_t file_size = 0;
    H5Fget_filesize(f, &file_size);
    char human[32];
    printf("file: %s (%s)\n", argv[1], human_bytes((int64_t)file_size, human));
    print_kind(f);
    print_attributes(f, "/");
    if (h5_has(f, "/config")) print_attributes(f, "/config");
    inspect_totals t = print_datasets(f);
    printf("total: %" PRId64 " datasets, %" PRId64 " elements, %s stored\n", t.datasets, t.elements,
           human_bytes(t.stored_bytes, human));
    h5_close(f);
    return 0;
}
