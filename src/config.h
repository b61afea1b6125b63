/* config: the one option table. Every option has a name (--name=value on the command line), a
 * type, a default, a help line and an environment variable SHARDLORA_<NAME>; the command line
 * wins over the environment, which wins over the default. --help is generated from the table and
 * the resolved configuration is stored in every output file. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <hdf5.h>

#include "quant.h"

enum { CMD_TRAIN = 1, CMD_EVAL = 2, CMD_GENERATE = 4 };

/* A boolean option left to the run to decide (its default "auto"). */
#define CONFIG_AUTO (-1)

typedef struct {
    int command;          /* CMD_TRAIN, CMD_EVAL or CMD_GENERATE */
    const char *command_name;
    /* inputs and outputs */
    char *model, *data, *out;
    /* data */
    int seq_len, micro_batch;
    /* frozen base */
    char *quant;          /* none | nf4 | fp4 | int8 */
    int double_quant, blocksize;
    char *shard;          /* full | grad_op | none */
    char *device;         /* auto | cpu | cuda */
    char *comm;           /* auto | nccl | mpi */
    double comm_timeout;  /* seconds */
    /* task */
    char *task;           /* causal_lm | seq_cls */
    int num_labels;
    /* LoRA */
    int lora_r, rslora;
    double lora_alpha, lora_dropout;
    char *lora_targets;
    char *adapter;        /* eval: adapter to apply; train: adapter to start from */
    /* optimisation */
    double lr, weight_decay, max_grad_norm, beta1, beta2, adam_eps;
    char *schedule;       /* constant | linear | cosine */
    int warmup_steps, grad_accum, global_batch, steps, epochs, seed, log_every;
    int act_ckpt, dump_grads; /* act_ckpt: 0, 1 or CONFIG_AUTO */
    int act_offload;          /* the saved layer inputs in host memory; sets act_ckpt */
    /* checkpoints */
    char *resume;         /* NULL, auto or a checkpoint file */
    int overwrite;        /* replace another run's state in OUT */
    int ckpt_every, ckpt_keep, ckpt_before_end;
    /* generation */
    char *prompt_ids;     /* prompts of token ids: "1,2,3;1,7" */
    int max_new_tokens;
    char *tokenizer;      /* llama2.c tokenizer.bin, to print the text too */
    /* run control */
    int dry_run, threads;
} sl_config;

/* Parse argv (argv[0] the program, argv[1] the subcommand). Prints help and exits for --help.
 * Errors name the option and the accepted values; they are identical on every rank, so call it
 * on every rank (rank 0 alone prints). Options that imply another set it: --act-offload sets
 * --act-ckpt=true (and contradicts --act-ckpt=false). */
void config_parse(sl_config *cfg, int argc, char **argv);
/* Print --help for a command (CMD_TRAIN, CMD_EVAL, CMD_GENERATE, or 0 for the overview). */
void config_help(int command);
/* Store every option of the command as attributes of the group at path (created if missing). */
void config_write(const sl_config *cfg, hid_t file, const char *path);
/* An option's value as text (numbers in their shortest exact form, booleans true or false), now
 * (config_value) or as config_write stored it at path (config_read_value), so the two compare as
 * strings; 0 when the option is unset or not stored. */
int config_value(const sl_config *cfg, const char *name, char *buf, size_t len);
int config_read_value(hid_t file, const char *path, const char *name, char *buf, size_t len);
/* The name of the i-th option of a command (CMD_*), or NULL past the last. */
const char *config_option_name(int command, int i);
/* Fatal unless every input file option (--model, --data, --adapter, --resume, --tokenizer) names a regular
 * file or nothing yet: call it before anything opens them. */
void config_check_input_files(const sl_config *cfg);
/* The base quantization the options ask for; returns NULL or why it is not supported. */
const char *config_quant(const sl_config *cfg, quant_format *fmt);
/* Release the strings. */
void config_free(sl_config *cfg);

#endif
