/* shardlora: sharded QLoRA fine-tuning and evaluation of LLaMA-family models, one MPI rank per GPU.
 * main wires the rooms together; each does one thing:
 *   runtime  MPI, local rank, logging, fatal errors     config   the option table
 *   h5io     HDF5 helpers                               modelcfg /config and the tensor table
 *   fsdp     sharded flat units, gather and release     model    loading; forward.c the forward pass
 *   data     token datasets and windows                 eval     the eval command; generate greedy decoding
 *   memplan  the --dry-run memory plan                  lora     adapters; layer.c one decoder layer
 *   step     one micro-batch forward + backward;        train    the training loop; adapter.c its output
 *            saved_inputs.c the layer inputs --act-ckpt keeps (--act-offload: in host memory)
 *   qpool    quantized weights sharded in blocks       optim    AdamW, clipping, schedules
 *   sampler  training batches                           metrics  OUT/metrics.h5
 *   pass     batch copies, rotary table, the heads      BE       the backend (kernels/backend.h)
 *   outdir   OUT's run lock and a previous run's state */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#ifdef SL_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif
#include "backend.h"
#include "comm.h"
#include "config.h"
#include "eval.h"
#include "generate.h"
#include "runtime.h"
#include "train.h"

/* Threads per rank: the option, else OMP_NUM_THREADS, else the cores shared among local ranks. */
static void set_threads(const sl_config *cfg)
{
    int n = cfg->threads;
    if (n == 0 && getenv("OMP_NUM_THREADS")) n = omp_get_max_threads();
    if (n == 0) n = omp_get_num_procs() / (RT.local_size > 0 ? RT.local_size : 1);
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    /* Measured on the demo: OpenBLAS threads nested in OpenMP regions oversubscribe the cores and
     * halve throughput; ranks, not BLAS threads, are how the CPU backend uses more cores. */
    openblas_set_num_threads(1);
}

/* The backend --device names: each rank binds its own GPU for cuda. All ranks agree, so a rank
 * without a GPU ends the job instead of computing elsewhere. */
static void select_backend(const sl_config *cfg)
{
    char msg[256] = "this build has no CUDA backend (nvcc, cuBLASLt, NCCL or cuDNN were not found at build time)";
    int have_gpu = 0;
#ifdef SL_HAVE_CUDA
    if (strcmp(cfg->device, "cpu") != 0) have_gpu = k_cuda_bind_device(RT.local_rank, msg, sizeof msg) >= 0;
#endif
#ifdef SL_HAVE_CUDA
    if (cfg->dry_run && !strcmp(cfg->device, "cuda") && !have_gpu) { /* planning on a node without GPUs */
        BE = &backend_cuda;
        log_info("backend: cuda, planned only (--dry-run; %s)", msg);
        return;
    }
#endif
    if (!strcmp(cfg->device, "cuda")) rt_agree(have_gpu, "--device=cuda: %s", msg);
    int64_t seen[2] = {have_gpu, !have_gpu}; /* some rank with a GPU, some rank without */
    comm_allreduce_max_i64(seen, 2);
    rt_agree(!(seen[0] && seen[1]), "--device=auto: some ranks see a GPU and others do not (%s); pass --device", msg);
#ifdef SL_HAVE_CUDA
    if (have_gpu) {
        k_cuda_backend_start();
        BE = &backend_cuda;
        log_info("backend: cuda, bf16 activations (rank 0: %s)", msg);
        return;
    }
#endif
    BE = &backend_cpu;
    log_info("backend: cpu, fp32");
}

int main(int argc, char **argv)
{
    rt_init(&argc, &argv, "shardlora");
    sl_config cfg;
    config_parse(&cfg, argc, argv);
    set_threads(&cfg);
    select_backend(&cfg);
    const comm_gpu_ops *gpu = NULL;
#ifdef SL_HAVE_CUDA
    if (BE == &backend_cuda && !cfg.dry_run) gpu = &k_cuda_comm_ops;
#endif
    comm_setup(cfg.comm, cfg.comm_timeout, gpu);
    int status = 0;
    if (cfg.command == CMD_EVAL) eval_run(&cfg);
    else if (cfg.command == CMD_GENERATE) generate_run(&cfg);
    else status = train_run(&cfg);
#ifdef SL_HAVE_CUDA
    if (BE == &backend_cuda && !cfg.dry_run) k_cuda_backend_report();
#endif
    comm_finalize();
    config_free(&cfg);
    rt_finalize();
    return status;
}
