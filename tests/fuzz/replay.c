/* replay: a fuzz target in the normal build. Each file named on the command line goes through the
 * target's entry point once, and one line per file says what became of it:
 *   FILE: accepted            or            FILE: rejected: MESSAGE
 * A crash ends the program (and the regression test with it). */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "runtime.h"

int main(int argc, char **argv)
{
    rt_init_serial("fuzz-replay");
    for (int i = 1; i < argc; i++) {
        size_t size;
        uint8_t *data = fuzz_read_file(argv[i], &size);
        if (!data) {
            fprintf(stderr, "fuzz-replay: cannot read %s\n", argv[i]);
            return 2;
        }
        LLVMFuzzerTestOneInput(data, size);
        printf("%s: %s\n", argv[i], fuzz_outcome());
        fflush(stdout);
        free(data);
    }
    return 0;
}
