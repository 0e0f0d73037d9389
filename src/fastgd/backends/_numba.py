"""The Numba backend: the five functions of the NumPy reference, as ``@njit`` kernels.

This module is imported only when the numba backend is asked for (``import numba`` is slow);
an ImportError here makes the backend unavailable. It implements the contract in
:mod:`fastgd.backends` and computes what :mod:`fastgd.backends._numpy` computes, with the same
names (``z``, ``a``, ``delta``) in the same order, as loops over scratch allocated once per call:

* One kernel, :func:`_run_batches`, does all the work: it walks consecutive mini-batches of an
  index array and runs, per mini-batch, the forward pass and then (unless only outputs or costs
  are wanted) backpropagation and the parameter step.
* The loops over a layer's outputs ``j`` (contiguous in ``W``, stored ``(n_in, n_out)`` row-major)
  use explicit 64-byte vectors (:class:`_Vec`: 16 float32 or 8 float64 lanes), with a scalar
  loop for the last ``n_out % lanes`` outputs. Numba's own vectoriser does poorly on loops this
  short (it picks 64-element steps and falls back to scalar code for 16 outputs, and needs an
  alias check per row), and its SLP vectoriser is off; an accumulator held in a vector register
  for a whole row of ``z`` is what makes the 784-wide first layer fast. Each vector operation is
  rounded like its scalar counterpart (multiply, then add: no contraction, no ``fastmath``),
  because the results are gradient-checked and compared with the reference.
* Zero inputs are skipped (``z + 0 * w == z`` exactly, for finite ``w``): the first layer's
  nonzero inputs are listed once per row and used by both passes, which saves most of the work
  on MNIST, whose pixels are 81% zeros.
* The gradient of a mini-batch is taken at the parameters before its step: layer ``l``'s weights
  change only after ``delta`` of the layer below was computed from them. With plain SGD the step
  is fused into the gradient loop (``W[i, :] -= (eta/m) * a_prev[b, i] * delta[b, :]`` for each row
  ``b``), so the gradient is never stored; momentum and l2 go through a gradient buffer.
* ``train_epoch`` calls the kernel once per chunk of mini-batches, so that Ctrl-C is honoured
  between chunks, with ``theta`` always holding the result of whole steps.

Arithmetic is in theta's dtype; only the sum of per-row costs is accumulated in float64.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model

NAME = "numba"

# Codes, as in fastgd.backends.ACTIVATIONS and COSTS.
_SIGMOID, _TANH, _RELU = 0, 1, 2
_QUADRATIC, _CROSS_ENTROPY, _LOG_LIKELIHOOD = 0, 1, 2

# What _run_batches does after each mini-batch's forward pass.
_FORWARD = 0  # nothing: copy the output activations to `out` (flat, rows x n_classes)
_ACCUMULATE = 1  # add the summed (not averaged) gradient of the rows to `out` (theta's shape)
_STEP_SGD = 2  # theta -= eta * g, fused into the gradient loop
_STEP_GENERAL = 3  # the same with l2 on weights and/or momentum, through the buffer `out`

_ROWS_PER_BLOCK = 256  # rows per block in forward, predict, cost and grad
_WORK_PER_CHUNK = 2e8  # train_epoch: about this many row x parameter products per kernel call

_VEC_BYTES = 64

_jit = numba.njit(cache=True)  # no fastmath: results are gradient-checked


# --------------------------------------------------------------------------------------------
# 64-byte vectors of theta's dtype: a numba type and four operations on it


class _Vec(types.Type):
    """A 64-byte SIMD vector of ``dtype`` (an LLVM vector: on narrower machines, several registers)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = _VEC_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"fastgd.Vec({dtype} x {self.lanes})")


@register_model(_Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        lane = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(lane, fe_type.lanes))


def _element_pointer(context, builder, arrty, arr, index):
    """Pointer to element ``index`` of the flat, C-contiguous array ``arr`` (no bounds check)."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [index])


@intrinsic
def _vload(typingctx, arr, index):
    """``arr[index : index + lanes]`` as a vector; ``arr`` is 1-d and C-contiguous."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and isinstance(index, types.Integer)):
        return None
    vecty = _Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        llvec = context.get_value_type(vecty)
        return builder.load(builder.bitcast(ptr, llvec.as_pointer()), align=arr.dtype.bitwidth // 8)

    return vecty(arr, index), codegen


@intrinsic
def _vstore(typingctx, arr, index, vec):
    """``arr[index : index + lanes] = vec``; ``arr`` is 1-d, C-contiguous and writable."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and arr.mutable
            and isinstance(vec, _Vec) and vec.dtype == arr.dtype and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, args[2].type.as_pointer()), align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(arr, index, vec), codegen


@intrinsic
def _vsplat(typingctx, x):
    """A vector with ``x`` in every lane."""
    if not isinstance(x, types.Float):
        return None
    vecty = _Vec(x)

    def codegen(context, builder, sig, args):
        llvec = context.get_value_type(vecty)
        one = builder.insert_element(ir.Constant(llvec, ir.Undefined), args[0], ir.IntType(32)(0))
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vecty.lanes), [0] * vecty.lanes)
        return builder.shuffle_vector(one, ir.Constant(llvec, ir.Undefined), zeros)

    return vecty(x), codegen


@intrinsic
def _vmuladd(typingctx, acc, x, y):
    """``acc + x * y`` lane by lane, rounded after the product and after the sum (as in scalar code)."""
    if not (isinstance(acc, _Vec) and x == acc and y == acc):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], builder.fmul(args[1], args[2]))

    return acc(acc, x, y), codegen


# --------------------------------------------------------------------------------------------
# Kernels. All arrays are flat and C-contiguous; a layer's W is theta[w_off : w_off + n_in * n_out]
# read as (n_in, n_out) row-major, its bias theta[b_off : b_off + n_out].


@_jit
def _affine(x, x_off, idx, count, theta, w_off, b_off, n_out, z, z_off):
    """``z = bias + sum_t x[x_off + i] * W[i, :]`` over ``i = idx[t]``, ``t < count``, into ``z[z_off:]``.

    ``idx`` lists the inputs that take part (the nonzero ones, or all of them), in increasing order.
    """
    lanes = _VEC_BYTES // theta.itemsize
    j = 0
    while j + lanes <= n_out:
        acc = _vload(theta, b_off + j)  # z[j : j + lanes], kept in registers over all inputs
        for t in range(count):
            i = idx[t]
            acc = _vmuladd(acc, _vsplat(x[x_off + i]), _vload(theta, w_off + i * n_out + j))
        _vstore(z, z_off + j, acc)
        j += lanes
    for j in range(j, n_out):
        zj = theta[b_off + j]
        for t in range(count):
            i = idx[t]
            zj += x[x_off + i] * theta[w_off + i * n_out + j]
        z[z_off + j] = zj


@_jit
def _add_outer(target, w_off, b_off, n_out, x, x_off, idx, count, scale, delta, d_off):
    """``G[i, :] += (scale * x[x_off + i]) * delta[d_off : d_off + n_out]`` for ``i = idx[t]``, ``t < count``,
    and ``g_bias += scale * delta``, where ``G``/``g_bias`` are at ``w_off``/``b_off`` in ``target``.

    One row's contribution to a layer's weight gradient (``target`` a gradient buffer, ``scale`` 1),
    or to its SGD step (``target`` is theta, ``scale = -eta / m``).
    """
    lanes = _VEC_BYTES // target.itemsize
    s = _vsplat(scale)
    j = 0
    while j + lanes <= n_out:
        d = _vload(delta, d_off + j)
        for t in range(count):
            i = idx[t]
            k = w_off + i * n_out + j
            _vstore(target, k, _vmuladd(_vload(target, k), _vsplat(scale * x[x_off + i]), d))
        _vstore(target, b_off + j, _vmuladd(_vload(target, b_off + j), s, d))
        j += lanes
    for j in range(j, n_out):
        dj = delta[d_off + j]
        for t in range(count):
            i = idx[t]
            target[w_off + i * n_out + j] += (scale * x[x_off + i]) * dj
        target[b_off + j] += scale * dj


@_jit
def _run_batches(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, mode,
                 eta, momentum, velocity, l2, out, acts, deltas, nonzero, n_nonzero, every):
    """Mini-batches ``order[r : r + batch_size]`` for ``r`` in ``range(start, stop, batch_size)`` (the
    last one cut at ``stop``) of the rows of ``X`` (flat, ``(n, sizes[0])``): forward pass, then what
    ``mode`` says. Returns the summed row cost (0 when ``y`` is empty).

    ``out``: in ``_FORWARD`` mode the flat ``(n, sizes[-1])`` output activations, indexed by row of
    ``X``; in ``_ACCUMULATE`` mode theta-shaped, the summed gradient is added to it; in
    ``_STEP_GENERAL`` mode theta-shaped scratch. Scratch: ``acts``/``deltas`` ``batch_size *
    sum(sizes[1:])``, ``nonzero`` ``batch_size * sizes[0]`` and ``n_nonzero`` ``batch_size`` (int64),
    ``every = arange(max(sizes))`` (int64).
    """
    zero = theta.dtype.type(0)
    one = theta.dtype.type(1)
    half = theta.dtype.type(0.5)
    n_layers = sizes.shape[0] - 1
    n_in0 = sizes[0]
    n_classes = sizes[n_layers]
    eta_ = theta.dtype.type(eta)
    momentum_ = theta.dtype.type(momentum)
    l2_ = theta.dtype.type(l2)

    # Offsets of W_l and b_l in theta, and of layer l's block (batch_size x sizes[l + 1]) in acts/deltas
    w_off = np.empty(n_layers, np.int64)
    b_off = np.empty(n_layers, np.int64)
    a_off = np.empty(n_layers, np.int64)
    k = 0
    a = 0
    for l in range(n_layers):
        w_off[l] = k
        k += sizes[l] * sizes[l + 1]
        b_off[l] = k
        k += sizes[l + 1]
        a_off[l] = a
        a += batch_size * sizes[l + 1]
    n_params = k
    want_cost = y.shape[0] > 0

    total = 0.0
    for r0 in range(start, stop, batch_size):
        m = min(batch_size, stop - r0)

        # ---- forward: z = a_prev @ W + b, a = f(z), row by row, layer by layer
        for b in range(m):
            row = order[r0 + b]
            x_off = row * n_in0
            # the first layer's nonzero inputs, in order: used again by the weight gradient
            c = 0
            for i in range(n_in0):
                nonzero[b * n_in0 + c] = i
                c += X[x_off + i] != zero
            n_nonzero[b] = c
            for l in range(n_layers):
                n_in = sizes[l]
                n_out = sizes[l + 1]
                z_off = a_off[l] + b * n_out  # z is built where a = f(z) will be
                if l == 0:
                    _affine(X, x_off, nonzero[b * n_in0 :], c, theta, w_off[0], b_off[0], n_out, acts, z_off)
                else:
                    _affine(acts, a_off[l - 1] + b * n_in, every, n_in, theta, w_off[l], b_off[l], n_out, acts, z_off)
                if l < n_layers - 1:
                    for j in range(z_off, z_off + n_out):
                        zj = acts[j]
                        if activation == _SIGMOID:
                            e = np.exp(-abs(zj))  # <= 1: never overflows
                            acts[j] = one / (one + e) if zj >= zero else e / (one + e)
                        elif activation == _TANH:
                            acts[j] = np.tanh(zj)
                        else:
                            acts[j] = zj if zj > zero else zero
                    continue
                # output layer: the row's cost from z, then a (sigmoid, or softmax for log-likelihood)
                label = y[row] if want_cost else -1
                row_cost = zero
                if cost == _LOG_LIKELIHOOD:
                    # -ln softmax(z)[label] = z_max + ln(sum exp(z - z_max)) - z[label]
                    z_max = acts[z_off]
                    for j in range(z_off + 1, z_off + n_out):
                        if acts[j] > z_max:
                            z_max = acts[j]
                    z_label = acts[z_off + label] if want_cost else zero
                    sum_e = zero
                    for j in range(z_off, z_off + n_out):
                        e = np.exp(acts[j] - z_max)
                        acts[j] = e
                        sum_e += e
                    if want_cost:
                        row_cost = z_max + np.log(sum_e) - z_label
                    for j in range(z_off, z_off + n_out):
                        acts[j] = acts[j] / sum_e
                else:
                    for j in range(n_out):
                        zj = acts[z_off + j]
                        e = np.exp(-abs(zj))
                        aj = one / (one + e) if zj >= zero else e / (one + e)
                        if want_cost:
                            if cost == _CROSS_ENTROPY:
                                # -ln a = softplus(-z), -ln(1 - a) = softplus(z): from z, never log(0)
                                t = -zj if j == label else zj
                                row_cost += (t if t > zero else zero) + np.log1p(e)
                            else:
                                d = aj - one if j == label else aj
                                row_cost += half * (d * d)
                        acts[z_off + j] = aj
                total += row_cost

        if mode == _FORWARD:
            o = a_off[n_layers - 1]
            for b in range(m):
                row = order[r0 + b]
                for j in range(n_classes):
                    out[row * n_classes + j] = acts[o + b * n_classes + j]
            continue

        # ---- backward: delta of the output layer, then layer by layer down
        o = a_off[n_layers - 1]
        for b in range(m):
            label = y[order[r0 + b]]
            for j in range(n_classes):
                aj = acts[o + b * n_classes + j]
                d = aj - one if j == label else aj
                if cost == _QUADRATIC:
                    d = d * aj * (one - aj)
                deltas[o + b * n_classes + j] = d

        if mode == _STEP_SGD:
            target = theta
            scale = -(eta_ / theta.dtype.type(m))
        else:
            target = out
            scale = one
            if mode == _STEP_GENERAL:
                for k in range(n_params):
                    out[k] = zero

        for l in range(n_layers - 1, -1, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            # delta of the layer below, from this layer's W before its step:
            # delta_prev = (delta @ W.T) * f'(z_prev), with f' from a_prev
            if l > 0:
                for b in range(m):
                    d_off = a_off[l] + b * n_out
                    p_off = a_off[l - 1] + b * n_in
                    for i in range(n_in):
                        w = w_off[l] + i * n_out
                        s = zero
                        for j in range(n_out):
                            s += theta[w + j] * deltas[d_off + j]
                        ai = acts[p_off + i]
                        if activation == _SIGMOID:
                            deltas[p_off + i] = s * (ai * (one - ai))
                        elif activation == _TANH:
                            deltas[p_off + i] = s * (one - ai * ai)
                        else:
                            deltas[p_off + i] = s if ai > zero else zero
            # this layer's gradient (or step), one row of the mini-batch at a time
            for b in range(m):
                d_off = a_off[l] + b * n_out
                if l == 0:
                    _add_outer(target, w_off[0], b_off[0], n_out, X, order[r0 + b] * n_in0,
                               nonzero[b * n_in0 :], n_nonzero[b], scale, deltas, d_off)
                else:
                    _add_outer(target, w_off[l], b_off[l], n_out, acts, a_off[l - 1] + b * n_in,
                               every, n_in, scale, deltas, d_off)

        if mode == _STEP_GENERAL:
            # g = G / m + l2 * W on weights (never biases); plain step or momentum
            m_ = theta.dtype.type(m)
            for l in range(n_layers):
                for k in range(w_off[l], b_off[l] + sizes[l + 1]):
                    g = out[k] / m_
                    if k < b_off[l]:
                        g += l2_ * theta[k]
                    if momentum_ == zero:
                        theta[k] -= eta_ * g
                    else:
                        velocity[k] = momentum_ * velocity[k] - eta_ * g
                        theta[k] += velocity[k]
    return total


# --------------------------------------------------------------------------------------------
# The five functions of the backend contract


class _Scratch:
    """Work arrays for mini-batches of up to ``rows`` rows (allocated once per call)."""

    def __init__(self, theta, sizes, rows):
        width = int(np.sum(sizes[1:]))
        self.acts = np.empty(rows * width, dtype=theta.dtype)
        self.deltas = np.empty(rows * width, dtype=theta.dtype)
        self.nonzero = np.empty(rows * int(sizes[0]), dtype=np.int64)
        self.n_nonzero = np.empty(rows, dtype=np.int64)
        self.every = np.arange(int(np.max(sizes)), dtype=np.int64)


def _call(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, mode,
          eta, momentum, velocity, l2, out, scratch):
    return _run_batches(
        theta, sizes, int(activation), int(cost), X.reshape(-1), y, order, start, stop, batch_size, mode,
        eta, momentum, velocity, l2, out, scratch.acts, scratch.deltas, scratch.nonzero, scratch.n_nonzero,
        scratch.every,
    )


_NO_LABELS = np.empty(0, dtype=np.int64)


def _forward_pass(theta, sizes, activation, cost, X, y):
    """Output activations ``(n, sizes[-1])`` and the summed row cost (0 when ``y`` is empty)."""
    n = X.shape[0]
    rows = max(min(n, _ROWS_PER_BLOCK), 1)
    out = np.empty((n, int(sizes[-1])), dtype=theta.dtype)
    total = _call(theta, sizes, activation, cost, X, y, np.arange(n, dtype=np.int64), 0, n, rows,
                  _FORWARD, 0.0, 0.0, theta[:0], 0.0, out.reshape(-1), _Scratch(theta, sizes, rows))
    return out, total


def forward(theta, sizes, activation, cost, X):
    """Output activations ``(n, sizes[-1])`` in theta's dtype."""
    return _forward_pass(theta, sizes, activation, cost, X, _NO_LABELS)[0]


def predict(theta, sizes, activation, cost, X):
    """Index of the largest output activation of each row (first on ties), int64 ``(n,)``."""
    return np.argmax(forward(theta, sizes, activation, cost, X), axis=1).astype(np.int64)


def cost(theta, sizes, activation, cost, X, y):
    """Mean cost over the rows (no regularisation term), as a Python float."""
    return _forward_pass(theta, sizes, activation, cost, X, y)[1] / max(X.shape[0], 1)


def grad(theta, sizes, activation, cost, X, y, out):
    """Overwrite ``out`` with the gradient of the mean cost over the rows; return the mean cost."""
    n = X.shape[0]
    rows = max(min(n, _ROWS_PER_BLOCK), 1)
    out[...] = 0
    total = _call(theta, sizes, activation, cost, X, y, np.arange(n, dtype=np.int64), 0, n, rows,
                  _ACCUMULATE, 0.0, 0.0, theta[:0], 0.0, out, _Scratch(theta, sizes, rows))
    out /= max(n, 1)
    return total / max(n, 1)


def train_epoch(theta, sizes, activation, cost, X, y, order, batch_size, eta, momentum, velocity, l2):
    """One epoch of mini-batch gradient descent over ``order``, in place; return the mean row cost."""
    n = order.shape[0]
    batch_size = int(batch_size)
    eta, momentum, l2 = float(eta), float(momentum), float(l2)
    if momentum == 0.0 and l2 == 0.0:
        mode, buffer = _STEP_SGD, theta[:0]
    else:
        mode, buffer = _STEP_GENERAL, np.empty_like(theta)
    if momentum == 0.0:
        velocity = theta[:0]  # ignored; an array of theta's type keeps one compiled signature
    scratch = _Scratch(theta, sizes, batch_size)
    # Chunks of whole mini-batches, each about _WORK_PER_CHUNK multiply-adds: Python gets
    # control between them, so Ctrl-C stops the epoch after a whole step.
    batches_per_chunk = max(1, int(_WORK_PER_CHUNK / (theta.shape[0] * batch_size)))
    chunk = batches_per_chunk * batch_size
    total = 0.0
    for start in range(0, n, chunk):
        total += _call(theta, sizes, activation, cost, X, y, order, start, min(start + chunk, n), batch_size,
                       mode, eta, momentum, velocity, l2, buffer, scratch)
    return total / max(n, 1)
