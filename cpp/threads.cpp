// fastgd's worker threads (see parallel_run in kernels.hpp).
//
// Compiled without any instruction-set flags: the kernels reach it only through two plain
// functions, so no standard-library template is shared with the per-instruction-set builds.
//
// Workers are created on first use and live for the rest of the process. Between tasks a worker
// spins briefly (a mini-batch's work is tens of microseconds, far shorter than waking a sleeping
// thread), then sleeps on a condition variable.
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels.hpp"

namespace fastgd {
namespace {

// Set only by pool_check: how long a worker sleeps between reading a call and taking its tasks,
// standing in for a worker that loses the processor there.
std::atomic<int> worker_pause_us{0};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

class Pool {
   public:
    explicit Pool(int threads) : pid_(getpid()) {
        for (int k = 1; k < threads; ++k) workers_.emplace_back([this] { work(); });
        for (auto& t : workers_) t.detach();  // never joined: the pool lives as long as the process
    }

    bool owned_by_this_process() const { return pid_ == getpid(); }

    // False if another call is using the pool (the caller then runs its tasks itself).
    bool run(int tasks, void (*fn)(void*, int), void* ctx) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        unsigned long g;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            fn_ = fn;
            ctx_ = ctx;
            tasks_ = tasks;
            done_.store(0, std::memory_order_relaxed);
            g = generation_.fetch_add(1, std::memory_order_release) + 1;
            claim_.store(tagged(g, 1), std::memory_order_release);  // task 0 is the caller's
        }
        wake_.notify_all();
        fn(ctx, 0);
        done_.fetch_add(1, std::memory_order_release);
        drain(g, fn, ctx, tasks);
        while (done_.load(std::memory_order_acquire) < tasks) cpu_relax();
        return true;
    }

   private:
    // A claim: the call's generation (its low 32 bits) and the next task to take.
    static uint64_t tagged(unsigned long generation, int task) {
        return (static_cast<uint64_t>(generation & 0xffffffffUL) << 32) | static_cast<uint32_t>(task);
    }

    // Runs the tasks of call `generation` that no thread has taken yet. A task is taken only while
    // its call is the current one: a worker that read one call's fn, ctx and tasks and then lost
    // the processor until the next call had begun takes nothing (it used to take a task of the
    // next call and either run the finished call's fn on it or, with fewer tasks, skip it, which
    // left that call waiting for it for ever).
    void drain(unsigned long generation, void (*fn)(void*, int), void* ctx, int tasks) {
        for (;;) {
            uint64_t c = claim_.load(std::memory_order_acquire);
            const int t = static_cast<int>(c & 0xffffffffu);
            if (c != tagged(generation, t) || t >= tasks) return;
            if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire))
                continue;
            fn(ctx, t);
            done_.fetch_add(1, std::memory_order_release);
        }
    }

    void work() {
        unsigned long seen = 0;
        for (;;) {
            const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
            while (generation_.load(std::memory_order_acquire) == seen) {
                if (std::chrono::steady_clock::now() < spin_until) {
                    for (int k = 0; k < 64; ++k) cpu_relax();
                    continue;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            }
            void (*fn)(void*, int);
            void* ctx;
            int tasks;
            {
                std::lock_guard<std::mutex> lock(mutex_);  // the call's generation, fn, ctx and tasks together
                seen = generation_.load(std::memory_order_relaxed);
                fn = fn_;
                ctx = ctx_;
                tasks = tasks_;
            }
            if (const int us = worker_pause_us.load(std::memory_order_relaxed))
                std::this_thread::sleep_for(std::chrono::microseconds(us));
            drain(seen, fn, ctx, tasks);
        }
    }

    const pid_t pid_;
    std::vector<std::thread> workers_;
    std::mutex busy_, mutex_;
    std::condition_variable wake_;
    std::atomic<unsigned long> generation_{0};
    std::atomic<uint64_t> claim_{0};
    std::atomic<int> done_{0};
    void (*fn_)(void*, int) = nullptr;
    void* ctx_ = nullptr;
    int tasks_ = 0;
};

std::mutex pool_mutex;
Pool* pool = nullptr;  // leaked on purpose: detached workers may still be using it at exit
thread_local bool serial_only = false;  // see SerialScope

}  // namespace

SerialScope::SerialScope(bool serial) : previous_(serial_only) { serial_only = serial_only || serial; }
SerialScope::~SerialScope() { serial_only = previous_; }

namespace {

// The CPUs this process may run on: its affinity mask (taskset, a container's cpuset, a batch
// scheduler's allocation) where the system has one, else every CPU. Two threads on one allowed CPU
// would take turns and spin for each other (batch 100 went from 0.032 to 0.072 s per epoch).
int available_cpus() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace

int thread_count() {
    static const int count = [] {
        const char* env = std::getenv("FASTGD_NUM_THREADS");
        long n = env && *env ? std::strtol(env, nullptr, 10) : static_cast<long>(available_cpus());
        if (n < 1) n = 1;
        if (n > 64) n = 64;
        return static_cast<int>(n);
    }();
    return count;
}

namespace {
// parallel_run calls that asked for threads but run on their calling thread (the pool busy, or a
// SerialScope) at this moment.
std::atomic<int> serial_callers{0};
}  // namespace

bool threads_contended() { return serial_callers.load(std::memory_order_relaxed) > 0; }

void parallel_run(int tasks, void (*fn)(void*, int), void* ctx) {
    const bool wants_threads = tasks > 1 && thread_count() > 1;
    if (wants_threads && !serial_only) {
        Pool* p;
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            // After fork() the child has none of the parent's workers: start its own.
            if (!pool || !pool->owned_by_this_process()) pool = new Pool(thread_count());
            p = pool;
        }
        if (p->run(tasks, fn, ctx)) return;
    }
    if (wants_threads) serial_callers.fetch_add(1, std::memory_order_relaxed);
    for (int t = 0; t < tasks; ++t) fn(ctx, t);
    if (wants_threads) serial_callers.fetch_sub(1, std::memory_order_relaxed);
}

namespace {
thread_local long team_alone = 0, team_phases = 0;
}  // namespace

void note_team_epoch(long alone, long phases) {
    team_alone = alone;
    team_phases = phases;
}

void last_team_epoch(long* alone, long* phases) {
    *alone = team_alone;
    *phases = team_phases;
}

namespace {

constexpr int kCheckMaxTasks = 4;

// One call of pool_check: how often each task ran, and whether the call had returned.
struct CheckCall {
    std::atomic<int> runs[kCheckMaxTasks] = {};
    std::atomic<bool> returned{false};
    std::atomic<long>* late = nullptr;
    std::atomic<long>* on_workers = nullptr;
    std::thread::id caller;
};

void check_task(void* ctx, int task) {
    auto* call = static_cast<CheckCall*>(ctx);
    if (call->returned.load(std::memory_order_acquire)) call->late->fetch_add(1, std::memory_order_relaxed);
    if (std::this_thread::get_id() != call->caller) call->on_workers->fetch_add(1, std::memory_order_relaxed);
    for (int k = 0; k < 100; ++k) cpu_relax();  // a few microseconds, so that the workers take part
    call->runs[task].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

long pool_check(int calls, int pause_us, long* tasks_on_workers) {
    *tasks_on_workers = 0;
    if (calls < 0 || pause_us < 0) return -1;
    struct Restore {
        ~Restore() { worker_pause_us.store(0, std::memory_order_relaxed); }
    } restore;
    worker_pause_us.store(pause_us, std::memory_order_relaxed);
    std::atomic<long> late{0}, on_workers{0};
    // Every call's record lives until the end, so that a task run late is counted, not undefined.
    std::vector<std::unique_ptr<CheckCall>> records;
    records.reserve(static_cast<size_t>(calls));
    long errors = 0;
    for (int k = 0; k < calls; ++k) {
        const int tasks = 2 + k % (kCheckMaxTasks - 1);  // 2, 3, 4, 2, ...: the counts differ from call to call
        records.push_back(std::make_unique<CheckCall>());
        CheckCall& call = *records.back();
        call.late = &late;
        call.on_workers = &on_workers;
        call.caller = std::this_thread::get_id();
        parallel_run(tasks, check_task, &call);
        for (int t = 0; t < tasks; ++t) errors += call.runs[t].load(std::memory_order_relaxed) != 1;
        call.returned.store(true, std::memory_order_release);
    }
    // A worker that took a task late runs it after its pause: wait for that before counting.
    std::this_thread::sleep_for(std::chrono::microseconds(4L * pause_us + 2000));
    *tasks_on_workers = on_workers.load(std::memory_order_relaxed);
    return errors + late.load(std::memory_order_relaxed);
}

}  // namespace fastgd
