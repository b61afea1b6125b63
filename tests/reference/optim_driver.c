/* Test driver for test_optim_torch.py: the optimizer room alone, as the training loop uses it.
 *   optim_driver IN OUT SCHEDULE WARMUP TOTAL LR WEIGHT_DECAY DECAYED MAX_GRAD_NORM
 * IN holds int64 n, int64 steps, float param[n], then float grad[steps][n]. Each rank owns a
 * contiguous shard; per step: global norm, clipping (when MAX_GRAD_NORM > 0), then AdamW with
 * WEIGHT_DECAY on elements [0, DECAYED) and none on the rest. Rank r writes OUT.r: float param,
 * exp_avg, exp_avg_sq of its shard, then (rank 0 only) float lr[steps] and double norm[steps]. */
#include <stdio.h>
#include <stdlib.h>

#include "optim.h"
#include "runtime.h"

static FILE *open_file(const char *path, const char *mode)
{
    FILE *f = fopen(path, mode);
    if (!f) sl_fatal("%s: cannot open", path);
    return f;
}

static void read_at(FILE *f, const char *path, long offset, void *buf, size_t size, size_t count)
{
    if (fseek(f, offset, SEEK_SET) || fread(buf, size, count, f) != count) sl_fatal("%s: too short", path);
}

static void write_all(FILE *f, const void *buf, size_t size, size_t count)
{
    if (fwrite(buf, size, count, f) != count) sl_fatal("write failed");
}

int main(int argc, char **argv)
{
    rt_init(&argc, &argv, "optim_driver");
    if (argc != 10) sl_fatal("usage: %s IN OUT SCHEDULE WARMUP TOTAL LR WEIGHT_DECAY DECAYED MAX_GRAD_NORM", argv[0]);
    const sl_schedule sched = {.kind = schedule_kind(argv[3]), .base_lr = strtof(argv[6], NULL),
                               .warmup_steps = atoll(argv[4]), .total_steps = atoll(argv[5])};
    const sl_adamw decay = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = atof(argv[7])};
    const sl_adamw no_decay = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0};
    const int64_t decayed = atoll(argv[8]);
    const double max_norm = atof(argv[9]);

    FILE *in = open_file(argv[1], "rb");
    int64_t head[2];
    read_at(in, argv[1], 0, head, sizeof head[0], 2);
    const int64_t n = head[0], steps = head[1];
    const int64_t lo = n * RT.rank / RT.world, len = n * (RT.rank + 1) / RT.world - lo;
    const int64_t len_decayed = decayed <= lo ? 0 : decayed >= lo + len ? len : decayed - lo;
    float *p = sl_malloc((size_t)len * sizeof *p, "param"), *g = sl_malloc((size_t)len * sizeof *g, "grad");
    float *m = sl_calloc((size_t)len, sizeof *m, "exp_avg"), *v = sl_calloc((size_t)len, sizeof *v, "exp_avg_sq");
    float *lr = sl_malloc((size_t)steps * sizeof *lr, "lr");
    double *norm = sl_malloc((size_t)steps * sizeof *norm, "norm");
    read_at(in, argv[1], (long)(sizeof head + lo * sizeof(float)), p, sizeof *p, (size_t)len);

    for (int64_t t = 0; t < steps; t++) {
        read_at(in, argv[1], (long)(sizeof head + ((t + 1) * n + lo) * sizeof(float)), g, sizeof *g, (size_t)len);
        norm[t] = optim_global_norm(optim_local_sq_norm(g, len));
        if (max_norm > 0) optim_scale(g, len, optim_clip_coef(norm[t], max_norm));
        lr[t] = lr_at(&sched, t);
        adamw_step(p, g, m, v, len_decayed, &decay, t + 1, lr[t]);
        adamw_step(p + len_decayed, g + len_decayed, m + len_decayed, v + len_decayed, len - len_decayed, &no_decay,
                   t + 1, lr[t]);
    }
    fclose(in);

    char path[4096];
    snprintf(path, sizeof path, "%s.%d", argv[2], RT.rank);
    FILE *out = open_file(path, "wb");
    write_all(out, p, sizeof *p, (size_t)len);
    write_all(out, m, sizeof *m, (size_t)len);
    write_all(out, v, sizeof *v, (size_t)len);
    if (RT.rank == 0) {
        write_all(out, lr, sizeof *lr, (size_t)steps);
        write_all(out, norm, sizeof *norm, (size_t)steps);
    }
    if (fclose(out)) sl_fatal("%s: write failed", path);
    free(p), free(g), free(m), free(v), free(lr), free(norm);
    rt_finalize();
    return 0;
}
