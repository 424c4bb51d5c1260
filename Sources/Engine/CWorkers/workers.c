#define _GNU_SOURCE
#include "workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

// How long an idle worker spins before sleeping: long enough to bridge the serial work between two
// parallel regions of a forward pass, short enough not to burn a core for long after a run.
#define SPIN_ITERATIONS 200000

// One parallel region. It lives on the caller's stack; `pool.current` points at it while it runs, and the
// caller returns only after every worker has let go of it (`pool.active` back to 0), so a worker that wakes
// late can never take an index of a region that has ended or of the next one (each region has its own
// counters).
typedef struct {
    mce_task_fn fn;
    void *ctx;
    long count;
    _Atomic long next;            // next index to take
    _Atomic long done;            // indices finished
} job_t;

static struct {
    int threads;                  // workers + caller
    pthread_t *ids;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    _Atomic unsigned long generation;   // bumped to publish a job
    _Atomic(job_t *) current;     // the running region, or NULL
    _Atomic int active;           // workers between announcing themselves and letting go of `current`
    _Atomic int sleeping;
    pthread_mutex_t run_lock;     // one region at a time across caller threads
} pool;

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static _Thread_local int inside_task = 0;

static void run_job(job_t *job) {
    long i;
    inside_task = 1;
    while ((i = atomic_fetch_add(&job->next, 1)) < job->count) {
        job->fn(job->ctx, i);
        atomic_fetch_add_explicit(&job->done, 1, memory_order_release);
    }
    inside_task = 0;
}

static void *worker_main(void *arg) {
    (void)arg;
    unsigned long seen = atomic_load(&pool.generation);
    for (;;) {
        int spins = 0;
        unsigned long g;
        while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERATIONS) { cpu_relax(); continue; }
            pthread_mutex_lock(&pool.mutex);
            atomic_fetch_add(&pool.sleeping, 1);
            while ((g = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.mutex);
            atomic_fetch_sub(&pool.sleeping, 1);
            pthread_mutex_unlock(&pool.mutex);
            break;
        }
        seen = g;
        // Announce first, then look (sequentially consistent, pairing with the caller's clear-then-wait):
        // either the caller waits for this worker, or this worker sees the region gone.
        atomic_fetch_add(&pool.active, 1);
        job_t *job = atomic_load(&pool.current);
        if (job) run_job(job);
        atomic_fetch_sub(&pool.active, 1);
    }
    return NULL;
}

static void pool_init(void) {
    int n = 0;
    const char *env = getenv("MCE_THREADS");
    if (env) n = atoi(env);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    pool.threads = n;
    pthread_mutex_init(&pool.mutex, NULL);
    pthread_mutex_init(&pool.run_lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.ids = calloc((size_t)n, sizeof(pthread_t));
    for (int t = 1; t < n; t++) {
        pthread_create(&pool.ids[t], NULL, worker_main, NULL);
        pthread_detach(pool.ids[t]);
    }
}

int mce_workers_count(void) {
    pthread_once(&pool_once, pool_init);
    return pool.threads;
}

void mce_workers_run(long count, mce_task_fn fn, void *ctx) {
    if (count <= 0) return;
    pthread_once(&pool_once, pool_init);
    if (count == 1 || pool.threads == 1 || inside_task) {
        for (long i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    job_t job = {.fn = fn, .ctx = ctx, .count = count};
    atomic_init(&job.next, 0);
    atomic_init(&job.done, 0);
    pthread_mutex_lock(&pool.run_lock);
    atomic_store(&pool.current, &job);
    atomic_fetch_add(&pool.generation, 1);
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.mutex);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mutex);
    }
    run_job(&job);
    while (atomic_load_explicit(&job.done, memory_order_acquire) < count) cpu_relax();
    atomic_store(&pool.current, NULL);
    while (atomic_load(&pool.active) > 0) cpu_relax();
    pthread_mutex_unlock(&pool.run_lock);
}
