// softmax-dispatch: the compiled NumPy kernels' threads.
//
// One pool of worker threads (started on first use, as many as the largest thread count
// asked for, minus the caller) shares a call's work, cut into chunks of units. The
// caller works too; it waits for the chunks to be done, never for a worker to wake up:
// a worker that wakes late (a descheduled vCPU) finds nothing left and goes back to
// sleep. Workers spin for a short while after a call (SPIN_US) so that the next call
// needs no wake-up, then sleep on a condition variable.
//
// A chunk's result never depends on which thread computed it, so the thread count
// changes no bit. A call that finds the pool busy (another Python thread is using it)
// runs on its own thread: there are never more threads running kernels than the pool
// plus the callers. After fork() the child starts with no pool.
#pragma once

#include <cstdint>

namespace sdpool {

// fn(ctx, chunk) for every chunk in [0, chunks), on up to `threads` threads (the caller
// included). Runs with the GIL released by the caller.
void run(void (*fn)(void* ctx, int64_t chunk), void* ctx, int64_t chunks, int threads);

// How long idle workers spin before they sleep, in microseconds.
constexpr int SPIN_US = 50;

}  // namespace sdpool
