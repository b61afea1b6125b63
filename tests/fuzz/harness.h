/* harness: what every fuzz target shares. A target file defines LLVMFuzzerTestOneInput; `make fuzz`
 * links it with libFuzzer (clang, sanitizers), and the normal build links it with replay.c, which
 * feeds it the files of tests/fuzz/regressions/TARGET/ (tests/fuzz/test_regressions.sh).
 *
 * The code under test reports a bad input with sl_fatal, which ends the process in the real
 * programs. A target calls it through fuzz_try (rt_try underneath), so a clean error returns
 * instead of exiting and only a crash, a hang or a leak counts as a finding. */
#ifndef SL_FUZZ_HARNESS_H
#define SL_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A target file ends with FUZZ_TARGET(its function of one input). The input runs through
 * fuzz_input: under the sanitizers, an input that ends with more heap blocks than it began with
 * and met no error is checked for leaks (libFuzzer's own check, -detect_leaks, is off: it would
 * also check, and report, every input that ended in an error). */
#define FUZZ_TARGET(fn) \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_input(fn, data, size); }
int fuzz_input(void (*fn)(const uint8_t *data, size_t size), const uint8_t *data, size_t size);
/* No leak checks for this target: LeakSanitizer's stop-the-world tracer crashes among Open MPI's
 * threads. */
void fuzz_skip_leak_checks(void);
/* MPI as one rank (a singleton), started once, for the targets that call collective code (the
 * checkpoint and dataset writers); their leak checks are skipped (fuzz_skip_leak_checks). */
void fuzz_start_mpi(const char *program);

/* Run fn(arg) with sl_fatal caught: 1 when it completed, 0 when it reported an error. Either way
 * the outcome is kept for fuzz_outcome. After an error, what the real program's exit would have
 * released is released or forgiven: the HDF5 objects and file descriptors left open are closed,
 * and the heap blocks allocated during the call and still held are not reported as leaks. */
int fuzz_try(void (*fn)(void *), void *arg);

/* The last outcome: "accepted" (or "accepted: WHAT", see fuzz_accepted_as), or "rejected: MESSAGE"
 * with the scratch directory written as INPUT (so a regression's expected message does not depend
 * on the process id). */
const char *fuzz_outcome(void);
/* After an accepted call: say what it made of the input, for the regression's OUTCOMES. */
void fuzz_accepted_as(const char *what);

/* Write bytes to the file called name in this process's scratch directory (under
 * $FUZZ_SCRATCH_DIR, else /dev/shm when there is one) and return its path; it is rewritten by each
 * call and removed, with the directory, at a normal exit. */
const char *fuzz_scratch_file(const char *name, const void *data, size_t size);
/* The scratch directory itself. */
const char *fuzz_scratch_dir(void);

/* A file's whole content (the fuzz targets' fixed inputs); NULL when it cannot be read. */
uint8_t *fuzz_read_file(const char *path, size_t *size);

#endif
