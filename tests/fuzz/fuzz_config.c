/* Fuzz target: shardlora's option parser (src/config.c). The input is a command line, its
 * arguments separated by NUL bytes, the first the command; it is parsed, its input files checked
 * for being regular files, its quantization options resolved and every option's value printed. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "harness.h"

enum { MAX_ARGS = 64 };

typedef struct {
    int argc;
    char **argv;
    sl_config cfg;
} config_job;

static void parse(void *arg)
{
    config_job *job = arg;
    config_parse(&job->cfg, job->argc, job->argv);
    config_check_input_files(&job->cfg);
    quant_format fmt;
    config_quant(&job->cfg, &fmt);
    char value[512];
    for (int i = 0; config_option_name(job->cfg.command, i); i++)
        config_value(&job->cfg, config_option_name(job->cfg.command, i), value, sizeof value);
    config_free(&job->cfg);
}

/* --help prints and exits 0 by design: such command lines are not parsed. */
static int asks_for_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return argc < 2;
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *argv[MAX_ARGS + 2] = {"shardlora"};
    memcpy(text, data, size);
    text[size] = 0;
    int argc = 1;
    for (char *p = text; p <= text + size && argc <= MAX_ARGS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;
    config_job job = {.argc = argc, .argv = argv};
    if (!asks_for_help(argc, argv)) fuzz_try(parse, &job);
    free(text);
}

FUZZ_TARGET(fuzz_one)
