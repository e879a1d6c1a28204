// softmax-dispatch: the compiled kernels' thread pool (see pool.h).
//
// A call publishes (fn, ctx, chunks) under a new epoch; chunks are taken with a
// compare-and-swap on one 64-bit ticket, (epoch << 32) | next chunk, so a worker holding
// an older epoch can never take a chunk of a newer call, and a worker reads a call's
// fields only between two equal reads of the epoch (a sequence lock).
#include "pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SD_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define SD_PAUSE() __asm__ __volatile__("yield")
#else
#define SD_PAUSE() ((void)0)
#endif

namespace sdpool {
namespace {

struct Pool {
    std::mutex lock;  // guards sleepers and the condition variable
    std::condition_variable wake;
    int sleepers = 0;
    std::atomic<bool> busy{false};  // a call owns the pool
    std::atomic<uint64_t> epoch{0};
    std::atomic<uint64_t> ticket{0};
    std::atomic<int64_t> done{0};
    // the current call (written before its epoch is published)
    std::atomic<void (*)(void*, int64_t)> fn{nullptr};
    std::atomic<void*> ctx{nullptr};
    std::atomic<int64_t> chunks{0};
    int workers = 0;  // started (guarded by `busy`)
};

// Never destroyed: workers may still be sleeping on it when the process exits.
Pool* g_pool = new Pool;

// Take and run chunks of `epoch`'s call until none is left (or a newer call started).
void work(Pool* p, uint64_t epoch, void (*fn)(void*, int64_t), void* ctx, int64_t chunks) {
    uint64_t t = p->ticket.load(std::memory_order_acquire);
    for (;;) {
        if ((t >> 32) != (epoch & 0xffffffffu)) return;
        const int64_t c = (int64_t)(t & 0xffffffffu);
        if (c >= chunks) return;
        if (!p->ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
        fn(ctx, c);
        p->done.fetch_add(1, std::memory_order_acq_rel);
        t = p->ticket.load(std::memory_order_acquire);
    }
}

void worker_loop(Pool* p) {
    uint64_t seen = p->epoch.load(std::memory_order_acquire);
    for (;;) {
        uint64_t e = p->epoch.load(std::memory_order_acquire);
        if (e == seen) {  // spin a little, then sleep until a new call
            const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(SPIN_US);
            while ((e = p->epoch.load(std::memory_order_acquire)) == seen &&
                   std::chrono::steady_clock::now() < until)
                for (int i = 0; i < 64; ++i) SD_PAUSE();
            if (e == seen) {
                std::unique_lock<std::mutex> hold(p->lock);
                ++p->sleepers;
                p->wake.wait(hold, [&] { return p->epoch.load(std::memory_order_acquire) != seen; });
                --p->sleepers;
                e = p->epoch.load(std::memory_order_acquire);
            }
        }
        seen = e;
        // the call's fields, read between two equal reads of the epoch
        auto fn = p->fn.load(std::memory_order_acquire);
        void* ctx = p->ctx.load(std::memory_order_acquire);
        const int64_t chunks = p->chunks.load(std::memory_order_acquire);
        if (p->epoch.load(std::memory_order_acquire) != e || fn == nullptr) continue;
        work(p, e, fn, ctx, chunks);
    }
}

#if defined(__unix__) || defined(__APPLE__)
void after_fork_in_child() { g_pool = new Pool; }  // the parent's workers are not here
struct AtFork {
    AtFork() { pthread_atfork(nullptr, nullptr, after_fork_in_child); }
} g_at_fork;
#endif

}  // namespace

void run(void (*fn)(void*, int64_t), void* ctx, int64_t chunks, int threads) {
    Pool* p = g_pool;
    bool expected = false;
    if (threads <= 1 || chunks <= 1 || !p->busy.compare_exchange_strong(expected, true)) {
        for (int64_t c = 0; c < chunks; ++c) fn(ctx, c);  // alone (or the pool is busy)
        return;
    }
    try {
        while (p->workers < threads - 1) {
            std::thread(worker_loop, p).detach();
            ++p->workers;
        }
    } catch (...) {  // no more threads: those that started share the work
    }
    const uint64_t e = p->epoch.load(std::memory_order_relaxed) + 1;
    p->fn.store(fn, std::memory_order_relaxed);
    p->ctx.store(ctx, std::memory_order_relaxed);
    p->chunks.store(chunks, std::memory_order_relaxed);
    p->done.store(0, std::memory_order_relaxed);
    p->ticket.store((e & 0xffffffffu) << 32, std::memory_order_release);
    p->epoch.store(e, std::memory_order_release);
    {
        std::lock_guard<std::mutex> hold(p->lock);
        if (p->sleepers) p->wake.notify_all();
    }
    work(p, e, fn, ctx, chunks);
    while (p->done.load(std::memory_order_acquire) < chunks) SD_PAUSE();
    // closed: a worker still holding this epoch (or reading the next call's fields
    // before that call is published) finds no chunk to take
    p->ticket.store(((e & 0xffffffffu) << 32) | 0xffffffffu, std::memory_order_release);
    p->fn.store(nullptr, std::memory_order_release);
    p->busy.store(false, std::memory_order_release);
}

}  // namespace sdpool
