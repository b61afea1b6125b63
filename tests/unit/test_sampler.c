/* Training sampler on small datasets written here: token i of /tokens has id i, so every packed
 * row tells which token it came from. Checks epoch coverage, rank slicing for simulated world
 * sizes, loss-mask targets, document boundaries, classification units, seeds, and error reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "filter.h" /* needs cmocka.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"
#include "h5io.h"
#include "runtime.h"
#include "sampler.h"

#define VOCAB (1 << 20)
#define SEQ_LEN 8
#define MAX_UNITS 4096

/* Lengths that give no window (0, 1), one short window, exactly one full one (9) and several. */
static const int64_t DOC_LEN[] = {5, 0, 17, 1, 9, 2, 30, 10, 3, 25, 8, 16, 4, 11};
#define N_DOCS (int)(sizeof DOC_LEN / sizeof DOC_LEN[0])
static int64_t doc_off[N_DOCS + 1];

static int mask_of(int64_t i) { return i % 3 != 1; }

/* bad_at >= 0 puts an id outside the vocabulary there; labels NULL: no /labels. */
static void write_dataset(const char *path, int with_mask, const int32_t *labels, int64_t bad_at)
{
    for (int d = 0; d < N_DOCS; d++) doc_off[d + 1] = doc_off[d] + DOC_LEN[d];
    int64_t n = doc_off[N_DOCS], docs = N_DOCS, offs = N_DOCS + 1;
    int32_t *tok = malloc((size_t)n * 4);
    uint8_t *mask = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)i, mask[i] = (uint8_t)mask_of(i);
    if (bad_at >= 0) tok[bad_at] = VOCAB + 7;
    hid_t f = h5_create(path, "dataset", MPI_COMM_NULL);
    h5_write(f, "/tokens", SL_I32, SL_I32, 1, &n, tok);
    h5_write(f, "/doc_offsets", SL_I64, SL_I64, 1, &offs, doc_off);
    if (with_mask) h5_write(f, "/loss_mask", SL_U8, SL_U8, 1, &n, mask);
    if (labels) h5_write(f, "/labels", SL_I32, SL_I32, 1, &docs, labels);
    h5_set_attr_int(f, "/", "vocab_size", VOCAB);
    h5_close(f);
    free(tok), free(mask);
}

static int doc_of(int64_t token)
{
    int d = 0;
    while (doc_off[d + 1] <= token) d++;
    return d;
}

static void set_world(int world, int rank) { RT.world = world, RT.rank = rank; }

static sampler_options lm_options(int micro_batch, int grad_accum, uint64_t seed)
{
    return (sampler_options){.task = SAMPLER_CAUSAL_LM, .seq_len = SEQ_LEN, .micro_batch = micro_batch,
                             .grad_accum = grad_accum, .seed = seed};
}

/* First token of every unit of steps [0, steps), in stream order, gathered over all simulated
 * ranks of a world; returns the count. */
static int64_t stream_starts(const char *path, const sampler_options *o, int world, int64_t steps, int64_t *out)
{
    sl_dataset d;
    data_open(&d, path);
    sl_sampler s[4];
    for (int r = 0; r < world; r++) set_world(world, r), sampler_init(&s[r], &d, o);
    int64_t g = sampler_global_batch(&s[0]);
    for (int64_t step = 0; step < steps; step++)
        for (int a = 0; a < o->grad_accum; a++)
            for (int r = 0; r < world; r++) {
                const sl_batch *b = &sampler_batch(&s[r], step, a)->batch;
                assert_int_equal(b->n_seqs, o->micro_batch);
                for (int i = 0; i < b->n_seqs; i++)
                    out[step * g + ((int64_t)a * world + r) * o->micro_batch + i] = b->ids[b->seq_start[i]];
            }
    for (int r = 0; r < world; r++) sampler_free(&s[r]);
    data_close(&d);
    set_world(1, 0);
    return steps * g;
}

static int64_t eval_windows(const char *path, sl_window **w)
{
    sl_dataset d;
    data_open(&d, path);
    int64_t n = data_eval_windows(&d, SEQ_LEN, w);
    data_close(&d);
    return n;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_each_window_once_per_epoch(void **state)
{
    write_dataset("lm.h5", 1, NULL, -1);
    sl_window *w;
    int64_t n = eval_windows("lm.h5", &w), starts[MAX_UNITS];
    sampler_options o = lm_options(3, 2, 11);
    int64_t steps = (3 * n + 5) / 6; /* three epochs and a bit */
    stream_starts("lm.h5", &o, 1, steps, starts);
    for (int e = 0; e < 3; e++) {
        int64_t *ep = starts + e * n;
        qsort(ep, (size_t)n, 8, cmp_i64);
        for (int64_t i = 0; i < n; i++) assert_int_equal(ep[i], w[i].start);
    }
    free(w);
}

static void test_same_windows_for_any_world(void **state)
{
    write_dataset("lm.h5", 1, NULL, -1);
    static int64_t ref[MAX_UNITS], got[MAX_UNITS];
    const int worlds[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        sampler_options o = lm_options(2, 4 / worlds[k], 5); /* global batch 8 */
        int64_t n = stream_starts("lm.h5", &o, worlds[k], 9, k ? got : ref);
        if (k) assert_memory_equal(got, ref, (size_t)n * 8);
    }
}

static void test_targets_mask_and_documents(void **state)
{
    write_dataset("lm.h5", 1, NULL, -1);
    sl_dataset d;
    data_open(&d, "lm.h5");
    sl_sampler s;
    sampler_options o = lm_options(4, 1, 3);
    sampler_init(&s, &d, &o);
    for (int64_t step = 0; step < 2 * sampler_steps_per_epoch(&s); step++) {
        const sl_micro_batch *mb = sampler_batch(&s, step, 0);
        const sl_batch *b = &mb->batch;
        int64_t counted = 0;
        for (int i = 0; i < b->n_seqs; i++) {
            int lo = b->seq_start[i], hi = b->seq_start[i + 1];
            assert_in_range(hi - lo, 1, SEQ_LEN);
            assert_int_equal(doc_of(b->ids[lo]), doc_of(b->ids[hi - 1] + 1)); /* last target in the same document */
            for (int t = lo; t < hi; t++) {
                assert_int_equal(b->pos[t], t - lo);
                assert_int_equal(b->ids[t], b->ids[lo] + (t - lo));
                assert_int_equal(b->target[t], mask_of(b->ids[t] + 1) ? b->ids[t] + 1 : -1);
                counted += b->target[t] >= 0;
            }
        }
        assert_int_equal(mb->n_targets, counted);
        assert_null(mb->labels);
    }
    sampler_free(&s);
    data_close(&d);
}

static void test_no_mask_counts_every_target(void **state)
{
    write_dataset("nomask.h5", 0, NULL, -1);
    sl_dataset d;
    data_open(&d, "nomask.h5");
    sl_sampler s;
    sampler_options o = lm_options(2, 1, 3);
    sampler_init(&s, &d, &o);
    const sl_micro_batch *mb = sampler_batch(&s, 0, 0);
    assert_int_equal(mb->n_targets, mb->batch.T);
    sampler_free(&s);
    data_close(&d);
}

static void test_seq_cls_units(void **state)
{
    int32_t labels[N_DOCS];
    for (int i = 0; i < N_DOCS; i++) labels[i] = i % 3;
    write_dataset("cls.h5", 1, labels, -1);
    sl_dataset d;
    data_open(&d, "cls.h5");
    sl_sampler s;
    sampler_options o = {.task = SAMPLER_SEQ_CLS, .seq_len = SEQ_LEN, .micro_batch = 3, .grad_accum = 1,
                         .num_labels = 3, .seed = 9};
    sampler_init(&s, &d, &o);
    int seen[N_DOCS] = {0}, nonempty = 0;
    for (int i = 0; i < N_DOCS; i++) nonempty += DOC_LEN[i] > 0;
    int64_t steps = sampler_steps_per_epoch(&s);
    assert_int_equal(steps, (nonempty + 2) / 3);
    for (int64_t step = 0; step < steps; step++) {
        const sl_micro_batch *mb = sampler_batch(&s, step, 0);
        const sl_batch *b = &mb->batch;
        for (int i = 0; i < b->n_seqs && step * 3 + i < nonempty; i++) {
            int lo = b->seq_start[i], doc = doc_of(b->ids[lo]);
            assert_int_equal(b->ids[lo], doc_off[doc]); /* the first tokens are kept */
            assert_int_equal(b->seq_start[i + 1] - lo, DOC_LEN[doc] < SEQ_LEN ? DOC_LEN[doc] : SEQ_LEN);
            assert_int_equal(mb->labels[i], labels[doc]);
            for (int t = lo; t < b->seq_start[i + 1]; t++) assert_int_equal(b->target[t], -1);
            seen[doc]++;
        }
    }
    for (int i = 0; i < N_DOCS; i++) assert_int_equal(seen[i], DOC_LEN[i] > 0);
    sampler_free(&s);
    data_close(&d);
}

static void test_seeds_and_positions(void **state)
{
    write_dataset("lm.h5", 1, NULL, -1);
    static int64_t a[MAX_UNITS], b[MAX_UNITS], c[MAX_UNITS];
    sampler_options o1 = lm_options(2, 1, 1), o2 = lm_options(2, 1, 2);
    sl_window *w;
    int64_t n = eval_windows("lm.h5", &w);
    free(w);
    int64_t steps = n; /* two epochs */
    stream_starts("lm.h5", &o1, 1, steps, a);
    stream_starts("lm.h5", &o1, 1, steps, b);
    stream_starts("lm.h5", &o2, 1, steps, c);
    assert_memory_equal(a, b, (size_t)(2 * steps) * 8);
    assert_memory_not_equal(a, c, (size_t)n * 8);
    assert_memory_not_equal(a, a + n, (size_t)n * 8); /* each epoch has its own order */

    sl_dataset d;
    data_open(&d, "lm.h5");
    sl_sampler s;
    sampler_init(&s, &d, &o1);
    for (int64_t step = 0; step < steps; step++) {
        sampler_pos p = sampler_position(&s, step);
        assert_int_equal(p.epoch * n + p.index, 2 * step);
    }
    sampler_free(&s);
    data_close(&d);
}

/* Run fn in a child process; it must exit with status 1 and print a line containing want. */
static void expect_exit(void (*fn)(void), const char *want)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        fn();
        _exit(0);
    }
    close(fd[1]);
    char buf[4096] = {0};
    size_t len = 0;
    ssize_t got;
    while (len < sizeof buf - 1 && (got = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)got;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 || !strstr(buf, want))
        fail_msg("expected exit status 1 and a message with \"%s\"; got status %d, stderr: %s", want, status, buf);
}

static void sample_first_steps(const char *path, int task)
{
    sl_dataset d;
    data_open(&d, path);
    sl_sampler s;
    sampler_options o = lm_options(2, 1, 1);
    o.task = task, o.num_labels = 3;
    sampler_init(&s, &d, &o);
    for (int64_t step = 0; step < sampler_steps_per_epoch(&s); step++) sampler_batch(&s, step, 0);
}

static void sample_bad_token(void) { sample_first_steps("bad.h5", SAMPLER_CAUSAL_LM); }
static void sample_cls_no_labels(void) { sample_first_steps("lm.h5", SAMPLER_SEQ_CLS); }
static void sample_cls_bad_label(void) { sample_first_steps("badlabel.h5", SAMPLER_SEQ_CLS); }

static void test_errors_name_file_and_value(void **state)
{
    write_dataset("bad.h5", 1, NULL, 40);
    expect_exit(sample_bad_token, "bad.h5: dataset /tokens: token id 1048583 at index 40 is outside the vocabulary [0, 1048576)");
    write_dataset("lm.h5", 1, NULL, -1);
    expect_exit(sample_cls_no_labels, "lm.h5: dataset has no /labels, needed by --task seq_cls");
    int32_t labels[N_DOCS] = {0};
    labels[6] = 7;
    write_dataset("badlabel.h5", 1, labels, -1);
    expect_exit(sample_cls_bad_label, "badlabel.h5: dataset /labels: document 6 has label 7, outside [0, 3)");
    assert_int_equal(sampler_bad_label(labels, N_DOCS, 3), 6);
    assert_int_equal(sampler_bad_label(labels, 6, 3), -1);
    labels[2] = -1;
    assert_int_equal(sampler_bad_label(labels, N_DOCS, 3), 2);
}

/* data_check_contents' per-window loss-target flags and sampler_first_step_without foresee the
 * first step whose global batch has no loss target exactly as the sampler then packs it. */
static void test_foreseen_empty_steps(void **state)
{
    for (int d = 0; d < N_DOCS; d++) doc_off[d + 1] = doc_off[d] + DOC_LEN[d];
    int64_t n = doc_off[N_DOCS], offs = N_DOCS + 1;
    int32_t *tok = malloc((size_t)n * 4);
    uint8_t *mask = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)i;
    mask[doc_off[2] + 3] = mask[doc_off[6] + 20] = mask[doc_off[9] + 1] = 1; /* 3 windows with a target */
    mask[doc_off[4]] = 1; /* a document's first token is no target */
    hid_t f = h5_create("sparse.h5", "dataset", MPI_COMM_NULL);
    h5_write(f, "/tokens", SL_I32, SL_I32, 1, &n, tok);
    h5_write(f, "/doc_offsets", SL_I64, SL_I64, 1, &offs, doc_off);
    h5_write(f, "/loss_mask", SL_U8, SL_U8, 1, &n, mask);
    h5_set_attr_int(f, "/", "vocab_size", VOCAB);
    h5_close(f);
    free(tok), free(mask);
    sl_dataset d;
    data_open(&d, "sparse.h5");
    const data_checks dc = {.model_vocab = VOCAB, .model = "m.h5", .causal = 1, .seq_len = SEQ_LEN, .purpose = "train on"};
    data_summary sum;
    data_check_contents(&d, &dc, &sum);
    assert_int_equal(sum.targets, 3);
    assert_int_equal(sum.windows_with_target, 3);
    int64_t longer = 0;
    for (int i = 0; i < N_DOCS; i++) longer += DOC_LEN[i] >= 2;
    assert_int_equal(sum.masked_docs, longer - 3);
    set_world(1, 0);
    int found_some = 0;
    for (int seed = 0; seed < 12; seed++)
        for (int mb = 1; mb <= 3; mb++) {
            sampler_options o = {.task = SAMPLER_CAUSAL_LM, .seq_len = SEQ_LEN, .micro_batch = mb, .grad_accum = 2,
                                 .seed = (uint64_t)seed};
            sl_sampler s;
            sampler_init(&s, &d, &o);
            assert_int_equal(s.n_units, sum.n_windows);
            int64_t steps = 40, want = -1;
            for (int64_t step = 0; step < steps && want < 0; step++) {
                int64_t t = 0;
                for (int a = 0; a < 2; a++) t += sampler_batch(&s, step, a)->n_targets;
                if (t == 0) want = step;
            }
            found_some += want >= 0;
            assert_int_equal(sampler_first_step_without(sum.window_has_target, sum.n_windows,
                                                        sampler_global_batch(&s), (uint64_t)seed, steps), want);
            sampler_free(&s);
        }
    assert_true(found_some > 0);
    free(sum.window_has_target);
    data_close(&d);
}

int main(void)
{
    rt_init_serial("test_sampler");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_window_once_per_epoch),
        cmocka_unit_test(test_same_windows_for_any_world),
        cmocka_unit_test(test_targets_mask_and_documents),
        cmocka_unit_test(test_no_mask_counts_every_target),
        cmocka_unit_test(test_seq_cls_units),
        cmocka_unit_test(test_seeds_and_positions),
        cmocka_unit_test(test_errors_name_file_and_value),
        cmocka_unit_test(test_foreseen_empty_steps),
    };
    test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
