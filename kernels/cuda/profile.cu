// profile: pairs of CUDA events per backend call, pooled and resolved at report time.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"
#include "cuda/profile.h"

// Event pairs held before they are resolved into the totals (a Llama-8B step makes a few thousand calls).
enum { PROF_SLOTS = 1 << 16 };

static const char *const PART_NAMES[PROF_PARTS] = {"GEMM (base)", "LoRA GEMMs", "attention", "dequantization",
                                                   "elementwise", "logits GEMM", "cross-entropy", "optimizer",
                                                   "host transfers", "collectives", "offload copies"};
static int enabled = -1, used, steps_marked;
static cudaEvent_t begins[PROF_SLOTS], ends[PROF_SLOTS];
static unsigned char sites_of[PROF_SLOTS];
// The call sites that recorded time (the backend entries' names), each in one part: a part's time
// is the sum of its sites'.
enum { PROF_SITES = 64 };
static const char *site_names[PROF_SITES];
static unsigned char site_parts[PROF_SITES];
static int n_sites;
static int step_of[PROF_SLOTS]; // the optimizer step an event pair was recorded in (0: the first)
// The first step (it builds attention plans and uploads the model), whole steps after it, and the
// step in progress (left out of the report: after the last step come the checkpoint's downloads).
// Marking a step waits for nothing, so profiling does not stall the host between steps; events are
// resolved when the slots run out and at the report.
static double site_first[PROF_SITES], site_complete[PROF_SITES], site_pending[PROF_SITES];

// Events may sit on the compute stream or a side stream: wait for each one itself.
static void resolve(void)
{
    for (int i = 0; i < used; i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventSynchronize(ends[i]));
        CUDA_CHECK(cudaEventElapsedTime(&ms, begins[i], ends[i]));
        (step_of[i] == 0 ? site_first : step_of[i] < steps_marked ? site_complete : site_pending)[sites_of[i]] += ms;
    }
    used = 0;
}

// The site's index (sites are string literals: compared by address, then by text).
static int site_index(prof_part part, const char *site)
{
    for (int i = 0; i < n_sites; i++)
        if (site_parts[i] == part && (site_names[i] == site || !strcmp(site_names[i], site))) return i;
    if (n_sites == PROF_SITES) sl_fatal("internal error: more than %d profiled call sites", PROF_SITES);
    site_names[n_sites] = site, site_parts[n_sites] = (unsigned char)part;
    return n_sites++;
}

int prof_begin(prof_part part, const char *site, cudaStream_t s)
{
    if (enabled < 0) enabled = getenv("SHARDLORA_PROFILE") && atoi(getenv("SHARDLORA_PROFILE")) > 0;
    if (!enabled) return -1;
    if (used == PROF_SLOTS) resolve();
    if (!begins[used]) {
        CUDA_CHECK(cudaEventCreate(&begins[used]));
        CUDA_CHECK(cudaEventCreate(&ends[used]));
    }
    sites_of[used] = (unsigned char)site_index(part, site);
    step_of[used] = steps_marked;
    CUDA_CHECK(cudaEventRecord(begins[used], s));
    return used++;
}

void prof_end(int token, cudaStream_t s)
{
    if (token >= 0) CUDA_CHECK(cudaEventRecord(ends[token], s));
}

void prof_mark_step(void)
{
    if (enabled <= 0) return;
    steps_marked++;
    for (int i = 0; i < PROF_SITES; i++) site_complete[i] += site_pending[i], site_pending[i] = 0;
}

void prof_report(void)
{
    if (enabled <= 0) return;
    resolve();
    const int steps = steps_marked > 1 ? steps_marked - 1 : 1;
    const double *site_totals = steps_marked > 1 ? site_complete : site_first; // one step: that step
    double totals[PROF_PARTS] = {0}, sum = 0;
    for (int i = 0; i < n_sites; i++) totals[site_parts[i]] += site_totals[i];
    for (int p = 0; p < PROF_COMM; p++) sum += totals[p] / steps;
    log_info("profile: GPU time per part, ms per step over %s (%.1f ms recorded on the compute stream):",
             steps_marked > 1 ? "the steps after the first" : "the whole run", sum);
    for (int p = 0; p < PROF_COMM; p++) {
        log_info("profile:   %-16s %10.2f  %5.1f%%", PART_NAMES[p], totals[p] / steps,
                 sum > 0 ? 100 * totals[p] / steps / sum : 0.0);
        for (int i = 0; i < n_sites; i++)
            if (site_parts[i] == p && site_totals[i] > 0)
                log_info("profile:     %-24s %8.2f", site_names[i], site_totals[i] / steps);
    }
    static const char *const SIDE[] = {"communication stream", "copy stream"};
    for (int p = PROF_COMM; p < PROF_PARTS; p++)
        log_info("profile:   %-16s %10.2f  (%s, overlaps the above)", PART_NAMES[p], totals[p] / steps,
                 SIDE[p - PROF_COMM]);
}
