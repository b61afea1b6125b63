/* writer: one thread that makes shardlora-init's HDF5 writes, so the OpenMP threads compute the
 * next tensor while the last one is written. HDF5 (not built thread-safe) sees one caller at a
 * time: between writer_start and writer_finish only jobs call it. */
#ifndef SL_INIT_WRITER_H
#define SL_INIT_WRITER_H

#include <hdf5.h>
#include <pthread.h>

typedef void (*write_fn)(hid_t file, void *arg);

typedef struct {
    hid_t file;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    write_fn job; /* the job handed over or running; NULL when the thread is idle */
    void *arg;
    int stop;
    double write_s, wait_s; /* time in jobs; time writer_submit waited for the previous one */
} writer;

void writer_start(writer *w, hid_t file);
/* Waits until the previous job is done, then hands over job(file, arg): what arg points at must
 * stay until the next writer_submit or writer_finish returns (two buffers, used in turn). */
void writer_submit(writer *w, write_fn job, void *arg);
/* Waits for the last job and ends the thread. */
void writer_finish(writer *w);

#endif
