// fastgd's compute kernels: the public C++ interface (no pybind11 here).
//
// The same kernel source (kernels_impl.hpp) is compiled once per instruction set (a baseline
// build, AVX2+FMA and AVX-512) into its own namespace; dispatch.cpp picks one at run time from
// what the CPU supports, so a wheel never needs -march=native.
//
// Parameter layout ("theta", one flat vector, the same in every fastgd backend): for each layer
// l = 0 .. n_layers-1, the weight matrix of shape (sizes[l], sizes[l+1]) stored row-major (the
// transpose of the book's (n_out, n_in) matrix, so a batch of rows computes Z = X W + b), then the
// bias vector of length sizes[l+1].
#pragma once

#include <cstdint>

namespace fastgd {

enum Activation : int { kSigmoid = 0, kTanh = 1, kRelu = 2 };
// The cost fixes the output layer: sigmoid outputs for quadratic and cross-entropy, softmax
// outputs for log-likelihood.
enum Cost : int { kQuadratic = 0, kCrossEntropy = 1, kLogLikelihood = 2 };

// Return codes of the kernels.
// kNonFinite (forward, predict, cost): the results are all computed, but some row's first-layer
// weighted input is not finite: X holds NaN or infinity (or theta does, or a sum overflowed).
enum Status : int { kOk = 0, kStopped = 1, kNoMemory = 2, kNonFinite = 3 };

struct Model {
    int n_layers;          // number of weight layers, len(sizes) - 1 >= 1
    const int64_t* sizes;  // n_layers + 1 layer widths, each >= 1
    int activation;        // Activation of the hidden layers
    int cost;              // Cost (fixes the output activation)
};

// Called between mini-batches of a long call; returning true stops the call after the
// mini-batch in progress (the parameters are then consistent: every step is whole).
using StopFn = bool (*)(void* ctx);

// One instruction set's kernels. Arguments are trusted (bindings.cpp checks them): arrays are
// C-contiguous, row indices and labels are in range, n >= 1, batch >= 1.
//
//   forward      X (n, sizes[0]) -> out (n, sizes[L]) output activations; out overwritten.
//   predict      X (n, sizes[0]) -> labels (n,) argmax of the outputs (first maximum on ties).
//   cost         mean over the n rows of each row's cost -> *mean_cost.
//   grad         out (theta's length) overwritten with the gradient of the mean cost over the
//                n rows; *mean_cost set to the mean cost.
//   train_epoch  one epoch of mini-batch gradient descent over the rows order[0..n_order), in
//                mini-batches of `batch` consecutive entries (the last may be shorter); theta
//                (and velocity when momentum != 0) updated in place; *mean_cost set to the mean of
//                the rows' costs computed in their mini-batch's forward pass, before its step,
//                and *n_correct to the number of those rows whose largest output is their label.
template <class T>
struct Kernels {
    const char* isa;
    int (*forward)(const Model&, const T* theta, const T* X, int64_t n, T* out);
    int (*predict)(const Model&, const T* theta, const T* X, int64_t n, int64_t* labels);
    int (*cost)(const Model&, const T* theta, const T* X, const int64_t* y, int64_t n,
                double* mean_cost);
    int (*grad)(const Model&, const T* theta, const T* X, const int64_t* y, int64_t n, T* out,
                double* mean_cost);
    int (*train_epoch)(const Model&, T* theta, const T* X, const int64_t* y, const int64_t* order,
                       int64_t n_order, int64_t batch, double eta, double momentum, T* velocity,
                       double l2, StopFn stop, void* stop_ctx, double* mean_cost, int64_t* n_correct);
};

// Runs fn(ctx, t) for every task t in [0, tasks), on the calling thread and on fastgd's worker
// threads (threads.cpp), and returns when all are done. Task 0 always runs on the calling thread,
// first; which thread runs each other task is not fixed, so each task writes only its own outputs.
// A call made while another call is using the workers runs all its tasks on the calling thread,
// in order.
void parallel_run(int tasks, void (*fn)(void* ctx, int task), void* ctx);
// While one of these is alive (with serial = true), parallel_run called on this thread runs every
// task on it: for threads that are themselves one of several workers (population training), so
// that they do not compete for the worker pool. Results are the same either way.
class SerialScope {
   public:
    explicit SerialScope(bool serial);
    ~SerialScope();
    SerialScope(const SerialScope&) = delete;
    SerialScope& operator=(const SerialScope&) = delete;

   private:
    bool previous_;
};
// True while some parallel_run call that asked for several tasks runs them all on its calling
// thread (another call has the workers, or a SerialScope): that thread wants a core too, so a
// worker that has nothing to do should leave rather than spin.
bool threads_contended();
// A check of the worker pool for the tests: `calls` parallel_run calls of 2-4 tasks each, with every
// worker sleeping pause_us microseconds between reading a call and taking its tasks. Returns the
// number of faults (a task run other than once, or after its call returned; -1 for bad arguments)
// and sets *tasks_on_workers to the number of tasks the workers ran. A fault that leaves a task to
// nobody makes it hang instead: run it under a timeout.
long pool_check(int calls, int pause_us, long* tasks_on_workers);
// The calling thread's last epoch trained by a team (see team_sample in kernels_impl.hpp): how many
// of its phases the leader ran alone, out of how many. Noted by the kernels, read by the tests.
void note_team_epoch(long alone, long phases);
void last_team_epoch(long* alone, long* phases);
// Threads parallel_run uses: $FASTGD_NUM_THREADS if set, else the number of CPUs (at most 64).
int thread_count();

// The kernels for the best instruction set this CPU supports (or the one named by
// $FASTGD_ISA: "baseline", "avx2" or "avx512", if it is built and supported).
const Kernels<float>& kernels_f32();
const Kernels<double>& kernels_f64();

// Instruction sets compiled into this build, and which of them this CPU can run.
const char* const* built_isas(int* count);
bool isa_supported(const char* name);
const char* active_isa();

}  // namespace fastgd
