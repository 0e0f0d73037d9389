// Python bindings of the kernels (module fastgd._core).
//
// This file only checks arguments, releases the GIL and calls the kernels. Every array is
// taken as a plain py::array and checked here (dtype, shape, contiguity, writeability, ranges of
// indices and labels), never converted: a converted copy of an array the kernel writes would
// silently lose the update, and a copy of a read-only input would hide a costly conversion in a
// loop. The Python layer (fastgd.backends._cpp) does any conversion, once, before it calls in.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "kernels.hpp"

namespace py = pybind11;

namespace {

using fastgd::Model;

[[noreturn]] void fail(const char* fn, const std::string& what) {
    throw py::value_error(std::string("fastgd._core.") + fn + ": " + what);
}

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t k = 0; k < a.ndim(); ++k) {
        if (k) s += ", ";
        s += std::to_string(a.shape(k));
    }
    return s + (a.ndim() == 1 ? ",)" : ")");
}

bool is_c_contiguous(const py::array& a) { return (a.flags() & py::array::c_style) != 0; }

// The float dtype of theta: 4 (float32) or 8 (float64).
int float_kind(const char* fn, const py::array& theta) {
    if (theta.dtype().is(py::dtype::of<float>())) return 4;
    if (theta.dtype().is(py::dtype::of<double>())) return 8;
    fail(fn, "theta must have dtype float32 or float64, got " + std::string(py::str(theta.dtype())));
}

void check_array(const char* fn, const char* name, const py::array& a, const py::dtype& dt, py::ssize_t ndim,
                 bool writeable) {
    if (!a.dtype().is(dt))
        fail(fn, std::string(name) + " must have dtype " + std::string(py::str(dt)) + ", got " +
                     std::string(py::str(a.dtype())));
    if (a.ndim() != ndim)
        fail(fn, std::string(name) + " must be " + std::to_string(ndim) + "-dimensional, got shape " + shape_str(a));
    if (!is_c_contiguous(a)) fail(fn, std::string(name) + " must be C-contiguous");
    if (writeable && !a.writeable()) fail(fn, std::string(name) + " is read-only but is written in place");
}

bool overlap(const py::array& a, const py::array& b) {
    const char* a0 = static_cast<const char*>(a.data());
    const char* b0 = static_cast<const char*>(b.data());
    const char* a1 = a0 + a.nbytes();
    const char* b1 = b0 + b.nbytes();
    return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b1 && b0 < a1;
}

// Checked network description.
struct Net {
    Model model{};
    int64_t n_params = 0;
    int64_t n_in = 0, n_out = 0;
};

// The network described by sizes and the codes (its parameter count in n_params).
Net check_model(const char* fn, const py::array& sizes, int activation, int cost) {
    check_array(fn, "sizes", sizes, py::dtype::of<int64_t>(), 1, false);
    const py::ssize_t L = sizes.shape(0) - 1;
    if (L < 1) fail(fn, "sizes must list at least 2 layer widths, got " + std::to_string(sizes.shape(0)));
    if (L > std::numeric_limits<int>::max() / 4) fail(fn, "too many layers");
    const auto* s = static_cast<const int64_t*>(sizes.data());
    int64_t count = 0;
    for (py::ssize_t l = 0; l <= L; ++l) {
        if (s[l] < 1) fail(fn, "sizes must be positive, got sizes[" + std::to_string(l) + "] = " + std::to_string(s[l]));
        if (s[l] > (int64_t(1) << 24)) fail(fn, "sizes[" + std::to_string(l) + "] = " + std::to_string(s[l]) + " is too large");
    }
    for (py::ssize_t l = 0; l < L; ++l) {
        count += s[l] * s[l + 1] + s[l + 1];
        if (count > (int64_t(1) << 40)) fail(fn, "the network has too many parameters");
    }
    if (activation < 0 || activation > 2)
        fail(fn, "activation code must be 0 (sigmoid), 1 (tanh) or 2 (relu), got " + std::to_string(activation));
    if (cost < 0 || cost > 2)
        fail(fn, "cost code must be 0 (quadratic), 1 (cross-entropy) or 2 (log-likelihood), got " + std::to_string(cost));
    Net net;
    net.model = Model{static_cast<int>(L), s, activation, cost};
    net.n_params = count;
    net.n_in = s[0];
    net.n_out = s[L];
    return net;
}

Net check_net(const char* fn, const py::array& theta, const py::array& sizes, int activation, int cost) {
    const Net net = check_model(fn, sizes, activation, cost);
    float_kind(fn, theta);
    check_array(fn, "theta", theta, theta.dtype(), 1, false);
    if (theta.shape(0) != net.n_params)
        fail(fn, "theta has " + std::to_string(theta.shape(0)) + " elements but sizes " +
                     "describe a network with " + std::to_string(net.n_params) + " parameters");
    return net;
}

int64_t check_X(const char* fn, const Net& net, const py::array& theta, const py::array& X) {
    check_array(fn, "X", X, theta.dtype(), 2, false);
    if (X.shape(1) != net.n_in)
        fail(fn, "X has shape " + shape_str(X) + " but the network takes " + std::to_string(net.n_in) + " inputs");
    if (X.shape(0) < 1) fail(fn, "X has no rows");
    return X.shape(0);
}

void check_labels(const char* fn, const Net& net, const py::array& y, int64_t n) {
    check_array(fn, "y", y, py::dtype::of<int64_t>(), 1, false);
    if (y.shape(0) != n)
        fail(fn, "y has " + std::to_string(y.shape(0)) + " labels but X has " + std::to_string(n) + " rows");
    const auto* p = static_cast<const int64_t*>(y.data());
    for (int64_t k = 0; k < n; ++k)
        if (p[k] < 0 || p[k] >= net.n_out)
            fail(fn, "y[" + std::to_string(k) + "] = " + std::to_string(p[k]) + " is not a class label in [0, " +
                         std::to_string(net.n_out) + ")");
}

void check_out(const char* fn, const char* name, const py::array& out, const py::array& theta) {
    check_array(fn, name, out, theta.dtype(), 1, true);
    if (out.shape(0) != theta.shape(0))
        fail(fn, std::string(name) + " has " + std::to_string(out.shape(0)) + " elements but theta has " +
                     std::to_string(theta.shape(0)));
    if (overlap(out, theta)) fail(fn, std::string(name) + " must not share memory with theta");
}

void check_status(int status) {
    if (status == fastgd::kNoMemory) throw std::bad_alloc();
}

// forward, predict, cost: kNonFinite becomes fastgd.errors.DataError (a ValueError). The kernels
// find it on the way (a first-layer weighted input that is NaN or infinite), so callers need no
// separate pass over X looking for NaN; fastgd.network then finds which entry it was.
void check_forward_status(const char* fn, int status) {
    check_status(status);
    if (status == fastgd::kNonFinite) {
        const py::object error = py::module_::import("fastgd.errors").attr("DataError");
        PyErr_SetString(error.ptr(), (std::string("fastgd._core.") + fn +
                                      ": a weighted input of the first layer is not finite: X (or theta) holds NaN "
                                      "or infinity, or values so large that the sum overflows")
                                         .c_str());
        throw py::error_already_set();
    }
}

// Stop callback for long calls: runs Python's signal handlers (Ctrl-C raises KeyboardInterrupt
// there) with the GIL briefly re-acquired. Returns true when a handler raised.
bool python_signal_pending(void*) {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

template <class T>
const fastgd::Kernels<T>& kernels();
template <>
const fastgd::Kernels<float>& kernels<float>() {
    return fastgd::kernels_f32();
}
template <>
const fastgd::Kernels<double>& kernels<double>() {
    return fastgd::kernels_f64();
}

template <class T>
py::array forward_t(const Net& net, const py::array& theta, const py::array& X, int64_t n, bool labels) {
    const T* th = static_cast<const T*>(theta.data());
    const T* x = static_cast<const T*>(X.data());
    int status;
    if (labels) {
        py::array_t<int64_t> out(n);
        int64_t* o = out.mutable_data();
        {
            py::gil_scoped_release nogil;  // the kernel touches no Python object
            status = kernels<T>().predict(net.model, th, x, n, o);
        }
        check_forward_status("predict", status);
        return std::move(out);
    }
    py::array_t<T> out({n, net.n_out});
    T* o = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        status = kernels<T>().forward(net.model, th, x, n, o);
    }
    check_forward_status("forward", status);
    return std::move(out);
}

py::array forward(const py::array& theta, const py::array& sizes, int activation, int cost, const py::array& X) {
    const Net net = check_net("forward", theta, sizes, activation, cost);
    const int64_t n = check_X("forward", net, theta, X);
    return float_kind("forward", theta) == 4 ? forward_t<float>(net, theta, X, n, false)
                                             : forward_t<double>(net, theta, X, n, false);
}

py::array predict(const py::array& theta, const py::array& sizes, int activation, int cost, const py::array& X) {
    const Net net = check_net("predict", theta, sizes, activation, cost);
    const int64_t n = check_X("predict", net, theta, X);
    return float_kind("predict", theta) == 4 ? forward_t<float>(net, theta, X, n, true)
                                             : forward_t<double>(net, theta, X, n, true);
}

template <class T>
double cost_t(const Net& net, const py::array& theta, const py::array& X, const py::array& y, int64_t n) {
    double c = 0;
    int status;
    {
        py::gil_scoped_release nogil;
        status = kernels<T>().cost(net.model, static_cast<const T*>(theta.data()), static_cast<const T*>(X.data()),
                                   static_cast<const int64_t*>(y.data()), n, &c);
    }
    check_forward_status("cost", status);
    return c;
}

double cost(const py::array& theta, const py::array& sizes, int activation, int cost_code, const py::array& X,
            const py::array& y) {
    const Net net = check_net("cost", theta, sizes, activation, cost_code);
    const int64_t n = check_X("cost", net, theta, X);
    check_labels("cost", net, y, n);
    return float_kind("cost", theta) == 4 ? cost_t<float>(net, theta, X, y, n) : cost_t<double>(net, theta, X, y, n);
}

template <class T>
double grad_t(const Net& net, const py::array& theta, const py::array& X, const py::array& y, int64_t n,
              py::array& out) {
    double c = 0;
    int status;
    T* o = static_cast<T*>(out.mutable_data());
    {
        py::gil_scoped_release nogil;
        status = kernels<T>().grad(net.model, static_cast<const T*>(theta.data()), static_cast<const T*>(X.data()),
                                   static_cast<const int64_t*>(y.data()), n, o, &c);
    }
    check_status(status);
    return c;
}

double grad(const py::array& theta, const py::array& sizes, int activation, int cost_code, const py::array& X,
            const py::array& y, py::array out) {
    const Net net = check_net("grad", theta, sizes, activation, cost_code);
    const int64_t n = check_X("grad", net, theta, X);
    check_labels("grad", net, y, n);
    check_out("grad", "out", out, theta);
    return float_kind("grad", theta) == 4 ? grad_t<float>(net, theta, X, y, n, out)
                                          : grad_t<double>(net, theta, X, y, n, out);
}

template <class T>
py::tuple train_epoch_t(const Net& net, py::array& theta, const py::array& X, const py::array& y, const py::array& order,
                     int64_t batch, double eta, double momentum, T* velocity, double l2) {
    double c = 0;
    int64_t correct = 0;
    int status;
    T* th = static_cast<T*>(theta.mutable_data());
    {
        py::gil_scoped_release nogil;  // re-acquired only inside python_signal_pending
        status = kernels<T>().train_epoch(net.model, th, static_cast<const T*>(X.data()),
                                          static_cast<const int64_t*>(y.data()),
                                          static_cast<const int64_t*>(order.data()), order.shape(0), batch, eta,
                                          momentum, velocity, l2, python_signal_pending, nullptr, &c, &correct);
    }
    check_status(status);
    if (status == fastgd::kStopped) throw py::error_already_set();
    return py::make_tuple(c, correct);
}

py::tuple train_epoch(py::array theta, const py::array& sizes, int activation, int cost_code, const py::array& X,
                   const py::array& y, const py::array& order, int64_t batch_size, double eta, double momentum,
                   const py::object& velocity, double l2) {
    const char* fn = "train_epoch";
    const Net net = check_net(fn, theta, sizes, activation, cost_code);
    if (!theta.writeable()) fail(fn, "theta is read-only but is updated in place");
    const int64_t n = check_X(fn, net, theta, X);
    check_labels(fn, net, y, n);
    check_array(fn, "order", order, py::dtype::of<int64_t>(), 1, false);
    if (order.shape(0) < 1) fail(fn, "order is empty");
    const auto* o = static_cast<const int64_t*>(order.data());
    for (py::ssize_t k = 0; k < order.shape(0); ++k)
        if (o[k] < 0 || o[k] >= n)
            fail(fn, "order[" + std::to_string(k) + "] = " + std::to_string(o[k]) + " is not a row of X (0 <= row < " +
                         std::to_string(n) + ")");
    if (batch_size < 1) fail(fn, "batch_size must be at least 1, got " + std::to_string(batch_size));
    if (!std::isfinite(eta)) fail(fn, "eta must be finite");
    if (!std::isfinite(momentum) || momentum < 0 || momentum >= 1) fail(fn, "momentum must be in [0, 1)");
    if (!std::isfinite(l2) || l2 < 0) fail(fn, "l2 must be finite and non-negative");
    py::array v;
    if (momentum != 0) {
        if (velocity.is_none()) fail(fn, "velocity is required when momentum is not 0");
        v = py::reinterpret_borrow<py::array>(velocity);
        if (!py::isinstance<py::array>(velocity)) fail(fn, "velocity must be a numpy array");
        check_out(fn, "velocity", v, theta);
    }
    if (float_kind(fn, theta) == 4)
        return train_epoch_t<float>(net, theta, X, y, order, batch_size, eta, momentum,
                                    momentum != 0 ? static_cast<float*>(v.mutable_data()) : nullptr, l2);
    return train_epoch_t<double>(net, theta, X, y, order, batch_size, eta, momentum,
                                 momentum != 0 ? static_cast<double*>(v.mutable_data()) : nullptr, l2);
}

// ---------------------------------------------------------------------------------------------
// Population training: one epoch of each of K independent networks of one shape on the same data
// (each with its own parameters, example order and learning rate), the networks spread over
// threads. Each network is trained by the same kernel call as train_epoch, so its result is
// exactly that of train_epoch, whichever thread runs it and however many there are.

// What one call shares with its worker threads.
template <class T>
struct PopulationEpoch {
    Model model{};
    T* thetas = nullptr;
    T* velocities = nullptr;  // nullptr without momentum
    int64_t n_params = 0;
    const T* X = nullptr;
    const int64_t* y = nullptr;
    const int64_t* orders = nullptr;
    int64_t n_order = 0;
    int64_t batch = 0;
    const double* etas = nullptr;
    double momentum = 0, l2 = 0;
    const T* Xv = nullptr;  // validation rows, or nullptr
    const int64_t* yv = nullptr;
    int64_t nv = 0;
    const int* todo = nullptr;  // the networks to train
    int n_todo = 0;
    double* costs = nullptr;
    int64_t* correct = nullptr;
    double* val_costs = nullptr;
    int64_t* val_correct = nullptr;
    int* status = nullptr;  // per network
    std::atomic<int> next{0};
    std::atomic<bool> stop{false};
};

bool population_stop_requested(void* ctx) {
    return static_cast<const std::atomic<bool>*>(ctx)->load(std::memory_order_relaxed);
}

// A worker takes networks one at a time until none is left or a stop is requested.
template <class T>
void population_worker(PopulationEpoch<T>& job, bool serial) noexcept {
    const fastgd::SerialScope scope(serial);  // one of several workers: no nested threads
    const fastgd::Kernels<T>& kern = kernels<T>();
    int64_t* labels = job.Xv ? static_cast<int64_t*>(std::malloc(sizeof(int64_t) * static_cast<size_t>(job.nv)))
                             : nullptr;
    for (;;) {
        const int j = job.next.fetch_add(1, std::memory_order_relaxed);
        if (j >= job.n_todo || job.stop.load(std::memory_order_relaxed)) break;
        const int k = job.todo[j];
        if (job.Xv && !labels) {
            job.status[k] = fastgd::kNoMemory;
            job.stop.store(true);
            break;
        }
        T* theta = job.thetas + k * job.n_params;
        T* velocity = job.velocities ? job.velocities + k * job.n_params : nullptr;
        int status = kern.train_epoch(job.model, theta, job.X, job.y, job.orders + k * job.n_order, job.n_order,
                                      job.batch, job.etas[k], job.momentum, velocity, job.l2,
                                      population_stop_requested, &job.stop, &job.costs[k], &job.correct[k]);
        if (status == fastgd::kOk && job.Xv) {
            // (A diverged network's non-finite weights give kNonFinite: its results, NaN, stand.)
            status = kern.cost(job.model, theta, job.Xv, job.yv, job.nv, &job.val_costs[k]);
            if (status == fastgd::kNonFinite) status = fastgd::kOk;
            if (status == fastgd::kOk) status = kern.predict(job.model, theta, job.Xv, job.nv, labels);
            if (status == fastgd::kNonFinite) status = fastgd::kOk;
            int64_t hits = 0;
            for (int64_t r = 0; status == fastgd::kOk && r < job.nv; ++r) hits += labels[r] == job.yv[r];
            job.val_correct[k] = hits;
        }
        job.status[k] = status;
        if (status == fastgd::kNoMemory) job.stop.store(true);
    }
    std::free(labels);
}

template <class T>
py::tuple train_epoch_many_t(const Net& net, py::array& thetas, const py::array& X, const py::array& y,
                             const py::array& orders, int64_t batch, const py::array& etas, double momentum,
                             T* velocities, double l2, const std::vector<int>& todo, const py::array* Xv,
                             const py::array* yv, int n_threads) {
    const py::ssize_t K = thetas.shape(0);
    py::array_t<double> costs(K), val_costs(K);
    py::array_t<int64_t> correct(K), val_correct(K);
    PopulationEpoch<T> job;
    job.costs = costs.mutable_data();
    job.val_costs = val_costs.mutable_data();
    job.correct = correct.mutable_data();
    job.val_correct = val_correct.mutable_data();
    for (py::ssize_t k = 0; k < K; ++k) {
        job.costs[k] = job.val_costs[k] = std::numeric_limits<double>::quiet_NaN();
        job.correct[k] = job.val_correct[k] = 0;
    }
    std::vector<int> status(static_cast<size_t>(K), fastgd::kOk);
    job.model = net.model;
    job.thetas = static_cast<T*>(thetas.mutable_data());
    job.velocities = velocities;
    job.n_params = net.n_params;
    job.X = static_cast<const T*>(X.data());
    job.y = static_cast<const int64_t*>(y.data());
    job.orders = static_cast<const int64_t*>(orders.data());
    job.n_order = orders.shape(1);
    job.batch = batch;
    job.etas = static_cast<const double*>(etas.data());
    job.momentum = momentum;
    job.l2 = l2;
    if (Xv) {
        job.Xv = static_cast<const T*>(Xv->data());
        job.yv = static_cast<const int64_t*>(yv->data());
        job.nv = Xv->shape(0);
    }
    job.todo = todo.data();
    job.n_todo = static_cast<int>(todo.size());
    job.status = status.data();
    const int wanted = n_threads > 0 ? n_threads : fastgd::thread_count();
    const int threads = std::max(1, std::min(wanted, job.n_todo));
    // Each network on one thread when there are several workers, or when one thread was asked for;
    // a single network left to a default number of threads may use the kernels' own threads.
    const bool serial = threads > 1 || wanted == 1;
    bool interrupted = false;
    {
        py::gil_scoped_release nogil;  // re-acquired only to run Python's signal handlers
        // The workers train; this thread waits, running Python's signal handlers every 20 ms, so
        // that Ctrl-C stops every network after its mini-batch in progress.
        std::mutex mutex;
        std::condition_variable finished;
        int running = 0;
        std::vector<std::thread> workers;
        workers.reserve(static_cast<size_t>(threads));
        for (int t = 0; t < threads; ++t) {
            try {
                std::lock_guard<std::mutex> lock(mutex);
                workers.emplace_back([&job, &mutex, &finished, &running, serial] {
                    population_worker<T>(job, serial);
                    std::lock_guard<std::mutex> done(mutex);
                    if (--running == 0) finished.notify_one();
                });
                ++running;
            } catch (const std::system_error&) {
                break;  // no more threads to be had: the ones started share the work
            }
        }
        if (workers.empty()) population_worker<T>(job, serial);
        std::unique_lock<std::mutex> lock(mutex);
        while (!finished.wait_for(lock, std::chrono::milliseconds(20), [&] { return running == 0; })) {
            lock.unlock();
            if (!interrupted && python_signal_pending(nullptr)) {
                interrupted = true;
                job.stop.store(true);
            }
            lock.lock();
        }
        lock.unlock();
        for (auto& w : workers) w.join();
    }
    for (int s : status) check_status(s);
    if (interrupted) throw py::error_already_set();
    return py::make_tuple(costs, correct, val_costs, val_correct);
}

py::tuple train_epoch_many(py::array thetas, const py::array& sizes, int activation, int cost_code,
                           const py::array& X, const py::array& y, const py::array& orders, int64_t batch_size,
                           const py::array& etas, double momentum, const py::object& velocities, double l2,
                           const py::array& active, const py::object& Xv, const py::object& yv, int n_threads) {
    const char* fn = "train_epoch_many";
    const Net net = check_model(fn, sizes, activation, cost_code);
    const int kind = float_kind(fn, thetas);
    check_array(fn, "thetas", thetas, thetas.dtype(), 2, true);
    const py::ssize_t K = thetas.shape(0);
    if (K < 1) fail(fn, "thetas has no rows (no networks)");
    if (K > std::numeric_limits<int>::max() / 2) fail(fn, "too many networks");
    if (thetas.shape(1) != net.n_params)
        fail(fn, "thetas has shape " + shape_str(thetas) + " but sizes describe networks with " +
                     std::to_string(net.n_params) + " parameters");
    const int64_t n = check_X(fn, net, thetas, X);
    check_labels(fn, net, y, n);
    check_array(fn, "orders", orders, py::dtype::of<int64_t>(), 2, false);
    if (orders.shape(0) != K)
        fail(fn, "orders has shape " + shape_str(orders) + " but thetas has " + std::to_string(K) + " rows");
    if (orders.shape(1) < 1) fail(fn, "orders is empty");
    const auto* o = static_cast<const int64_t*>(orders.data());
    for (py::ssize_t k = 0; k < orders.size(); ++k)
        if (o[k] < 0 || o[k] >= n)
            fail(fn, "orders[" + std::to_string(k / orders.shape(1)) + ", " + std::to_string(k % orders.shape(1)) +
                         "] = " + std::to_string(o[k]) + " is not a row of X (0 <= row < " + std::to_string(n) + ")");
    if (batch_size < 1) fail(fn, "batch_size must be at least 1, got " + std::to_string(batch_size));
    check_array(fn, "etas", etas, py::dtype::of<double>(), 1, false);
    if (etas.shape(0) != K) fail(fn, "etas has " + std::to_string(etas.shape(0)) + " entries for " + std::to_string(K) + " networks");
    const auto* e = static_cast<const double*>(etas.data());
    for (py::ssize_t k = 0; k < K; ++k)
        if (!std::isfinite(e[k])) fail(fn, "etas[" + std::to_string(k) + "] must be finite");
    if (!std::isfinite(momentum) || momentum < 0 || momentum >= 1) fail(fn, "momentum must be in [0, 1)");
    if (!std::isfinite(l2) || l2 < 0) fail(fn, "l2 must be finite and non-negative");
    py::array v;
    if (momentum != 0) {
        if (velocities.is_none()) fail(fn, "velocities is required when momentum is not 0");
        if (!py::isinstance<py::array>(velocities)) fail(fn, "velocities must be a numpy array");
        v = py::reinterpret_borrow<py::array>(velocities);
        check_array(fn, "velocities", v, thetas.dtype(), 2, true);
        if (v.shape(0) != K || v.shape(1) != thetas.shape(1))
            fail(fn, "velocities has shape " + shape_str(v) + " but thetas has shape " + shape_str(thetas));
        if (overlap(v, thetas)) fail(fn, "velocities must not share memory with thetas");
    }
    if (!active.dtype().is(py::dtype::of<bool>())) check_array(fn, "active", active, py::dtype::of<uint8_t>(), 1, false);
    else check_array(fn, "active", active, py::dtype::of<bool>(), 1, false);
    if (active.shape(0) != K) fail(fn, "active has " + std::to_string(active.shape(0)) + " entries for " + std::to_string(K) + " networks");
    std::vector<int> todo;
    const auto* a = static_cast<const uint8_t*>(active.data());
    for (py::ssize_t k = 0; k < K; ++k)
        if (a[k]) todo.push_back(static_cast<int>(k));
    if (Xv.is_none() != yv.is_none()) fail(fn, "Xv and yv must both be given or both be None");
    py::array xv, yva;
    if (!Xv.is_none()) {
        if (!py::isinstance<py::array>(Xv) || !py::isinstance<py::array>(yv)) fail(fn, "Xv and yv must be numpy arrays");
        xv = py::reinterpret_borrow<py::array>(Xv);
        yva = py::reinterpret_borrow<py::array>(yv);
        const int64_t nv = check_X(fn, net, thetas, xv);
        check_labels(fn, net, yva, nv);
    }
    if (n_threads < 0) fail(fn, "n_threads must be 0 (the default) or more, got " + std::to_string(n_threads));
    const py::array* pxv = Xv.is_none() ? nullptr : &xv;
    const py::array* pyv = Xv.is_none() ? nullptr : &yva;
    if (kind == 4)
        return train_epoch_many_t<float>(net, thetas, X, y, orders, batch_size, etas, momentum,
                                         momentum != 0 ? static_cast<float*>(v.mutable_data()) : nullptr, l2, todo,
                                         pxv, pyv, n_threads);
    return train_epoch_many_t<double>(net, thetas, X, y, orders, batch_size, etas, momentum,
                                      momentum != 0 ? static_cast<double*>(v.mutable_data()) : nullptr, l2, todo,
                                      pxv, pyv, n_threads);
}

#define FASTGD_STR2(x) #x
#define FASTGD_STR(x) FASTGD_STR2(x)

py::dict build_info() {
    py::dict info;
#if defined(__clang__)
    info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    info["compiler"] = std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    info["compiler"] = std::string("msvc ") + FASTGD_STR(_MSC_VER);
#else
    info["compiler"] = "unknown";
#endif
#ifdef FASTGD_BUILD_TYPE
    info["build_type"] = FASTGD_STR(FASTGD_BUILD_TYPE);
#endif
#ifdef FASTGD_CXX_FLAGS
    info["flags"] = FASTGD_CXX_FLAGS;
#endif
    int count = 0;
    const char* const* names = fastgd::built_isas(&count);
    py::list built, supported;
    for (int k = 0; k < count; ++k) {
        built.append(names[k]);
        if (fastgd::isa_supported(names[k])) supported.append(names[k]);
    }
    info["isas_built"] = built;
    info["isas_supported"] = supported;
    info["isa"] = fastgd::active_isa();
    info["threads"] = fastgd::thread_count();
    info["pybind11"] = FASTGD_STR(PYBIND11_VERSION_MAJOR) "." FASTGD_STR(PYBIND11_VERSION_MINOR) "." FASTGD_STR(
        PYBIND11_VERSION_PATCH);
    return info;
}

py::tuple pool_check(int calls, int pause_us) {
    if (calls < 0 || pause_us < 0)
        throw std::invalid_argument("_pool_check: calls and pause_us must be >= 0, got " + std::to_string(calls) +
                                    " and " + std::to_string(pause_us));
    long faults, on_workers;
    {
        py::gil_scoped_release release;
        faults = fastgd::pool_check(calls, pause_us, &on_workers);
    }
    return py::make_tuple(faults, on_workers);
}

py::tuple team_last_epoch() {
    long alone, phases;
    fastgd::last_team_epoch(&alone, &phases);
    return py::make_tuple(alone, phases);
}

}  // namespace

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
    m.doc() = "fastgd's compiled kernels (see fastgd.backends for the contract they implement).";
    m.def("forward", &forward, py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("cost"),
          py::arg("X"), "Output activations of the rows of X, shape (n, sizes[-1]).");
    m.def("predict", &predict, py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("cost"),
          py::arg("X"), "Index of the largest output activation of each row of X (int64).");
    m.def("cost", &cost, py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("cost"), py::arg("X"),
          py::arg("y"), "Mean cost over the rows of X with integer labels y.");
    m.def("grad", &grad, py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("cost"), py::arg("X"),
          py::arg("y"), py::arg("out"),
          "Overwrite out with the gradient of the mean cost over the rows; return the mean cost.");
    m.def("train_epoch", &train_epoch, py::arg("theta"), py::arg("sizes"), py::arg("activation"), py::arg("cost"),
          py::arg("X"), py::arg("y"), py::arg("order"), py::arg("batch_size"), py::arg("eta"), py::arg("momentum"),
          py::arg("velocity"), py::arg("l2"),
          "One epoch of mini-batch gradient descent in place; return (the mean of the rows' costs, the number of "
          "rows classified correctly), both from the mini-batches' own forward passes.");
    m.def("train_epoch_many", &train_epoch_many, py::arg("thetas"), py::arg("sizes"), py::arg("activation"),
          py::arg("cost"), py::arg("X"), py::arg("y"), py::arg("orders"), py::arg("batch_size"), py::arg("etas"),
          py::arg("momentum"), py::arg("velocities"), py::arg("l2"), py::arg("active"), py::arg("Xv"), py::arg("yv"),
          py::arg("n_threads"),
          "One epoch of each active network (row of thetas) in place, the networks spread over n_threads threads "
          "(0: the default); return (mean costs, correct counts, validation costs, validation correct counts).");
    m.def("_pool_check", &pool_check, py::arg("calls"), py::arg("pause_us"),
          "For the tests: run `calls` 2-4-task calls on the worker pool, each worker sleeping pause_us between "
          "reading a call and taking its tasks; return (the number of tasks run other than once or after their call "
          "returned, the number of tasks the workers ran). A task left to nobody hangs instead: run it under a "
          "timeout.");
    m.def("_team_last_epoch", &team_last_epoch,
          "For the tests: of the phases of the calling thread's last epoch trained by a team of threads, "
          "(how many the leader ran alone, how many in all).");
    m.def("build_info", &build_info, "How this extension was built and which instruction set it runs.");
}
