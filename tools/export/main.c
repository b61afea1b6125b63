/* shardlora-export: turn a trained adapter (or a checkpoint) into files other tools load. This
 * file holds the command line and the output files; reading lives in adapter.c, the formats in
 * safetensors.c and peftconfig.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export.h"
#include "runtime.h"

static const char USAGE[] =
    "usage: shardlora-export peft ADAPTER.h5 DIR [--base-model NAME]\n"
    "  peft  write DIR/adapter_model.safetensors and DIR/adapter_config.json in the Hugging Face\n"
    "        PEFT layout, loadable with PeftModel.from_pretrained(base_model, DIR). ADAPTER.h5 is\n"
    "        OUT/adapter.h5 of shardlora train or a checkpoint (OUT/checkpoints/step_N.h5).\n"
    "        base_model_name_or_path is the Hugging Face directory the base model file was\n"
    "        imported from (its root attribute source), else the base model file's path;\n"
    "        --base-model NAME (a hub id or directory) overrides it.\n";

/* Outputs are written under temporary names and renamed when complete; a failure removes them. */
enum { OUT_SAFETENSORS, OUT_CONFIG, N_OUTPUTS };
static char temp_paths[N_OUTPUTS][4096];

static void remove_temporaries(void)
{
    for (int i = 0; i < N_OUTPUTS; i++)
        if (temp_paths[i][0]) unlink(temp_paths[i]);
}

static FILE *open_temporary(int which, const char *dir, const char *name)
{
    snprintf(temp_paths[which], sizeof temp_paths[which], "%s/.%s.XXXXXX", dir, name);
    int fd = mkstemp(temp_paths[which]);
    if (fd < 0) {
        temp_paths[which][0] = 0;
        sl_fatal("cannot create a file in %s: %s", dir, strerror(errno));
    }
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) sl_fatal("cannot open %s: %s", temp_paths[which], strerror(errno));
    return f;
}

static void close_durably(FILE *f, const char *path)
{
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
        sl_fatal("cannot write %s: %s (disk full?)", path, strerror(errno));
}

static void install(int which, const char *dir, const char *name)
{
    char final[4096];
    snprintf(final, sizeof final, "%s/%s", dir, name);
    if (rename(temp_paths[which], final) != 0) sl_fatal("cannot rename %s to %s: %s", temp_paths[which], final, strerror(errno));
    temp_paths[which][0] = 0;
}

static void export_peft(const char *src, const char *dir, const char *base_override)
{
    export_adapter a;
    export_adapter_open(src, &a);
    rt_make_directory(dir);
    atexit(remove_temporaries);

    FILE *st = open_temporary(OUT_SAFETENSORS, dir, "adapter_model.safetensors");
    safetensors_write(&a, st, temp_paths[OUT_SAFETENSORS]);
    close_durably(st, temp_paths[OUT_SAFETENSORS]);

    char *base_name = base_override ? strdup(base_override) : export_base_model_name(&a);
    cJSON *config = export_peft_config(&a, base_name);
    char *text = cJSON_Print(config);
    FILE *cf = open_temporary(OUT_CONFIG, dir, "adapter_config.json");
    if (!text || fputs(text, cf) == EOF || fputc('\n', cf) == EOF)
        sl_fatal("cannot write %s: %s", temp_paths[OUT_CONFIG], strerror(errno));
    close_durably(cf, temp_paths[OUT_CONFIG]);

    install(OUT_SAFETENSORS, dir, "adapter_model.safetensors");
    install(OUT_CONFIG, dir, "adapter_config.json");
    int64_t elements = 0;
    for (int i = 0; i < a.n_tensors; i++) elements += a.tensors[i].n;
    log_info("exported %s (%s, task %s, r %d): %d tensors, %.2f MiB of float32 to %s/adapter_model.safetensors "
             "and %s/adapter_config.json; base model '%s'",
             src, a.kind, a.task, a.r, a.n_tensors, (double)elements * 4 / (1 << 20), dir, dir, base_name);
    free(text);
    cJSON_Delete(config);
    free(base_name);
    export_adapter_close(&a);
}

int main(int argc, char **argv)
{
    rt_init_serial("shardlora-export");
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) fputs(USAGE, stdout), exit(0);
    const char *pos[3], *base = NULL;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--base-model=", 13) == 0) base = argv[i] + 13;
        else if (strcmp(argv[i], "--base-model") == 0) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) sl_usage_error("option --base-model: expected a value");
            base = argv[++i];
        } else if (strncmp(argv[i], "--", 2) == 0) sl_usage_error("unknown argument '%s' (see --help)", argv[i]);
        else if (npos < 3) pos[npos++] = argv[i];
        else npos++;
    }
    if (base && !*base) sl_usage_error("option --base-model: expected a value, found an empty name");
    if (npos != 3) {
        fputs(USAGE, stderr);
        sl_usage_error("expected a format (peft), an adapter file and an output directory, found %d arguments", npos);
    }
    if (strcmp(pos[0], "peft") != 0) sl_usage_error("unknown export format '%s' (expected peft)", pos[0]);
    export_peft(pos[1], pos[2], base);
    rt_finalize();
    return 0;
}
