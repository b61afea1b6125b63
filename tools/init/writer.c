/* writer: a one-slot hand-over to a thread that runs the jobs in order. */
#include "writer.h"

#include "runtime.h"

static void *run_jobs(void *arg)
{
    writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->job && !w->stop) pthread_cond_wait(&w->changed, &w->lock);
        if (!w->job) break;
        write_fn job = w->job;
        void *job_arg = w->arg;
        pthread_mutex_unlock(&w->lock);
        double t0 = rt_now();
        job(w->file, job_arg);
        pthread_mutex_lock(&w->lock);
        w->write_s += rt_now() - t0;
        w->job = NULL;
        pthread_cond_broadcast(&w->changed);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

void writer_start(writer *w, hid_t file)
{
    *w = (writer){.file = file};
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
    if (pthread_create(&w->thread, NULL, run_jobs, w) != 0) sl_fatal("cannot start the thread that writes the file");
}

static void wait_idle(writer *w)
{
    double t0 = rt_now();
    while (w->job) pthread_cond_wait(&w->changed, &w->lock);
    w->wait_s += rt_now() - t0;
}

void writer_submit(writer *w, write_fn job, void *arg)
{
    pthread_mutex_lock(&w->lock);
    wait_idle(w);
    w->job = job, w->arg = arg;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
}

void writer_finish(writer *w)
{
    pthread_mutex_lock(&w->lock);
    wait_idle(w);
    w->stop = 1;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->changed);
}
