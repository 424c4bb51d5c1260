#ifndef MCE_WORKERS_H
#define MCE_WORKERS_H

/// A persistent pool of worker threads for short data-parallel loops. The engine runs ~25 parallel
/// regions per transformer block; waking sleeping threads for each (as Dispatch does) costs tens of
/// microseconds, so workers spin briefly between regions before they sleep.

typedef void (*mce_task_fn)(void *ctx, long index);

/// Calls fn(ctx, i) for i in [0, count) on the pool (the calling thread takes part) and returns when all
/// calls are done. Nested calls from inside a task run serially on the calling thread.
void mce_workers_run(long count, mce_task_fn fn, void *ctx);

/// Number of threads that take part in a region (workers + the caller).
int mce_workers_count(void);

#endif
