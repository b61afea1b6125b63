/* Prints libslurm's remaining time of the job this runs in: slurm_get_rem_time(SLURM_JOB_ID).
   Build: cc -o remtime tests/slurm/remtime.c -lslurm (Debian: libslurm-dev). Exit 1 if negative. */
#include <slurm/slurm.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  const char *id = getenv("SLURM_JOB_ID"), *end = getenv("SLURM_JOB_END_TIME");
  if (!id) { fprintf(stderr, "remtime: SLURM_JOB_ID is not set\n"); return 2; }
  long rem = slurm_get_rem_time((uint32_t)strtoul(id, NULL, 10));
  printf("job %s rem_time %ld SLURM_JOB_END_TIME %s\n", id, rem, end ? end : "unset");
  return rem < 0;
}
