/* rope_driver: k_rope_inv_freq and k_rope_table for one set of rope parameters, for
 * test_rope_reference.py. Usage: rope_driver TYPE THETA HEAD_DIM MAX_POS FACTOR LOW_FREQ HIGH_FREQ
 * ORIGINAL BETA_FAST BETA_SLOW TRUNCATE ATTENTION_FACTOR TABLE_OUT: prints inv_freq, one per line
 * (%.17g), and writes the float32 table [MAX_POS][HEAD_DIM / 2][2] to TABLE_OUT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

int main(int argc, char **argv)
{
    static const char *const TYPES[] = {"default", "linear", "llama3", "yarn"};
    if (argc != 14) {
        fprintf(stderr, "usage: rope_driver TYPE THETA HEAD_DIM MAX_POS FACTOR LOW HIGH ORIGINAL BETA_FAST "
                        "BETA_SLOW TRUNCATE ATTENTION_FACTOR TABLE_OUT\n");
        return 2;
    }
    k_rope_params r = {.type = (k_rope_type)-1};
    for (int t = 0; t < 4; t++)
        if (strcmp(argv[1], TYPES[t]) == 0) r.type = (k_rope_type)t;
    if ((int)r.type < 0) {
        fprintf(stderr, "rope_driver: unknown type %s\n", argv[1]);
        return 2;
    }
    r.theta = atof(argv[2]);
    const int head_dim = atoi(argv[3]), max_pos = atoi(argv[4]);
    r.factor = atof(argv[5]), r.low_freq_factor = atof(argv[6]), r.high_freq_factor = atof(argv[7]);
    r.original_max_positions = atoi(argv[8]);
    r.beta_fast = atof(argv[9]), r.beta_slow = atof(argv[10]), r.truncate = atoi(argv[11]);
    r.attention_factor = atof(argv[12]);
    double *inv_freq = malloc(sizeof *inv_freq * (size_t)(head_dim / 2));
    float *table = malloc(sizeof *table * (size_t)max_pos * (size_t)head_dim);
    if (!inv_freq || !table) return 1;
    k_rope_inv_freq(inv_freq, head_dim, &r);
    for (int i = 0; i < head_dim / 2; i++) printf("%.17g\n", inv_freq[i]);
    k_rope_table(table, max_pos, head_dim, &r);
    FILE *f = fopen(argv[13], "wb");
    if (!f || fwrite(table, sizeof *table, (size_t)max_pos * (size_t)head_dim, f) != (size_t)max_pos * (size_t)head_dim)
        return 1;
    fclose(f);
    free(inv_freq), free(table);
    return 0;
}
