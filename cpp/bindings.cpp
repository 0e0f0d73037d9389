// Python bindings of the kernels (module fastgd._core).
//
// This file only checks arguments, releases the GIL and calls the kernels. Every array is
// taken as a plain py::array and checked here (dtype, shape, contiguity, writeability, ranges of
// indices and labels), never converted: a converted copy of an array the kernel writes would
// silently lose the update, and a copy of a read-only input would hide a costly conversion in a
// loop. The Python layer (fastgd.backends._cpp) does any conversion, once, before it calls in.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

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

Net check_net(const char* fn, const py::array& theta, const py::array& sizes, int activation, int cost) {
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
    float_kind(fn, theta);
    check_array(fn, "theta", theta, theta.dtype(), 1, false);
    if (theta.shape(0) != count)
        fail(fn, "theta has " + std::to_string(theta.shape(0)) + " elements but sizes " +
                     "describe a network with " + std::to_string(count) + " parameters");
    Net net;
    net.model = Model{static_cast<int>(L), s, activation, cost};
    net.n_params = count;
    net.n_in = s[0];
    net.n_out = s[L];
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
        check_status(status);
        return std::move(out);
    }
    py::array_t<T> out({n, net.n_out});
    T* o = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        status = kernels<T>().forward(net.model, th, x, n, o);
    }
    check_status(status);
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
    check_status(status);
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
          "One epoch of mini-batch gradient descent in place; return the mean of the rows' costs.");
    m.def("build_info", &build_info, "How this extension was built and which instruction set it runs.");
}
