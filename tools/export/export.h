/* shardlora-export: shared pieces of the exporters (the adapter as read from HDF5, the writers). */
#ifndef SL_EXPORT_H
#define SL_EXPORT_H

#include <cJSON.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>

#define EXPORT_MAXDIMS 2

/* One float32 tensor of the adapter: where it lives in the HDF5 file and its PEFT name. */
typedef struct {
    char *h5_path; /* "/lora/model/layers/0/self_attn/q_proj/lora_A" */
    char *name;    /* "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" */
    int ndims;
    int64_t dims[EXPORT_MAXDIMS], n;
} export_tensor;

/* An adapter or checkpoint file, open for reading, with the attributes that say how to apply it. */
typedef struct {
    const char *path;
    hid_t file;
    char *kind, *task, *target_modules, *base_model;
    int r, rslora, num_labels;
    double alpha, dropout;
    export_tensor *tensors; /* sorted by name */
    int n_tensors;
} export_adapter;

/* Open path (shardlora_kind "adapter" or "checkpoint"), check its attributes and list its LoRA
 * matrices and classification head with PEFT names. Every problem is fatal and names the file. */
void export_adapter_open(const char *path, export_adapter *a);
/* Read one tensor as little-endian float32 into buf (t->n elements). */
void export_tensor_read(const export_adapter *a, const export_tensor *t, float *buf);
void export_adapter_close(export_adapter *a);

/* PEFT's base_model_name_or_path: the base model file's model_name when it can be read, else the
 * adapter's base_model attribute itself. */
char *export_base_model_name(const export_adapter *a);
/* adapter_config.json for PEFT's LoraConfig. */
cJSON *export_peft_config(const export_adapter *a, const char *base_model_name);

/* Write the adapter's tensors to out in the safetensors format (header, then the data in name
 * order); path names the file in messages. */
void safetensors_write(const export_adapter *a, FILE *out, const char *path);

#endif
