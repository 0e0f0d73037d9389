"""The Numba backend: the five functions of the NumPy reference, as ``@njit`` kernels.

This module is imported only when the numba backend is asked for (``import numba`` is slow);
an ImportError here makes the backend unavailable. It implements the contract in
:mod:`fastgd.backends` and computes what :mod:`fastgd.backends._numpy` computes, with the same
names (``z``, ``a``, ``delta``) in the same order, as loops over scratch allocated once per call:

* One kernel, :func:`_run_batches`, does all the work: it walks consecutive mini-batches of an
  index array and runs, per mini-batch, the forward pass layer by layer, then (unless only outputs
  or costs are wanted) backpropagation and the parameter step.
* Loops over a layer's outputs ``j`` (contiguous in ``W``, stored ``(n_in, n_out)`` row-major) use
  explicit 64-byte vectors (:class:`_Vec`: 16 float32 or 8 float64 lanes; a layer's last, partial
  vector is masked), written with a few LLVM intrinsics below. Numba's own loop vectoriser does
  poorly on loops this short (for 16 outputs it picks 64-element steps, falls back to scalar code
  and checks for aliasing once per input), and its SLP vectoriser is off. Rows of a mini-batch go
  eight at a time (the rest four at a time), each with its ``z`` (or the step's ``delta``) in
  registers, so that a row of the first layer's ``W`` (50 KB in float32: more than the L1 cache) is
  loaded once for eight rows. Multiply-adds are fused where the CPU has FMA (one rounding, as in
  BLAS; no other ``fastmath`` liberty: results are gradient-checked and compared with the reference
  to 1e-12). Sigmoids, tanh and the softmax's exponentials are computed a vector at a time (the C++
  kernels' ``exp`` and ``tanh``; with libm's, one element at a time, tanh and softmax took half of an epoch).
* Inputs that are zero in every row of a mini-batch are skipped (``z + 0 * w == z`` exactly, for
  finite ``w``): the others are listed once per mini-batch (:func:`_nonzero_inputs`) and the first
  layer's loops walk that list. On MNIST, whose pixels are 81% zeros, that is about half of the
  first layer's work at batch 10. While a mini-batch is trained, the next one's rows are prefetched.
* The gradient of a mini-batch is taken at the parameters before its step: layer ``l``'s weights
  change only after ``delta`` of the layer below was computed from them. With plain SGD the step
  is fused into the gradient loop (``W[i, :] += x[b, i] * (-eta/m * delta[b, :])`` for the rows
  ``b`` in order), so the gradient is never stored; l2 and momentum go through a gradient buffer.
* ``train_epoch`` calls the kernel once per chunk of mini-batches, so that Ctrl-C is honoured
  between chunks, with ``theta`` always holding the result of whole steps. (A team of threads is
  started once per epoch: its leader comes back to Python between chunks while the others wait.)
* Mini-batches of 64 rows or more have their gradient summed in fixed slices of rows, added in a
  fixed order. On two or more threads a team shares the slices and steps
  (:func:`_team_batches`, with a few atomic operations written as LLVM intrinsics): the same result
  as the slices run in turn. A team is the calling thread and helper threads of this module, each
  running a kernel without the GIL (:func:`_with_helpers`), not a ``prange`` loop. When its threads
  must take turns on the CPUs, the leader works alone while that is faster (:class:`_TeamChoice`).
* Mini-batches of 6 to 63 rows of a network with 256 inputs or more (MNIST's 784) have the first
  layer's weights cut in two by input, each part updated and used by one of two threads, which pass
  each other only the small arrays of partial weighted inputs and deltas (:func:`_split_team_batches`;
  on one thread the same operations one after the other, :func:`_split_batches`).

Arithmetic is in theta's dtype; only the sum of per-row costs is accumulated in float64.

Compile time (25-32 s for a first ``fit``, ``predict``, ``cost`` and gradient in float32 and float64 with
an empty cache; loaded from Numba's on-disk cache after that): every compiled function is optimised
and turned into machine code along with a copy of each kernel it calls, so the functions that only
arrange calls are inlined (``_inline``), and no kernel runs in a parallel region, which compiles into
several more such functions.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import itertools
import os
import platform
import threading
import time
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from ..errors import DataError

NAME = "numba"

# forward, predict and cost raise fastgd.errors.DataError when a first-layer weighted input is NaN
# or infinite (found on the way, at no extra pass over X): callers may skip their own NaN check.
FINDS_NONFINITE_INPUT = True

# Codes, as in fastgd.backends.ACTIVATIONS and COSTS.
_SIGMOID, _TANH, _RELU = 0, 1, 2
_QUADRATIC, _CROSS_ENTROPY, _LOG_LIKELIHOOD = 0, 1, 2

# What _run_batches does after each mini-batch's forward pass.
_FORWARD = 0  # nothing: copy the output activations to `out` (flat, rows x n_classes)
_ACCUMULATE = 1  # add the summed (not averaged) gradient of the rows to `out` (theta's shape)
_STEP_SGD = 2  # theta -= eta * g, fused into the gradient loop
_STEP_GENERAL = 3  # the same with l2 on weights and/or momentum, through the buffer `out`

_ROWS_PER_BLOCK = 256  # rows per block in forward, predict, cost and grad
# Plain SGD steps are fused into the gradient loop only for mini-batches up to this size: each
# row's contribution is then added to W itself, and in float32 the rounding of many such
# additions to weights of order 1 would grow with the batch; larger batches sum the gradient
# first (as the C++ kernels do beyond one block of rows).
_FUSED_MAX_ROWS = 16
_WORK_PER_CHUNK = 2e8  # train_epoch: about this many row x parameter products per kernel call
_WORK_PER_WINDOW = 2.5e7  # a team's leader: this many per call, each timed (see _TeamChoice)

_VEC_BYTES = 64

# No fastmath (see the module docstring). Every kernel releases the GIL: the teams below are Python
# threads, each running a kernel.
_jit = numba.njit(cache=True, nogil=True)
# Small functions that only arrange calls of the kernels are inlined into their callers: each compiled
# function that calls a kernel is optimised and turned into machine code along with a copy of it, so
# every such layer adds to the compile time.
_inline = numba.njit(cache=True, nogil=True, inline="always")

# One team at a time: its members spin while they wait for each other, and two teams (two Python
# threads each training on this backend) would compete for the same cores.
_PARALLEL_LOCK = threading.Lock()
# The helper threads, made on first use and kept between teams: (pool, its number of threads).
_helper_pool: tuple[concurrent.futures.ThreadPoolExecutor, int] | None = None


def _forget_helper_pool():
    global _helper_pool
    _helper_pool = None  # a forked child has none of the parent's threads: it makes its own pool


os.register_at_fork(after_in_child=_forget_helper_pool)


def _with_helpers(members, helper, lead, stop=None):
    """``lead()`` on the calling thread while ``members - 1`` helper threads run ``helper()``; then ``stop()`` (if
    given), whether ``lead`` returned or raised, and a wait for the helpers. Returns what ``lead`` returned; a
    helper's exception is raised here.

    Teams are Python threads, each running a kernel without the GIL, not Numba's ``prange``: a parallel
    region compiles into several more functions, each with its own copy of every kernel it calls (the first
    calls of ``python benchmarks/numba_compile.py`` took 55 s with the teams as parallel regions, 39 s
    without), and a team then needs nothing from Numba's threading layer. The helper threads are kept
    between teams: starting one takes about 0.1 ms, 5% of a prediction over 10,000 rows on two threads."""
    global _helper_pool
    with _PARALLEL_LOCK:
        helpers = []
        if members > 1:
            if _helper_pool is None or _helper_pool[1] < members - 1:
                if _helper_pool is not None:
                    _helper_pool[0].shutdown(wait=False)
                _helper_pool = (concurrent.futures.ThreadPoolExecutor(members - 1, "fastgd-numba"), members - 1)
            helpers = [_helper_pool[0].submit(helper) for _ in range(members - 1)]
        try:
            result = lead()
        finally:
            if stop is not None:
                stop()
            _wait_for(helpers)
        for h in helpers:
            h.result()  # a helper's exception
    return result


def _wait_for(helpers):
    """Wait until every helper is done, through Ctrl-C too (pressed again while they finish their task): they
    write to the caller's arrays, which must not change once the team returns or raises. A KeyboardInterrupt
    that came meanwhile is raised when they are done."""
    interrupted = False
    while True:
        try:
            concurrent.futures.wait(helpers)
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


def _each_on_threads(members, n, task, setup=lambda: None):
    """``task(i, state)`` for each ``i`` in ``range(n)`` on ``members`` threads (the calling one and helpers),
    each with its own ``state = setup()`` and claiming the next ``i`` not taken; once the calling thread is done
    or stopped (Ctrl-C), no thread claims another."""
    claims = itertools.count()  # next() is atomic: each i is claimed once
    halt = []

    def work():
        state = setup()
        for i in claims:
            if i >= n or halt:
                return
            task(i, state)

    _with_helpers(members, work, work, lambda: halt.append(True))


# --------------------------------------------------------------------------------------------
# 64-byte vectors of theta's dtype: a numba type and the few operations the kernels need.
# Loads and stores take the number of valid lanes `count` (>= lanes: a whole vector), so that a
# layer of any width is covered by whole vectors and one partial vector (masked: lanes past
# `count` are read as 0 and never written), without reading or writing outside the arrays.


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


_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)


def _is_flat(arr, dtype=None):
    """Whether ``arr`` is a flat, C-contiguous array: of ``dtype`` when given, else of floats."""
    return (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
            and (arr.dtype == dtype if dtype is not None else isinstance(arr.dtype, types.Float)))


def _element_pointer(context, builder, arrty, arr, index):
    """Pointer to element ``index`` of the flat, C-contiguous array ``arr`` (no bounds check)."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [index])


def _llvm_vector(dtype):
    vecty = _Vec(dtype)
    return vecty, ir.VectorType(ir.FloatType() if dtype.bitwidth == 32 else ir.DoubleType(), vecty.lanes)


def _masked_intrinsic(builder, name, llvec, fnty):
    suffix = f"v{llvec.count}{'f32' if isinstance(llvec.element, ir.FloatType) else 'f64'}"
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.{name}.{suffix}.p0")


def _lane_mask(builder, lanes, count):
    """``<lanes x i1>``: lane ``k`` is on when ``k < count``."""
    vec_i64 = ir.VectorType(_I64, lanes)
    splat = builder.insert_element(ir.Constant(vec_i64, ir.Undefined), count, _I32(0))
    zeros = ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes)
    splat = builder.shuffle_vector(splat, ir.Constant(vec_i64, ir.Undefined), zeros)
    return builder.icmp_signed("<", ir.Constant(vec_i64, list(range(lanes))), splat)


def _load(context, builder, arrty, arr, index, count):
    vecty, llvec = _llvm_vector(arrty.dtype)
    align = arrty.dtype.bitwidth // 8
    ptr = _element_pointer(context, builder, arrty, arr, index)
    whole = builder.icmp_signed(">=", count, _I64(vecty.lanes))
    with builder.if_else(whole, likely=True) as (then, otherwise):
        with then:
            block_whole = builder.block
            v_whole = builder.load(builder.bitcast(ptr, llvec.as_pointer()), align=align)
        with otherwise:
            block_part = builder.block
            fnty = ir.FunctionType(llvec, [ptr.type, _I32, ir.VectorType(_I1, vecty.lanes), llvec])
            fn = _masked_intrinsic(builder, "load", llvec, fnty)
            mask = _lane_mask(builder, vecty.lanes, count)
            v_part = builder.call(fn, [ptr, _I32(align), mask, ir.Constant(llvec, None)])
    value = builder.phi(llvec)
    value.add_incoming(v_whole, block_whole)
    value.add_incoming(v_part, block_part)
    return value


@intrinsic
def _vload(typingctx, arr, index, count):
    """``arr[index : index + min(count, lanes)]`` as a vector, lanes past ``count`` set to 0."""
    if not (_is_flat(arr) and isinstance(index, types.Integer) and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], args[0], args[1], args[2])

    return _Vec(arr.dtype)(arr, types.int64, types.int64), codegen


@intrinsic
def _vstore(typingctx, arr, index, vec, count):
    """``arr[index : index + min(count, lanes)] = vec`` (its first lanes)."""
    if not (_is_flat(arr) and arr.mutable and isinstance(vec, _Vec) and vec.dtype == arr.dtype):
        return None

    def codegen(context, builder, sig, args):
        arrty = sig.args[0]
        _, llvec = _llvm_vector(arrty.dtype)
        align = arrty.dtype.bitwidth // 8
        ptr = _element_pointer(context, builder, arrty, args[0], args[1])
        value, count = args[2], args[3]
        whole = builder.icmp_signed(">=", count, _I64(vec.lanes))
        with builder.if_else(whole, likely=True) as (then, otherwise):
            with then:
                builder.store(value, builder.bitcast(ptr, llvec.as_pointer()), align=align)
            with otherwise:
                fnty = ir.FunctionType(ir.VoidType(), [llvec, ptr.type, _I32, ir.VectorType(_I1, vec.lanes)])
                fn = _masked_intrinsic(builder, "store", llvec, fnty)
                builder.call(fn, [value, ptr, _I32(align), _lane_mask(builder, vec.lanes, count)])
        return context.get_dummy_value()

    return types.void(arr, types.int64, vec, types.int64), codegen


@intrinsic
def _get(typingctx, arr, index):
    """``arr[index]`` for ``index >= 0``: without the wrap-around of negative indices that numba adds
    to every index it can't prove nonnegative (a compare and a select inside the hottest loops)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_element_pointer(context, builder, sig.args[0], args[0], args[1]))

    return arr.dtype(arr, types.int64), codegen


@intrinsic
def _vsplat(typingctx, x):
    """A vector with ``x`` in every lane."""
    if not isinstance(x, types.Float):
        return None
    vecty, llvec = _llvm_vector(x)

    def codegen(context, builder, sig, args):
        one = builder.insert_element(ir.Constant(llvec, ir.Undefined), args[0], _I32(0))
        zeros = ir.Constant(ir.VectorType(_I32, vecty.lanes), [0] * vecty.lanes)
        return builder.shuffle_vector(one, ir.Constant(llvec, ir.Undefined), zeros)

    return vecty(x), codegen


@intrinsic
def _vmuladd(typingctx, acc, x, y):
    """``acc + x * y`` lane by lane, as one fused multiply-add (rounded once) where the CPU has one."""
    if not (isinstance(acc, _Vec) and x == acc and y == acc):
        return None

    def codegen(context, builder, sig, args):
        llvec = args[0].type
        suffix = f"v{llvec.count}{'f32' if isinstance(llvec.element, ir.FloatType) else 'f64'}"
        fnty = ir.FunctionType(llvec, [llvec] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fmuladd.{suffix}")
        return builder.call(fn, [args[1], args[2], args[0]])

    return acc(acc, x, y), codegen


def _lanewise(name, method, doc):
    """An intrinsic ``name(x, y)`` for two vectors of one type: the IR builder's ``method`` lane by lane."""

    def typer(typingctx, x, y):
        if not (isinstance(x, _Vec) and y == x):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, method)(args[0], args[1])

        return x(x, y), codegen

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


_vadd = _lanewise("_vadd", "fadd", "``x + y`` lane by lane.")
_vsub = _lanewise("_vsub", "fsub", "``x - y`` lane by lane.")
_vmul = _lanewise("_vmul", "fmul", "``x * y`` lane by lane.")
_vdiv = _lanewise("_vdiv", "fdiv", "``x / y`` lane by lane.")


@intrinsic
def _vwhere_positive(typingctx, cond, vec):
    """``vec`` where ``cond > 0``, else 0, lane by lane (a NaN in ``cond`` gives 0): ReLU is
    ``_vwhere_positive(z, z)``, its slope times ``delta`` ``_vwhere_positive(a, delta)``."""
    if not (isinstance(cond, _Vec) and vec == cond):
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        return builder.select(builder.fcmp_ordered(">", args[0], zero), args[1], zero)

    return vec(cond, vec), codegen


@intrinsic
def _vkeep(typingctx, vec, count):
    """``vec`` with the lanes from ``count`` on set to 0."""
    if not (isinstance(vec, _Vec) and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        n = context.cast(builder, args[1], sig.args[1], types.int64)
        return builder.select(_lane_mask(builder, vec.lanes, n), args[0], ir.Constant(args[0].type, None))

    return vec(vec, count), codegen


@intrinsic
def _vsum(typingctx, vec):
    """The sum of the lanes, added pairwise (halves, then quarters, ...)."""
    if not isinstance(vec, _Vec):
        return None

    def codegen(context, builder, sig, args):
        value, width = args[0], vec.lanes
        while width > 1:
            width //= 2
            halves = ir.VectorType(_I32, width)
            low = builder.shuffle_vector(value, value, ir.Constant(halves, list(range(width))))
            high = builder.shuffle_vector(value, value, ir.Constant(halves, list(range(width, 2 * width))))
            value = builder.fadd(low, high)
        return builder.extract_element(value, _I32(0))

    return vec.dtype(vec), codegen


@intrinsic
def _vinsert(typingctx, vec, lane, x):
    """``vec`` with lane ``lane`` (``0 <= lane < lanes``) set to ``x``."""
    if not (isinstance(vec, _Vec) and isinstance(lane, types.Integer) and x == vec.dtype):
        return None

    def codegen(context, builder, sig, args):
        return builder.insert_element(args[0], args[2], builder.trunc(context.cast(builder, args[1], sig.args[1],
                                                                                  types.int64), _I32))

    return vec(vec, lane, x), codegen


@intrinsic
def _vargmax(typingctx, vec, count):
    """The first of lanes ``0 .. min(count, lanes) - 1`` holding their largest value, NaN lanes aside (0 if
    every one is NaN); the caller checks lane 0 for NaN (see :func:`_output`)."""
    if not (isinstance(vec, _Vec) and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        value = args[0]
        llvec = value.type
        lanes = vec.lanes
        mask = _lane_mask(builder, lanes, context.cast(builder, args[1], sig.args[1], types.int64))
        low = ir.Constant(llvec, [float("-inf")] * lanes)
        kept = builder.select(mask, value, low)
        suffix = f"v{lanes}{'f32' if isinstance(llvec.element, ir.FloatType) else 'f64'}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(llvec.element, [llvec]),
                                            f"llvm.vector.reduce.fmax.{suffix}")
        top = builder.call(fn, [kept])
        splat = builder.insert_element(ir.Constant(llvec, ir.Undefined), top, _I32(0))
        splat = builder.shuffle_vector(splat, ir.Constant(llvec, ir.Undefined),
                                       ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))
        hits = builder.and_(builder.fcmp_ordered("==", kept, splat), mask)
        bits = builder.zext(builder.bitcast(hits, ir.IntType(lanes)), _I64)
        tz = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, [_I64, _I1]), "llvm.cttz.i64")
        first = builder.call(tz, [bits, ir.Constant(_I1, 0)])
        return builder.select(builder.icmp_unsigned("==", bits, _I64(0)), _I64(0), first)

    return types.int64(vec, count), codegen


@intrinsic
def _nonzero_bits(typingctx, arr, index, count):
    """Bit ``j`` set when ``arr[index + j]`` is nonzero (or NaN), for ``j < min(count, lanes)``."""
    if not (_is_flat(arr) and isinstance(index, types.Integer) and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        _, llvec = _llvm_vector(arr.dtype)
        value = _load(context, builder, sig.args[0], args[0], args[1], args[2])
        nonzero = builder.fcmp_unordered("!=", value, ir.Constant(llvec, None))
        bits = builder.bitcast(nonzero, ir.IntType(llvec.count))
        return builder.zext(bits, ir.IntType(64))

    return types.int64(arr, types.int64, types.int64), codegen


@intrinsic
def _prefetch(typingctx, arr, index):
    """Ask the CPU to bring the cache line of ``arr[index]`` closer (a hint: no effect on results); ``arr`` flat
    and C-contiguous, of floats or int64."""
    if not ((_is_flat(arr) or _is_flat(arr, types.int64)) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]),
                              ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read, locality 2 (as the C++ kernels), data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, types.int64), codegen


@_jit
def _prefetch_rows(x, rows, start, stop, n_in, lo, n_cols):
    """Prefetch columns ``lo .. lo + n_cols`` of rows ``rows[start:stop]`` of ``x`` (flat, rows of ``n_in``):
    mini-batches' rows come in a random order, which no hardware prefetcher can guess."""
    step = _VEC_BYTES // x.itemsize
    for b in range(start, stop):
        base = rows[b] * n_in + lo
        for i in range(0, n_cols, step):
            _prefetch(x, base + i)
        if n_cols > 0:
            _prefetch(x, base + n_cols - 1)  # the last line, for columns that do not start one


@intrinsic
def _store_compressed(typingctx, nzi, at, base, bits, lanes):
    """``nzi[at : at + k] = [base + j for j < lanes if bit j of bits is set]`` (``k`` the bits set), as one
    vector compress and one store of ``lanes`` int32 (``nzi`` needs ``lanes`` entries of room past
    them: the rest of the vector lands there)."""
    if not (_is_flat(nzi, types.int32) and isinstance(lanes, types.IntegerLiteral)):
        return None
    n = lanes.literal_value

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        vty = ir.VectorType(i32, n)
        start = builder.trunc(context.cast(builder, args[2], sig.args[2], types.int64), i32)
        first = builder.insert_element(ir.Constant(vty, None), start, i32(0))
        splat = builder.shuffle_vector(first, first, ir.Constant(vty, [0] * n))
        idx = builder.add(splat, ir.Constant(vty, list(range(n))))
        bits = context.cast(builder, args[3], sig.args[3], types.int64)
        mask = builder.bitcast(builder.trunc(bits, ir.IntType(n)), ir.VectorType(ir.IntType(1), n))
        fnty = ir.FunctionType(vty, [vty, mask.type, vty])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.experimental.vector.compress.v{n}i32")
        packed = builder.call(fn, [idx, mask, ir.Constant(vty, None)])
        at = context.cast(builder, args[1], sig.args[1], types.int64)
        ptr = _element_pointer(context, builder, sig.args[0], args[0], at)
        builder.store(packed, builder.bitcast(ptr, vty.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(nzi, types.int64, types.int64, types.int64, lanes), codegen


@intrinsic
def _popcount(typingctx, bits):
    """The number of bits set in the int64 ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.ctpop(context.cast(builder, args[0], sig.args[0], types.int64))

    return types.int64(bits), codegen


# --------------------------------------------------------------------------------------------
# Atomic operations on an int64 array's elements, for the team of threads that shares a training
# epoch's mini-batches (see _team_batches).


def _atomic_pointer(context, builder, sig, args):
    index = context.cast(builder, args[1], sig.args[1], types.int64)
    return _element_pointer(context, builder, sig.args[0], args[0], index)


@intrinsic
def _atomic_load(typingctx, arr, index):
    """``arr[index]``, read atomically (acquire: what was written before the matching release is seen)."""
    if not (_is_flat(arr, types.int64) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_atomic_pointer(context, builder, sig, args), "acquire", 8)

    return types.int64(arr, types.int64), codegen


@intrinsic
def _atomic_store(typingctx, arr, index, value):
    """``arr[index] = value``, written atomically (release: what was written before is seen by an acquire)."""
    if not (_is_flat(arr, types.int64) and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _atomic_pointer(context, builder, sig, args), "release", 8)
        return context.get_dummy_value()

    return types.none(arr, types.int64, types.int64), codegen


@intrinsic
def _atomic_add(typingctx, arr, index, value):
    """``arr[index] += value`` atomically (acquire and release); returns the value before."""
    if not (_is_flat(arr, types.int64) and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", _atomic_pointer(context, builder, sig, args), value, "acq_rel")

    return types.int64(arr, types.int64, types.int64), codegen


@intrinsic
def _atomic_cas(typingctx, arr, index, expected, value):
    """If ``arr[index] == expected``, set it to ``value`` and return True, atomically (acquire and
    release); else return False."""
    if not (_is_flat(arr, types.int64) and all(isinstance(t, types.Integer) for t in (index, expected, value))):
        return None

    def codegen(context, builder, sig, args):
        expected = context.cast(builder, args[2], sig.args[2], types.int64)
        value = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(_atomic_pointer(context, builder, sig, args), expected, value, "acq_rel", "acquire")
        return builder.extract_value(pair, 1)

    return types.boolean(arr, types.int64, types.int64, types.int64), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _spin_pause(typingctx):
    """A hint to the CPU that this thread is spin-waiting (x86 ``pause``; nothing elsewhere)."""

    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


def _vcall(builder, name, llvec, args):
    """``llvm.<name>`` of the vector type ``llvec`` on ``args`` (same type)."""
    suffix = f"v{llvec.count}{'f32' if isinstance(llvec.element, ir.FloatType) else 'f64'}"
    fnty = ir.FunctionType(llvec, [llvec] * len(args))
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.{suffix}"), args)


def _const(llvec, value):
    return ir.Constant(llvec, [value] * llvec.count)


def _fma(builder, llvec, x, y, z):
    return _vcall(builder, "fmuladd", llvec, [x, y, z])


def _exp_nonpositive(builder, llvec, x):
    """``e^x`` lane by lane for ``x <= 0`` (or NaN): ``2^n e^r`` with ``n = round(x / ln 2)``, ``|r| <= ln(2)/2``,
    ``e^r`` by the Cephes polynomial (float, within 2 ulp) or rational function (double, within 2e-16
    relative); ``x`` is clamped below where the result would be subnormal. The C++ kernels' ``vexp``."""
    single = isinstance(llvec.element, ir.FloatType)
    lanes = llvec.count
    ity = ir.IntType(32 if single else 64)
    ivec = ir.VectorType(ity, lanes)
    mantissa, bias, lo = (23, 127, -87.0) if single else (52, 1023, -708.0)
    x = builder.select(builder.fcmp_ordered("<", x, _const(llvec, lo)), _const(llvec, lo), x)
    magic = 1.5 * 2.0**mantissa
    t = _fma(builder, llvec, x, _const(llvec, 1.44269504088896340736), _const(llvec, magic))
    n = builder.fsub(t, _const(llvec, magic))
    r = _fma(builder, llvec, n, _const(llvec, -0.693145751953125), x)
    r = _fma(builder, llvec, n, _const(llvec, -1.42860682030941723212e-6), r)
    ni = builder.sub(builder.bitcast(t, ivec), builder.bitcast(_const(llvec, magic), ivec))
    scale = builder.bitcast(builder.shl(builder.add(ni, ir.Constant(ivec, [bias] * lanes)),
                                        ir.Constant(ivec, [mantissa] * lanes)), llvec)
    if single:
        p = _const(llvec, 1.9875691500e-4)
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
            p = _fma(builder, llvec, p, r, _const(llvec, c))
        e_r = builder.fadd(_fma(builder, llvec, p, builder.fmul(r, r), r), _const(llvec, 1.0))
    else:
        r2 = builder.fmul(r, r)
        k = functools.partial(_const, llvec)
        px = _fma(builder, llvec, r2, k(1.26177193074810590878e-4), k(3.02994407707441961300e-2))
        px = builder.fmul(r, _fma(builder, llvec, px, r2, _const(llvec, 9.99999999999999999910e-1)))
        qx = _fma(builder, llvec, r2, k(3.00198505138664455042e-6), k(2.52448340349684104192e-3))
        qx = _fma(builder, llvec, qx, r2, _const(llvec, 2.27265548208155028766e-1))
        qx = _fma(builder, llvec, qx, r2, _const(llvec, 2.00000000000000000009e0))
        e_r = _fma(builder, llvec, _const(llvec, 2.0), builder.fdiv(px, builder.fsub(qx, px)), _const(llvec, 1.0))
    return builder.fmul(e_r, scale)


@intrinsic
def _vsigmoid(typingctx, z):
    """``1 / (1 + e^-z)`` lane by lane, from ``e = e^-|z|`` (never overflows): ``1 / (1 + e)`` where
    ``z >= 0``, ``e / (1 + e)`` elsewhere; NaN stays NaN."""
    if not isinstance(z, _Vec):
        return None

    def codegen(context, builder, sig, args):
        zv = args[0]
        llvec = zv.type
        e = _exp_nonpositive(builder, llvec, builder.fneg(_vcall(builder, "fabs", llvec, [zv])))
        s = builder.fdiv(_const(llvec, 1.0), builder.fadd(e, _const(llvec, 1.0)))
        return builder.select(builder.fcmp_ordered(">=", zv, ir.Constant(llvec, None)), s, builder.fmul(e, s))

    return z(z), codegen


@intrinsic
def _vexp_nonpositive(typingctx, x):
    """``e^x`` lane by lane for ``x <= 0`` (or NaN): :func:`_exp_nonpositive`."""
    if not isinstance(x, _Vec):
        return None

    def codegen(context, builder, sig, args):
        return _exp_nonpositive(builder, args[0].type, args[0])

    return x(x), codegen


@intrinsic
def _vtanh(typingctx, z):
    """``tanh(z)`` lane by lane, as the C++ kernels' ``vtanh``: for ``|z| < 0.625`` an odd polynomial (float) or
    rational function (double), Cephes', where the other formula would lose digits to cancellation; elsewhere
    ``1 - 2e / (1 + e)`` with ``e = e^(-2|z|)`` (never overflows), with the sign of ``z``. NaN stays NaN."""
    if not isinstance(z, _Vec):
        return None

    def codegen(context, builder, sig, args):
        zv = args[0]
        llvec = zv.type
        k = functools.partial(_const, llvec)
        az = _vcall(builder, "fabs", llvec, [zv])
        e = _exp_nonpositive(builder, llvec, builder.fmul(az, k(-2.0)))
        big = builder.fsub(k(1.0), builder.fdiv(builder.fadd(e, e), builder.fadd(e, k(1.0))))
        large = builder.select(builder.fcmp_ordered("<", zv, ir.Constant(llvec, None)), builder.fneg(big), big)
        x2 = builder.fmul(zv, zv)
        if isinstance(llvec.element, ir.FloatType):
            p = k(-5.70498872745e-3)
            for c in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
                p = _fma(builder, llvec, p, x2, k(c))
            small = _fma(builder, llvec, builder.fmul(p, x2), zv, zv)
        else:
            p = _fma(builder, llvec, x2, k(-9.64399179425052238628e-1), k(-9.92877231001918586564e1))
            p = _fma(builder, llvec, p, x2, k(-1.61468768441708447952e3))
            q = builder.fadd(x2, k(1.12811678491632931402e2))
            q = _fma(builder, llvec, q, x2, k(2.23548839060100448583e3))
            q = _fma(builder, llvec, q, x2, k(4.84406305325125486048e3))
            small = _fma(builder, llvec, builder.fmul(zv, x2), builder.fdiv(p, q), zv)
        return builder.select(builder.fcmp_ordered("<", az, k(0.625)), small, large)

    return z(z), codegen


# --------------------------------------------------------------------------------------------
# Kernels. All arrays are flat and C-contiguous; a layer's W is theta[w_off : w_off + n_in * n_out]
# read as (n_in, n_out) row-major, its bias theta[b_off : b_off + n_out].


@_jit
def _nonzero_inputs(x, rows, rows_off, x_base, n_in, n_cols, m, nzi):
    """The inputs ``i < n_cols`` at which some of the ``m`` rows (as in :func:`_affine`) is nonzero (or
    NaN), in increasing order, into ``nzi``; returns how many. :func:`_affine` and :func:`_add_outer` take
    only those (``z + 0 * w == z`` exactly, for finite ``w``): on MNIST about half of the 784 pixels
    are zero in all ten rows of a mini-batch.

    ``nzi`` is int32 with room for ``n_cols`` entries and a vector more: each whole vector of inputs
    stores its part of the list as one vector (a compress of the lane numbers; a loop over the set
    bits, with its unpredictable branches, took three times as long)."""
    lanes = _VEC_BYTES // x.itemsize
    count = 0
    for k0 in range(0, n_cols, lanes):
        left = n_cols - k0
        bits = 0
        for b in range(m):
            bits |= _nonzero_bits(x, x_base + rows[rows_off + b] * n_in + k0, left)
        if left >= lanes:
            if lanes == 16:
                _store_compressed(nzi, count, k0, bits, 16)
            else:
                _store_compressed(nzi, count, k0, bits, 8)
            count += _popcount(bits)
        else:  # a last, partial vector of inputs
            for j in range(left):
                nzi[count] = k0 + j
                count += (bits >> j) & 1
    return count


@_jit
def _affine8(x, rows, rows_off, x_base, n_in, theta, w_off, bias, b_off, n_out, z, z_off, nzi, n_nz):
    """:func:`_affine` for a group of eight rows (one load of a row of ``W`` for eight of them)."""
    lanes = _VEC_BYTES // theta.itemsize
    x0 = x_base + rows[rows_off] * n_in
    x1 = x_base + rows[rows_off + 1] * n_in
    x2 = x_base + rows[rows_off + 2] * n_in
    x3 = x_base + rows[rows_off + 3] * n_in
    x4 = x_base + rows[rows_off + 4] * n_in
    x5 = x_base + rows[rows_off + 5] * n_in
    x6 = x_base + rows[rows_off + 6] * n_in
    x7 = x_base + rows[rows_off + 7] * n_in
    for j in range(0, n_out, lanes):
        c = n_out - j
        z0 = _vload(bias, b_off + j, c)
        z1, z2, z3, z4, z5, z6, z7 = z0, z0, z0, z0, z0, z0, z0
        for t in range(n_nz):
            i = nzi[t]
            w = _vload(theta, w_off + i * n_out + j, c)
            z0 = _vmuladd(z0, _vsplat(_get(x, x0 + i)), w)
            z1 = _vmuladd(z1, _vsplat(_get(x, x1 + i)), w)
            z2 = _vmuladd(z2, _vsplat(_get(x, x2 + i)), w)
            z3 = _vmuladd(z3, _vsplat(_get(x, x3 + i)), w)
            z4 = _vmuladd(z4, _vsplat(_get(x, x4 + i)), w)
            z5 = _vmuladd(z5, _vsplat(_get(x, x5 + i)), w)
            z6 = _vmuladd(z6, _vsplat(_get(x, x6 + i)), w)
            z7 = _vmuladd(z7, _vsplat(_get(x, x7 + i)), w)
        _vstore(z, z_off + j, z0, c)
        _vstore(z, z_off + n_out + j, z1, c)
        _vstore(z, z_off + 2 * n_out + j, z2, c)
        _vstore(z, z_off + 3 * n_out + j, z3, c)
        _vstore(z, z_off + 4 * n_out + j, z4, c)
        _vstore(z, z_off + 5 * n_out + j, z5, c)
        _vstore(z, z_off + 6 * n_out + j, z6, c)
        _vstore(z, z_off + 7 * n_out + j, z7, c)


@_jit
def _affine(x, rows, rows_off, x_base, n_in, m, theta, w_off, bias, b_off, n_out, z, z_off, nzi, n_nz):
    """``z = a_prev @ W + bias`` for the ``m`` rows of a mini-batch (``W`` at ``w_off`` in ``theta``, the
    bias at ``b_off`` in ``bias``, usually ``theta`` too).

    Row ``b``'s inputs are ``x[x_base + rows[rows_off + b] * n_in :][:n_in]``, its ``z`` goes to
    ``z[z_off + b * n_out :][:n_out]``. Only the ``n_nz`` inputs listed in ``nzi`` are taken (the
    others are zero in every row: :func:`_nonzero_inputs`).

    Rows go eight at a time (:func:`_affine8`), the rest four at a time, each with its vector of
    ``z`` in a register: a row of ``W``, loaded once, serves every accumulator of the group (the
    first layer's ``W`` does not fit in the L1 cache), and the additions are independent. A last,
    partial group of four repeats its last row, not stored.
    """
    lanes = _VEC_BYTES // theta.itemsize
    g8 = m - m % 8
    for g in range(0, g8, 8):
        _affine8(x, rows, rows_off + g, x_base, n_in, theta, w_off, bias, b_off, n_out, z, z_off + g * n_out, nzi,
                 n_nz)
    for g in range(g8, m, 4):
        if g == m - 1:  # a last row alone (batch 1): one sum, not four
            x0 = x_base + rows[rows_off + g] * n_in
            for j in range(0, n_out, lanes):
                c = n_out - j
                z0 = _vload(bias, b_off + j, c)
                for t in range(n_nz):
                    i = nzi[t]
                    z0 = _vmuladd(z0, _vsplat(_get(x, x0 + i)), _vload(theta, w_off + i * n_out + j, c))
                _vstore(z, z_off + g * n_out + j, z0, c)
            break
        b0, b1, b2, b3 = g, min(g + 1, m - 1), min(g + 2, m - 1), min(g + 3, m - 1)
        x0 = x_base + rows[rows_off + b0] * n_in
        x1 = x_base + rows[rows_off + b1] * n_in
        x2 = x_base + rows[rows_off + b2] * n_in
        x3 = x_base + rows[rows_off + b3] * n_in
        for j in range(0, n_out, lanes):
            c = n_out - j  # lanes of z in this vector (more than `lanes`: all of them)
            z0 = _vload(bias, b_off + j, c)
            z1, z2, z3 = z0, z0, z0
            for t in range(n_nz):
                i = nzi[t]
                w = _vload(theta, w_off + i * n_out + j, c)
                z0 = _vmuladd(z0, _vsplat(_get(x, x0 + i)), w)
                z1 = _vmuladd(z1, _vsplat(_get(x, x1 + i)), w)
                z2 = _vmuladd(z2, _vsplat(_get(x, x2 + i)), w)
                z3 = _vmuladd(z3, _vsplat(_get(x, x3 + i)), w)
            _vstore(z, z_off + b0 * n_out + j, z0, c)
            if g + 1 < m:
                _vstore(z, z_off + b1 * n_out + j, z1, c)
            if g + 2 < m:
                _vstore(z, z_off + b2 * n_out + j, z2, c)
            if g + 3 < m:
                _vstore(z, z_off + b3 * n_out + j, z3, c)


@_jit
def _row_passes(n_out, itemsize):
    """In how many passes :func:`_add_outer` walks the rows of ``G`` (pass ``p`` takes every ``passes``-th
    listed input from the ``p``-th), so that the rows taken one after the other are at least a vector
    (64 bytes) apart. A row narrower than a vector is stored masked, and a load of the next row within the
    same 64 bytes waits for that store to complete (the 16 x 10 output layer in float32, rows of 40 bytes:
    2.9 ms of a batch-10 epoch in one pass, 0.9 in two). Each entry of ``G`` still gets its rows added in
    the same order."""
    row_bytes = n_out * itemsize
    return 1 if row_bytes >= _VEC_BYTES else (_VEC_BYTES + row_bytes - 1) // row_bytes


@_jit
def _add_outer8(target, w_off, bias_target, b_off, n_out, x, rows, rows_off, x_base, n_in, scale, delta, d_off, nzi,
                n_nz):
    """:func:`_add_outer` for a group of eight rows, added in row order (each row of ``G`` loaded and
    stored once for eight rows)."""
    lanes = _VEC_BYTES // target.itemsize
    nothing = _vsplat(target.dtype.type(0))
    s = _vsplat(scale)
    passes = _row_passes(n_out, target.itemsize)
    x0 = x_base + rows[rows_off] * n_in
    x1 = x_base + rows[rows_off + 1] * n_in
    x2 = x_base + rows[rows_off + 2] * n_in
    x3 = x_base + rows[rows_off + 3] * n_in
    x4 = x_base + rows[rows_off + 4] * n_in
    x5 = x_base + rows[rows_off + 5] * n_in
    x6 = x_base + rows[rows_off + 6] * n_in
    x7 = x_base + rows[rows_off + 7] * n_in
    for j in range(0, n_out, lanes):
        c = n_out - j
        d0 = _vmuladd(nothing, s, _vload(delta, d_off + j, c))
        d1 = _vmuladd(nothing, s, _vload(delta, d_off + n_out + j, c))
        d2 = _vmuladd(nothing, s, _vload(delta, d_off + 2 * n_out + j, c))
        d3 = _vmuladd(nothing, s, _vload(delta, d_off + 3 * n_out + j, c))
        d4 = _vmuladd(nothing, s, _vload(delta, d_off + 4 * n_out + j, c))
        d5 = _vmuladd(nothing, s, _vload(delta, d_off + 5 * n_out + j, c))
        d6 = _vmuladd(nothing, s, _vload(delta, d_off + 6 * n_out + j, c))
        d7 = _vmuladd(nothing, s, _vload(delta, d_off + 7 * n_out + j, c))
        for q0 in range(passes):
            for q in range(q0, n_nz, passes):
                i = nzi[q]
                w = w_off + i * n_out + j
                t = _vmuladd(_vload(target, w, c), _vsplat(_get(x, x0 + i)), d0)
                t = _vmuladd(t, _vsplat(_get(x, x1 + i)), d1)
                t = _vmuladd(t, _vsplat(_get(x, x2 + i)), d2)
                t = _vmuladd(t, _vsplat(_get(x, x3 + i)), d3)
                t = _vmuladd(t, _vsplat(_get(x, x4 + i)), d4)
                t = _vmuladd(t, _vsplat(_get(x, x5 + i)), d5)
                t = _vmuladd(t, _vsplat(_get(x, x6 + i)), d6)
                t = _vmuladd(t, _vsplat(_get(x, x7 + i)), d7)
                _vstore(target, w, t, c)
        b = _vadd(_vadd(_vadd(_vadd(_vload(bias_target, b_off + j, c), d0), d1), d2), d3)
        _vstore(bias_target, b_off + j, _vadd(_vadd(_vadd(_vadd(b, d4), d5), d6), d7), c)


@_jit
def _add_outer(target, w_off, bias_target, b_off, n_out, x, rows, rows_off, x_base, n_in, m, scale, delta, d_off, nzi,
               n_nz):
    """For the ``m`` rows of a mini-batch (inputs, and the list of them, as in :func:`_affine`, row ``b``'s
    ``delta`` at ``d_off + b * n_out``), in row order: ``G[i, :] += x_i * (scale * delta)`` for every
    input ``i`` and ``g_bias += scale * delta``, where ``G`` and ``g_bias`` are at ``w_off`` and
    ``b_off`` in ``target`` and ``bias_target`` (usually the same array). That is the layer's summed
    weight gradient (``target`` a gradient buffer, ``scale = 1``), or its SGD step (``target`` is theta,
    ``scale = -eta / m``).

    Rows go eight at a time (:func:`_add_outer8`), the rest four at a time, so that each row of ``G``
    is loaded and stored once per group; the missing rows of a last, partial group of four have
    ``delta = 0`` and add exactly nothing.
    """
    lanes = _VEC_BYTES // target.itemsize
    nothing = _vsplat(target.dtype.type(0))
    s = _vsplat(scale)
    passes = _row_passes(n_out, target.itemsize)
    g8 = m - m % 8
    for g in range(0, g8, 8):
        _add_outer8(target, w_off, bias_target, b_off, n_out, x, rows, rows_off + g, x_base, n_in, scale, delta,
                    d_off + g * n_out, nzi, n_nz)
    for g in range(g8, m, 4):
        if g == m - 1:  # a last row alone (batch 1): one multiply-add per weight, not four
            x0 = x_base + rows[rows_off + g] * n_in
            for j in range(0, n_out, lanes):
                c = n_out - j
                d0 = _vmuladd(nothing, s, _vload(delta, d_off + g * n_out + j, c))
                for q0 in range(passes):
                    for q in range(q0, n_nz, passes):
                        i = nzi[q]
                        w = w_off + i * n_out + j
                        _vstore(target, w, _vmuladd(_vload(target, w, c), _vsplat(_get(x, x0 + i)), d0), c)
                _vstore(bias_target, b_off + j, _vadd(_vload(bias_target, b_off + j, c), d0), c)
            break
        b0, b1, b2, b3 = g, min(g + 1, m - 1), min(g + 2, m - 1), min(g + 3, m - 1)
        x0 = x_base + rows[rows_off + b0] * n_in
        x1 = x_base + rows[rows_off + b1] * n_in
        x2 = x_base + rows[rows_off + b2] * n_in
        x3 = x_base + rows[rows_off + b3] * n_in
        for j in range(0, n_out, lanes):
            c = n_out - j
            # scale * delta of each row
            d0 = _vmuladd(nothing, s, _vload(delta, d_off + b0 * n_out + j, c))
            d1 = _vmuladd(nothing, s, _vload(delta, d_off + b1 * n_out + j, c)) if g + 1 < m else nothing
            d2 = _vmuladd(nothing, s, _vload(delta, d_off + b2 * n_out + j, c)) if g + 2 < m else nothing
            d3 = _vmuladd(nothing, s, _vload(delta, d_off + b3 * n_out + j, c)) if g + 3 < m else nothing
            for q0 in range(passes):
                for q in range(q0, n_nz, passes):
                    i = nzi[q]
                    w = w_off + i * n_out + j
                    t = _vmuladd(_vload(target, w, c), _vsplat(_get(x, x0 + i)), d0)
                    t = _vmuladd(t, _vsplat(_get(x, x1 + i)), d1)
                    t = _vmuladd(t, _vsplat(_get(x, x2 + i)), d2)
                    t = _vmuladd(t, _vsplat(_get(x, x3 + i)), d3)
                    _vstore(target, w, t, c)
            b = _vadd(_vadd(_vadd(_vadd(_vload(bias_target, b_off + j, c), d0), d1), d2), d3)
            _vstore(bias_target, b_off + j, b, c)


@_jit
def _activate(a, start, stop, activation):
    """``a = f(z)`` in place on ``a[start:stop]`` (``z`` is stored there) for a hidden layer, a vector at a time."""
    lanes = _VEC_BYTES // a.itemsize
    for j in range(start, stop, lanes):
        z = _vload(a, j, stop - j)
        if activation == _SIGMOID:
            f = _vsigmoid(z)
        elif activation == _TANH:
            f = _vtanh(z)
        else:
            f = _vwhere_positive(z, z)
        _vstore(a, j, f, stop - j)


@_jit
def _output(a, a_off, m, n_out, cost, y, rows, rows_off, want_cost):
    """The output layer of ``m`` rows at ``a_off`` (row-major): each row's cost from its ``z``, then
    ``a`` in place (sigmoid, or softmax for log-likelihood). Returns the summed cost (float64) and
    the number of rows whose largest output (the first on ties) is their label, both 0 unless
    ``want_cost`` (labels ``y[rows[rows_off + b]]``).
    """
    zero = a.dtype.type(0)
    one = a.dtype.type(1)
    half = a.dtype.type(0.5)
    one_vector = n_out <= _VEC_BYTES // a.itemsize  # a row's outputs fit in one vector
    total = 0.0
    correct = 0
    if cost == _QUADRATIC:  # sigmoid outputs, the cost from them: all rows' sigmoids as vectors first
        _activate(a, a_off, a_off + m * n_out, np.int64(_SIGMOID))  # not a literal: no second compiled copy
    for b in range(m):
        z_off = a_off + b * n_out
        label = y[rows[rows_off + b]] if want_cost else -1
        row_cost = zero
        if cost == _LOG_LIKELIHOOD:
            # -ln softmax(z)[label] = z_max + ln(sum exp(z - z_max)) - z[label]
            z_max = a[z_off]
            for j in range(z_off + 1, z_off + n_out):
                if a[j] > z_max:
                    z_max = a[j]
            z_label = a[z_off + label] if want_cost else zero
            if one_vector:  # the exponentials as a vector, the lanes past n_out kept out of the sum
                e = _vkeep(_vexp_nonpositive(_vsub(_vload(a, z_off, n_out), _vsplat(z_max))), n_out)
                sum_e = _vsum(e)
                _vstore(a, z_off, _vdiv(e, _vsplat(sum_e)), n_out)
            else:
                sum_e = zero
                for j in range(z_off, z_off + n_out):
                    e_j = np.exp(a[j] - z_max)
                    a[j] = e_j
                    sum_e += e_j
                for j in range(z_off, z_off + n_out):
                    a[j] = a[j] / sum_e
            if want_cost:
                row_cost = z_max + np.log(sum_e) - z_label
        elif cost == _QUADRATIC:
            if want_cost and one_vector:  # a - y as a vector: a with a - 1 in the label's lane
                d = _vinsert(_vload(a, z_off, n_out), label, a[z_off + label] - one)
                row_cost = half * _vsum(_vmul(d, d))
            elif want_cost:
                for j in range(n_out):
                    aj = a[z_off + j]
                    d = aj - one if j == label else aj
                    row_cost += half * (d * d)
        else:
            for j in range(n_out):
                zj = a[z_off + j]
                e = np.exp(-abs(zj))
                p = one / (one + e)
                q = e / (one + e)
                aj = p if zj >= zero else q
                if want_cost:  # cross-entropy: -ln a = softplus(-z), -ln(1 - a) = softplus(z), never log(0)
                    t = -zj if j == label else zj
                    row_cost += (t if t > zero else zero) + np.log1p(e)
                a[z_off + j] = aj
        total += row_cost
        if want_cost:
            # The first largest output; a NaN output is never larger, and a NaN first output stays the answer.
            best = 0
            if one_vector:
                if a[z_off] == a[z_off]:
                    best = _vargmax(_vload(a, z_off, n_out), n_out)
            else:
                for j in range(1, n_out):
                    if a[z_off + j] > a[z_off + best]:
                        best = j
            correct += best == label
    return total, correct


@_jit
def _output_delta(a, delta, off, m, n_out, cost, y, rows, rows_off):
    """``delta`` of the output layer: ``a - y``, times ``a (1 - a)`` for the quadratic cost. The rows'
    outputs are contiguous: all are done as ``a`` (times ``a (1 - a)``) a vector at a time, then each
    row's label entry again with ``a - 1`` (the same operations as one element at a time)."""
    one = a.dtype.type(1)
    lanes = _VEC_BYTES // a.itemsize
    stop = off + m * n_out
    if cost == _QUADRATIC:
        ones = _vsplat(one)
        for k in range(off, stop, lanes):
            av = _vload(a, k, stop - k)
            _vstore(delta, k, _vmul(_vmul(av, av), _vsub(ones, av)), stop - k)
    else:
        for k in range(off, stop, lanes):
            _vstore(delta, k, _vload(a, k, stop - k), stop - k)
    for b in range(m):
        k = off + b * n_out + y[rows[rows_off + b]]
        d = a[k] - one
        if cost == _QUADRATIC:
            d = d * a[k] * (one - a[k])
        delta[k] = d


@_jit
def _hidden_delta(theta, w_off, n_in, n_out, m, delta, d_off, a, p_off, activation, wt):
    """``delta_prev = (delta @ W.T) * f'(z_prev)`` for ``m`` rows, ``f'`` from ``a_prev`` (at ``p_off``);
    ``delta_prev`` goes to ``delta[p_off:]`` (the layout of ``a``). Uses ``W`` as it is: call before its step.

    From eight rows on, ``W`` is first transposed into the scratch ``wt`` (``n_out x n_in``), so that a
    row's ``delta_prev`` is ``n_out`` vector multiply-adds along ``i`` (as the C++ kernels do); fewer
    rows take one sum across a vector's lanes per ``(row, i)``, cheaper than the transposition then
    (batch 10-1000: 4-7% faster epochs; batch 1: the same).
    """
    lanes = _VEC_BYTES // theta.itemsize
    zero = theta.dtype.type(0)
    one = theta.dtype.type(1)
    if m >= 8:
        for i in range(n_in):
            for j in range(n_out):
                wt[j * n_in + i] = _get(theta, w_off + i * n_out + j)
        for g in range(0, m, 4):  # four rows at a time: four independent sums (a last group repeats its last row)
            b0, b1, b2, b3 = g, min(g + 1, m - 1), min(g + 2, m - 1), min(g + 3, m - 1)
            for i in range(0, n_in, lanes):
                c = n_in - i
                acc0 = _vsplat(zero)
                acc1, acc2, acc3 = acc0, acc0, acc0
                for j in range(n_out):
                    w = _vload(wt, j * n_in + i, c)
                    acc0 = _vmuladd(acc0, _vsplat(_get(delta, d_off + b0 * n_out + j)), w)
                    acc1 = _vmuladd(acc1, _vsplat(_get(delta, d_off + b1 * n_out + j)), w)
                    acc2 = _vmuladd(acc2, _vsplat(_get(delta, d_off + b2 * n_out + j)), w)
                    acc3 = _vmuladd(acc3, _vsplat(_get(delta, d_off + b3 * n_out + j)), w)
                _vstore(delta, p_off + b0 * n_in + i, acc0, c)
                _vstore(delta, p_off + b1 * n_in + i, acc1, c)
                _vstore(delta, p_off + b2 * n_in + i, acc2, c)
                _vstore(delta, p_off + b3 * n_in + i, acc3, c)
    else:
        for b in range(m):
            for i in range(n_in):
                acc = _vsplat(zero)
                for j in range(0, n_out, lanes):
                    c = n_out - j
                    w = _vload(theta, w_off + i * n_out + j, c)
                    acc = _vmuladd(acc, w, _vload(delta, d_off + b * n_out + j, c))
                delta[p_off + b * n_in + i] = _vsum(acc)
    # times f'(z_prev), a vector at a time
    stop = p_off + m * n_in
    if activation == _RELU:
        for k in range(p_off, stop, lanes):
            c = stop - k
            _vstore(delta, k, _vwhere_positive(_vload(a, k, c), _vload(delta, k, c)), c)
        return
    ones = _vsplat(one)
    for k in range(p_off, stop, lanes):
        c = stop - k
        av = _vload(a, k, c)
        slope = _vmul(av, _vsub(ones, av)) if activation == _SIGMOID else _vsub(ones, _vmul(av, av))
        _vstore(delta, k, _vmul(_vload(delta, k, c), slope), c)


@_jit
def _general_step(theta, G, velocity, start, bias_start, stop, m, eta, momentum, l2):
    """The step of ``theta[start:stop]`` (weights up to ``bias_start``, then biases) from the summed
    gradient ``G`` of ``m`` rows: ``g = G / m + l2 * W`` (``G / m`` for biases); then
    ``theta -= eta * g``, or with momentum ``velocity = momentum * velocity - eta * g; theta += velocity``.
    """
    lanes = _VEC_BYTES // theta.itemsize
    nothing = _vsplat(theta.dtype.type(0))
    per_row = _vsplat(theta.dtype.type(1) / theta.dtype.type(m))
    minus_eta = _vsplat(-eta)
    decay = _vsplat(l2)
    for segment in range(2):  # weights, then biases
        lo, hi = (start, bias_start) if segment == 0 else (bias_start, stop)
        for k in range(lo, hi, lanes):
            c = hi - k
            t = _vload(theta, k, c)
            g = _vmuladd(nothing, _vload(G, k, c), per_row)
            if segment == 0:
                g = _vmuladd(g, decay, t)
            if momentum == 0:
                _vstore(theta, k, _vmuladd(t, minus_eta, g), c)
            else:
                v = _vmuladd(_vmuladd(nothing, _vsplat(momentum), _vload(velocity, k, c)), minus_eta, g)
                _vstore(velocity, k, v, c)
                _vstore(theta, k, _vadd(t, v), c)


@_jit
def _all_finite(a, start, stop):
    """Whether ``a[start:stop]`` is all finite (``v - v`` is 0 for finite ``v``, NaN otherwise)."""
    acc = a.dtype.type(0)
    for k in range(start, stop):
        acc += a[k] - a[k]
    return acc == acc


@_jit
def _layer_offsets(sizes, batch_size):
    """Offsets of each layer's ``W`` and bias in theta, and of its block (``batch_size x sizes[l + 1]``)
    in the work arrays ``acts`` and ``deltas``."""
    n_layers = sizes.shape[0] - 1
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
    return w_off, b_off, a_off


@_jit
def _every_input(sizes):
    """The list of all inputs of the widest layer, for the layers whose inputs are not screened for zeros
    (with room for :func:`_nonzero_inputs`' last store when used as its output)."""
    widest = 0
    for l in range(sizes.shape[0]):
        widest = max(widest, sizes[l])
    return np.arange(widest + _VEC_BYTES // 4, dtype=np.int32)


@_jit
def _hidden_scratch(theta, sizes):
    """Scratch for :func:`_hidden_delta`'s transposed ``W`` (the largest layer after the first)."""
    hidden_w = 1
    for l in range(1, sizes.shape[0] - 1):
        hidden_w = max(hidden_w, sizes[l] * sizes[l + 1])
    return np.empty(hidden_w, theta.dtype)


@_inline
def _upper_forward(theta, sizes, activation, cost, y, order, r0, m, w_off, b_off, a_off, acts, identity,
                   every_input):
    """The forward pass from the first layer's ``z`` (in ``acts`` at ``a_off[0]``) of the ``m`` rows at
    ``order[r0]``: the first layer's activations, the other layers, and the output layer's cost and correct
    count (as :func:`_output`)."""
    n_layers = sizes.shape[0] - 1
    no_offset = w_off[0] * 0
    for l in range(n_layers):
        n_out = sizes[l + 1]
        if l > 0:
            _affine(acts, identity, no_offset, a_off[l - 1], sizes[l], m, theta, w_off[l], theta, b_off[l], n_out,
                    acts, a_off[l], every_input, sizes[l])
        if l < n_layers - 1:
            _activate(acts, a_off[l], a_off[l] + m * n_out, activation)
    return _output(acts, a_off[n_layers - 1], m, sizes[n_layers], cost, y, order, r0, y.shape[0] > 0)


@_inline
def _upper_backward(theta, sizes, activation, cost, y, order, r0, m, target, scale, w_off, b_off, a_off, acts, deltas,
                    identity, every_input, wt):
    """The backward pass of the ``m`` rows at ``order[r0]`` down to the first layer's deltas (in ``deltas`` at
    ``a_off[0]``): the output layer's deltas, then for each layer above the first, the deltas of the layer
    below (from ``W`` before its step) and ``W``'s update into ``target`` (as :func:`_add_outer`). (The same
    operations as :func:`_upper_deltas` then :func:`_upper_updates`, each update right after the deltas it
    takes: on one thread, 4-7% faster at batch 10 than all updates after all deltas.)"""
    n_layers = sizes.shape[0] - 1
    no_offset = w_off[0] * 0
    _output_delta(acts, deltas, a_off[n_layers - 1], m, sizes[n_layers], cost, y, order, r0)
    for l in range(n_layers - 1, 0, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        _hidden_delta(theta, w_off[l], n_in, n_out, m, deltas, a_off[l], acts, a_off[l - 1], activation, wt)
        _add_outer(target, w_off[l], target, b_off[l], n_out, acts, identity, no_offset, a_off[l - 1], n_in, m, scale,
                   deltas, a_off[l], every_input, n_in)


@_inline
def _upper_deltas(theta, sizes, activation, cost, y, order, r0, m, w_off, a_off, acts, deltas, wt):
    """The deltas of the ``m`` rows at ``order[r0]``: the output layer's, then for each layer above the first
    those of the layer below, from ``W`` before its step, down to the first layer's (in ``deltas`` at
    ``a_off[0]``)."""
    n_layers = sizes.shape[0] - 1
    _output_delta(acts, deltas, a_off[n_layers - 1], m, sizes[n_layers], cost, y, order, r0)
    for l in range(n_layers - 1, 0, -1):
        _hidden_delta(theta, w_off[l], sizes[l], sizes[l + 1], m, deltas, a_off[l], acts, a_off[l - 1], activation,
                      wt)


@_inline
def _upper_updates(sizes, m, target, scale, w_off, b_off, a_off, acts, deltas, identity, every_input):
    """The updates of the layers above the first into ``target`` (as :func:`_add_outer`), from the deltas of
    :func:`_upper_deltas` (no layer's deltas depend on an update: the same results in either order)."""
    no_offset = w_off[0] * 0
    for l in range(sizes.shape[0] - 2, 0, -1):
        n_in = sizes[l]
        _add_outer(target, w_off[l], target, b_off[l], sizes[l + 1], acts, identity, no_offset, a_off[l - 1], n_in, m,
                   scale, deltas, a_off[l], every_input, n_in)


@_inline
def _layers_step(theta, sizes, G, velocity, first, m, eta, momentum, l2, w_off, b_off):
    """:func:`_general_step` of layers ``first ..`` from the summed gradient ``G``."""
    for l in range(first, sizes.shape[0] - 1):
        _general_step(theta, G, velocity, w_off[l], b_off[l], b_off[l] + sizes[l + 1], m, eta, momentum, l2)


@_jit
def _update_target(theta, G, m, mode, eta):
    """Where a backward pass puts its updates, and their scale: theta itself with ``-eta / m`` (plain SGD,
    fused), else the gradient buffer ``G`` with 1."""
    if mode == _STEP_SGD:
        return theta, -(eta / theta.dtype.type(m))
    return G, theta.dtype.type(1)


@_jit
def _run_batches(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, mode,
                 eta, momentum, velocity, l2, out, acts, deltas, identity):
    """Mini-batches ``order[r : r + batch_size]`` for ``r`` in ``range(start, stop, batch_size)`` (the
    last one cut at ``stop``) of the rows of ``X`` (flat, ``(n, sizes[0])``): forward pass, then what
    ``mode`` says. Returns the summed row cost (0 when ``y`` is empty).

    ``out``: in ``_FORWARD`` mode the flat ``(n, sizes[-1])`` output activations, indexed by row of
    ``X``; in ``_ACCUMULATE`` mode theta-shaped, the summed gradient is added to it; in
    ``_STEP_GENERAL`` mode theta-shaped scratch. Scratch: ``acts`` and ``deltas`` of
    ``batch_size * sum(sizes[1:])``, ``identity = arange(batch_size)``.

    The second value returned is the number of rows classified correctly (labels given), except in
    ``_FORWARD`` mode: there it is the number of mini-batches with a first-layer weighted input that
    is NaN or infinite (so callers need no separate pass over ``X`` looking for NaN).
    """
    zero = theta.dtype.type(0)
    n_layers = sizes.shape[0] - 1
    n_in0 = sizes[0]
    n_out0 = sizes[1]
    n_classes = sizes[n_layers]
    eta_ = theta.dtype.type(eta)
    momentum_ = theta.dtype.type(momentum)
    l2_ = theta.dtype.type(l2)
    w_off, b_off, a_off = _layer_offsets(sizes, batch_size)
    out_layer = a_off[n_layers - 1]
    # 0, as a variable: for a literal 0 argument numba would compile a second copy of the callee
    no_offset = w_off[0]
    # Inputs to compute (see _nonzero_inputs): the first layer's, listed per mini-batch when it is
    # trained (forward passes alone take blocks of 256 rows, where few inputs are zero in every row);
    # every input of the other layers.
    every_input = _every_input(sizes)
    first_inputs = every_input.copy()
    n_first = n_in0
    wt = _hidden_scratch(theta, sizes)

    total = 0.0
    correct = 0
    nonfinite = 0
    for r0 in range(start, stop, batch_size):
        m = min(batch_size, stop - r0)
        if mode != _FORWARD:
            # the next mini-batch's rows, fetched from memory while this one is computed
            _prefetch_rows(X, order, r0 + m, min(r0 + m + batch_size, stop), n_in0, no_offset, n_in0)
            n_first = _nonzero_inputs(X, order, r0, no_offset, n_in0, n_in0, m, first_inputs)

        # ---- forward: z = a_prev @ W + b (built where a will be), a = f(z)
        _affine(X, order, r0, no_offset, n_in0, m, theta, w_off[0], theta, b_off[0], n_out0, acts, a_off[0],
                first_inputs, n_first)
        if mode == _FORWARD and not _all_finite(acts, a_off[0], a_off[0] + m * n_out0):
            nonfinite += 1
        batch_cost, batch_correct = _upper_forward(theta, sizes, activation, cost, y, order, r0, m, w_off, b_off,
                                                   a_off, acts, identity, every_input)  # fmt: skip
        total += batch_cost
        correct += batch_correct

        if mode == _FORWARD:
            for b in range(m):
                row = order[r0 + b]
                for j in range(n_classes):
                    out[row * n_classes + j] = acts[out_layer + b * n_classes + j]
            continue

        # ---- backward: delta of the output layer, then, layer by layer down, delta of the layer
        # below (from W before its step) and W's gradient or step
        if mode == _STEP_GENERAL:
            out[:] = zero
        target, scale = _update_target(theta, out, m, mode, eta_)
        _upper_backward(theta, sizes, activation, cost, y, order, r0, m, target, scale, w_off, b_off, a_off, acts,
                        deltas, identity, every_input, wt)  # fmt: skip
        _add_outer(target, w_off[0], target, b_off[0], n_out0, X, order, r0, no_offset, n_in0, m, scale, deltas,
                   a_off[0], first_inputs, n_first)
        if mode == _STEP_GENERAL:
            _layers_step(theta, sizes, out, velocity, 0, m, eta_, momentum_, l2_, w_off, b_off)
    return total, (nonfinite if mode == _FORWARD else correct)


# --------------------------------------------------------------------------------------------
# Mini-batches of _SLICED_MIN_ROWS rows or more: the gradient summed in _SLICES fixed slices of
# rows (their own buffers, added in a fixed order, then one step), so that the slices can run on
# Numba's threads in fit (see _team_batches) and one after the other in train_many with the same
# result. (Below that size, a slice is too little work to share: threads would meet every few
# microseconds, and the small mini-batches' fused step needs the rows in one sequence.)

_SLICES = 4
_SLICED_MIN_ROWS = 64
# Below this many rows two slices (as in the C++ kernels): fewer partial groups of rows and fewer
# gradient buffers to add (batch 100 on one thread: about 0.078 -> 0.065 s).
_FOUR_SLICES_MIN_ROWS = 256


# A slice's rows go through _run_batches in parts of this many rows (a multiple of 8: the same groups
# of rows, added in the same order, as one part would give), each part with its own list of the
# inputs that are not zero in every row: fewer rows, more zeros in common (on MNIST, 47% of the pixels
# are zero in all of 16 rows, 38% in all of 50).
_SLICE_PART_ROWS = 16


@_jit
def _n_slices(m):
    """Slices of an ``m``-row mini-batch: fixed by ``m`` alone, never by the thread count."""
    return _SLICES if m >= _FOUR_SLICES_MIN_ROWS else 2


@_inline
def _slice_gradient(theta, sizes, activation, cost, X, y, order, r0, m, s, G, acts, deltas, identity):
    """Slice ``s`` of the ``m``-row mini-batch at ``order[r0]``: its rows' summed gradient into
    ``G[s]`` (overwritten); returns their summed cost and correct count."""
    ns = _n_slices(m)
    lo = r0 + m * s // ns
    hi = r0 + m * (s + 1) // ns
    G[s, :] = 0
    if hi == lo:
        return 0.0, 0
    part = min(hi - lo, _SLICE_PART_ROWS)
    return _run_batches(theta, sizes, activation, cost, X, y, order, lo, hi, part, _ACCUMULATE, 0.0, 0.0,
                        theta[:0], 0.0, G[s], acts[s], deltas[s], identity)


@_jit
def _add_range(a, b, lo, hi):
    """``a[lo:hi] += b[lo:hi]`` for flat arrays, a vector at a time (Numba's own ``G[0, :] += G[1, :]`` runs
    element by element: 5.7 us for 13,002 float32, against 1.0)."""
    lanes = _VEC_BYTES // a.itemsize
    for k in range(lo, hi, lanes):
        c = hi - k
        _vstore(a, k, _vadd(_vload(a, k, c), _vload(b, k, c)), c)


@_inline
def _sliced_step(theta, sizes, G, m, eta, momentum, velocity, l2, lo, hi):
    """Add the slices' gradients in order into ``G[0]``, then step every layer from it: on
    ``theta[lo:hi]`` only (element by element: any split of theta into ranges gives the same result)."""
    for s in range(1, _n_slices(m)):
        _add_range(G[0], G[s], lo, hi)
    offset = 0
    for l in range(sizes.shape[0] - 1):
        bias_start = offset + sizes[l] * sizes[l + 1]
        stop = bias_start + sizes[l + 1]
        # this layer's weights and biases within lo .. hi
        a, b, e = min(max(offset, lo), hi), min(max(bias_start, lo), hi), min(max(stop, lo), hi)
        if e > a:
            _general_step(theta, G[0], velocity, a, b, e, m, eta, momentum, l2)
        offset = stop


@_jit
def _sliced_batches(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, eta, momentum, velocity,
                    l2, G, acts, deltas, identity, total, correct):
    """``_run_batches`` in ``_STEP_GENERAL`` mode for mini-batches of ``_SLICED_MIN_ROWS`` rows or more, the slices
    one after the other (the form train_many runs inside each network's thread); the cost and correct count are
    summed on from ``total`` and ``correct``."""
    eta_, momentum_, l2_ = theta.dtype.type(eta), theta.dtype.type(momentum), theta.dtype.type(l2)
    for r0 in range(start, stop, batch_size):
        m = min(batch_size, stop - r0)
        for s in range(_n_slices(m)):
            c, k = _slice_gradient(theta, sizes, activation, cost, X, y, order, r0, m, s, G, acts, deltas, identity)
            total += c
            correct += k
        _sliced_step(theta, sizes, G, m, eta_, momentum_, velocity, l2_, 0, theta.shape[0])
    return total, correct


# Two or more threads share an epoch's large mini-batches as a team, started once per epoch (a start
# per mini-batch costs a fork and a join each time, and on a busy host a thread that is late to one
# of them holds up the other; a start per chunk of mini-batches, so that Python sees Ctrl-C between
# them, cost 2-6% of an epoch at batch 100 and 1000 on two threads: the leader now comes back to
# Python between chunks while the helpers wait for its next phase). The calling thread leads: it
# runs the loop over mini-batches, and publishes each mini-batch as two phases of tasks, its slices
# and then its parameter step in _STEP_CHUNKS ranges of theta; every member claims tasks one at a
# time. A member that is late (or starts only when the leader is done) only leaves more tasks to the
# others, and the leader waits only for tasks already claimed, so no thread ever waits for one that
# has not started. Which member runs a task never changes the result.

# Words of the team's int64 array; each counter on a 64-byte line of its own.
_T_CLAIM = 0  # (phase number << 32) | a bit per task of the phase, set when claimed; 0 before the first phase
_T_DONE = 8  # tasks of the current phase finished
_T_OVER = 16  # set when the leader is done with the team's rows
_T_SLOTS = 24  # phase p's mini-batch (first row, row count), its kind and its number of tasks: 4 words from
#               _T_SLOTS + 4 * (p & 1)
_T_HELD = 32  # set by the leader when it waited for a helper's claimed task for _STALL_SPINS tries or more
_TEAM_WORDS = 40
_SLICES_PHASE, _STEP_PHASE, _PARTS_PHASE = 0, 1, 2
_STEP_CHUNKS = 4


@_inline
def _step_chunk(theta, sizes, G, m, chunk, eta, momentum, velocity, l2):
    """:func:`_sliced_step` on chunk ``chunk`` of ``_STEP_CHUNKS`` ranges of theta (whole vectors)."""
    n = theta.shape[0]
    lanes = _VEC_BYTES // theta.itemsize
    vecs = (n + lanes - 1) // lanes
    lo = min(vecs * chunk // _STEP_CHUNKS * lanes, n)
    hi = min(vecs * (chunk + 1) // _STEP_CHUNKS * lanes, n)
    _sliced_step(theta, sizes, G, m, eta, momentum, velocity, l2, lo, hi)


@_jit
def _team_claim(team, first):
    """Claim a task of the current phase, the first unclaimed one from task ``first`` on (then from 0): returns
    ``(i, r0, m, kind)`` with the task's number ``i``, or ``i = -1`` if none is left, ``-2`` if another member
    claimed it first (try again). The leader starts from task 0 and the others from task 1, so that with two
    threads each usually keeps its own task from phase to phase (and the data it works on in its caches)."""
    c = _atomic_load(team, _T_CLAIM)
    p = c >> 32
    if p == 0:
        return -1, 0, 0, 0
    slot = _T_SLOTS + 4 * (p & 1)
    r0 = _atomic_load(team, slot)
    m = _atomic_load(team, slot + 1)
    kind = _atomic_load(team, slot + 2)
    tasks = _atomic_load(team, slot + 3)
    i = -1
    for j in range(tasks):
        t = (first + j) % tasks
        if (c >> t) & 1 == 0:
            i = t
            break
    if i < 0:
        return -1, 0, 0, 0
    # If the claim succeeds, phase p is still the current one (so r0, m and kind were its own), and stays
    # so until this task is counted as done.
    if not _atomic_cas(team, _T_CLAIM, c, c | (1 << i)):
        return -2, 0, 0, 0
    return i, r0, m, kind


@_jit
def _team_task_done(team):
    _atomic_add(team, _T_DONE, 1)


@_jit
def _team_publish(team, p, r0, m, kind, tasks):
    """The leader opens phase ``p``: ``tasks`` tasks of ``kind`` for the mini-batch of ``m`` rows at ``order[r0]``."""
    slot = _T_SLOTS + 4 * (p & 1)
    _atomic_store(team, slot, r0)
    _atomic_store(team, slot + 1, m)
    _atomic_store(team, slot + 2, kind)
    _atomic_store(team, slot + 3, tasks)
    _atomic_store(team, _T_DONE, 0)
    _atomic_store(team, _T_CLAIM, p << 32)


@_jit
def _team_wait(team, tasks):
    """The leader, after running its share of a phase: wait for the tasks other members claimed. A wait of
    ``_STALL_SPINS`` tries or more (a helper lost its processor in the middle of a task) is noted in
    ``team[_T_HELD]`` for :class:`_TeamChoice`."""
    spins = 0
    while _atomic_load(team, _T_DONE) < tasks:
        _spin_pause()
        spins += 1
    if spins >= _STALL_SPINS:
        team[_T_HELD] = 1


@_inline
def _team_run_one(team, first, theta, sizes, activation, cost, X, y, order, eta, momentum, velocity, l2, G, acts,
                  deltas, identity, costs, hits):
    """Claim and run one task of the current phase: 1 if one ran, 0 if none is left, -1 if another member
    claimed it first (try again)."""
    i, r0, m, kind = _team_claim(team, first)
    if i < 0:
        return i + 1
    if kind == _SLICES_PHASE:
        costs[i], hits[i] = _slice_gradient(theta, sizes, activation, cost, X, y, order, r0, m, i, G, acts, deltas,
                                            identity)  # fmt: skip
    else:
        _step_chunk(theta, sizes, G, m, i, eta, momentum, velocity, l2)
    _team_task_done(team)
    return 1


@_inline
def _team_phase(team, p, r0, m, kind, tasks, theta, sizes, activation, cost, X, y, order, eta, momentum, velocity,
                l2, G, acts, deltas, identity, costs, hits):
    """The leader: publishes phase ``p`` (``tasks`` tasks of ``kind`` for the mini-batch of ``m`` rows at
    ``order[r0]``), runs its share, and returns when every task is done."""
    _team_publish(team, p, r0, m, kind, tasks)
    while _team_run_one(team, 0, theta, sizes, activation, cost, X, y, order, eta, momentum, velocity, l2, G, acts,
                        deltas, identity, costs, hits) != 0:  # fmt: skip
        pass
    _team_wait(team, tasks)


@_jit
def _team_lead(team, theta, sizes, activation, cost, X, y, order, start, stop, batch_size, eta, momentum, velocity,
               l2, G, acts, deltas, identity, costs, hits, total, correct):
    """The leader's part of :func:`_team_batches` over the mini-batches of rows ``start`` to ``stop``: returns their
    cost and correct count, summed on from ``total`` and ``correct``. Its phases are numbered on from the team's
    last one, so the team's helpers can go on from one call to the next."""
    p = _atomic_load(team, _T_CLAIM) >> 32
    for r0 in range(start, stop, batch_size):
        m = min(batch_size, stop - r0)
        ns = _n_slices(m)
        _team_phase(team, p + 1, r0, m, _SLICES_PHASE, ns, theta, sizes, activation, cost, X, y, order, eta,
                    momentum, velocity, l2, G, acts, deltas, identity, costs, hits)  # fmt: skip
        for s in range(ns):
            total += costs[s]
            correct += hits[s]
        _team_phase(team, p + 2, r0, m, _STEP_PHASE, _STEP_CHUNKS, theta, sizes, activation, cost, X, y, order,
                    eta, momentum, velocity, l2, G, acts, deltas, identity, costs, hits)  # fmt: skip
        p += 2
    return total, correct


@_jit
def _team_help(team, theta, sizes, activation, cost, X, y, order, eta, momentum, velocity, l2, G, acts, deltas,
               identity, costs, hits, tries):
    """A member of the team that does not lead: claims and runs tasks until the leader is done (returns -1), or
    until it has found none for ``tries`` tries in a row (returns the number of tasks it ran; see
    :func:`_helping`)."""
    ran = 0
    idle = 0
    while _atomic_load(team, _T_OVER) == 0:
        r = _team_run_one(team, 1, theta, sizes, activation, cost, X, y, order, eta, momentum, velocity, l2, G, acts,
                          deltas, identity, costs, hits)  # fmt: skip
        if r == 0:
            idle += 1
            if idle >= tries:
                return ran
            _spin_pause()
        elif r == 1:
            ran += 1
            idle = 0
    return -1


def _team_stop(team, wake=None):
    team[_T_OVER] = 1
    if wake is not None:
        wake.set()  # a helper asleep (see _helping) sees it now


# A team on a busy host. A team is faster than one thread only while its members run at the same time:
# with more runnable threads than cores (other programs, or the team's own threads pinned to one core)
# each mini-batch waits for a member that is not running, and an epoch took 1.4-2.5 times as long as on
# one thread. So the leader chooses, for each of its calls (a window of rows, about _WORK_PER_WINDOW
# products: 1-2 ms at MNIST's size), between its team and working alone (the serial kernel), as the C++
# kernels' teams do for each window of phases (team_sample in cpp/kernels_impl.hpp), with the same
# constants: a call in which it ran for less than _MIN_BUSY of the time or waited for a helper's task for
# _STALL_SPINS tries calls for a trial alone; it then keeps the faster way (the team only where it is
# _TEAM_MARGIN faster than alone): alone for stints, each ended by a trial of the team, that double from
# _FIRST_STINT while alone stays faster; or with the team, without a trial alone for a calm that doubles
# each time the trial loses. The leader wakes its helpers before each call with the team (see _helping).
# Which way a call runs never changes its results.
_MIN_BUSY = 0.8
_TEAM_MARGIN = 1.1
_FIRST_STINT, _LAST_STINT = 0.002, 0.256  # seconds of the leader's calls
_LONGEST_SPAN = 8  # windows up to this many times as long while the team goes on (see _TeamChoice.span)
_STALL_SPINS = 40000  # pauses (about 25 ns each here): a millisecond
# An idle helper returns to Python after _IDLE_SPINS tries (about 0.2 ms) and sleeps there, _FIRST_NAP
# and then twice as long each time up to _LAST_NAP, until it finds a task again or the leader wakes it
# (see _helping).
_IDLE_SPINS = 8192
_FIRST_NAP, _LAST_NAP = 20e-6, 0.02
# The choices, per thread and kind of team, kept from call to call (an epoch is one call of a team).
_choices = threading.local()


class _TeamChoice:
    """The leader's choice between its team and working alone (see above): ``alone`` says how its next call
    runs; :meth:`record` takes that call's rows, seconds (0: not timed) and processor seconds and whether a
    helper held it up."""

    def __init__(self) -> None:
        self.alone = self.trial = False
        # Time is counted in the leader's own calls (their seconds summed), so that a stint or a calm goes on
        # where it was in the next epoch however long the caller took in between.
        self.clock = 0.0
        self.until = 0.0  # keep the current way, without a trial, until then (on self.clock)
        self.stint = self.calm = _FIRST_STINT
        self.team_rate = self.solo_rate = 0.0
        # Windows (see _led_chunks) of this many times the shortest: doubling while the team goes on without
        # a trial, up to _LONGEST_SPAN (each return to Python between windows costs the team a few percent at
        # batch 10 with the shortest), the shortest again from any trial on.
        self.span = 1
        self.rows = self.rows_alone = 0  # over the epoch (see _team_last_epoch)

    def record(self, rows: int, seconds: float, cpu: float, held_up: bool) -> None:
        self.rows += rows
        if self.alone:
            self.rows_alone += rows
        if seconds <= 0.0:
            return
        self.clock = now = self.clock + seconds
        rate = rows / seconds
        if not self.alone:
            self.team_rate = rate
            if self.trial:  # the team again, after a stint alone
                self.trial = False
                if rate < _TEAM_MARGIN * self.solo_rate:
                    self.alone = True
                    self.stint = min(2 * self.stint, _LAST_STINT)
                    self.until = now + self.stint
                else:
                    self.stint = _FIRST_STINT
            elif now >= self.until and (held_up or cpu < _MIN_BUSY * seconds):
                self.alone = self.trial = True
            else:
                self.span = min(2 * self.span, _LONGEST_SPAN)
            if self.alone:
                self.span = 1
        else:
            self.solo_rate = rate
            if self.trial:  # alone, for the first time since the team last won
                self.trial = False
                if _TEAM_MARGIN * rate > self.team_rate:
                    self.calm = _FIRST_STINT
                    self.until = now + self.stint
                else:
                    self.alone = False
                    self.calm = min(2 * self.calm, _LAST_STINT)
                    self.until = now + self.calm
            elif now >= self.until:
                self.alone = False
                self.trial = True
            self.span = 1


def _team_choice(key: tuple) -> _TeamChoice:
    """The calling thread's choice for teams of ``key``, a new epoch's counts set to zero."""
    table = getattr(_choices, "table", None)
    if table is None:
        table = _choices.table = {}
    choice = table.get(key)
    if choice is None:
        choice = table[key] = _TeamChoice()
    choice.rows = choice.rows_alone = 0
    _choices.last = choice
    return choice


def _team_last_epoch() -> tuple[int, int]:
    """The calling thread's last epoch trained by a team: (rows its leader ran alone, rows); (0, 0) if none."""
    last = getattr(_choices, "last", None)
    return (0, 0) if last is None else (last.rows_alone, last.rows)


def _helping(run, wake):
    """A helper's part in a team: ``run(tries)`` (:func:`_team_help` or :func:`_parts_help`) until the leader is
    done, sleeping once it has found no task for _IDLE_SPINS tries (and after each single try while it finds
    none), so that a helper whose leader works alone leaves the core to others. The leader sets ``wake`` (a
    :class:`threading.Event`) before each of its calls with the team, and when it is done: the helper then
    tries _IDLE_SPINS times again."""
    nap, tries = _FIRST_NAP, _IDLE_SPINS
    while True:
        wake.clear()
        ran = run(tries)
        if ran < 0:
            return
        if ran > 0:
            nap, tries = _FIRST_NAP, _IDLE_SPINS
        else:
            nap, tries = min(2 * nap, _LAST_NAP), 1
        if wake.wait(nap):
            nap, tries = _FIRST_NAP, _IDLE_SPINS


def _led_chunks(choice, team, wake, chunk, window, start, stop, lead):
    """:func:`_chunks` for a team's leader: the summed ``(cost, correct)`` over ranges of ``chunk`` rows (None:
    all), each range's sums taken by calls ``lead(lo, hi, alone, total, correct)`` over windows of ``window`` rows
    (a multiple of the mini-batch; times ``choice.span``) that sum on from the call before, as one call over the
    range would; each window with or without the team as ``choice`` says (``wake`` set before each window with
    the team), and timed for it."""
    step = max(stop - start if chunk is None else chunk, 1)
    window = max(min(window, step), 1)
    total, correct = 0.0, 0
    compiled = _serial_compiled()
    for lo in range(start, stop, step):
        hi = min(lo + step, stop)
        c, k = 0.0, 0
        a = lo
        while a < hi:
            b = min(a + window * choice.span, hi)
            alone = choice.alone
            if not alone:
                wake.set()
            team[_T_HELD] = 0
            t0, c0 = time.perf_counter(), time.thread_time()
            c, k = lead(a, b, alone, c, k)
            seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
            if alone and _serial_compiled() != compiled:  # the serial kernel compiled in this window: not timed
                compiled = _serial_compiled()
                seconds = 0.0
            choice.record(b - a, seconds, cpu, bool(team[_T_HELD]))
            a = b
        total += c
        correct += k
    return total, correct


def _serial_compiled():
    """How many versions of the serial kernels a leader runs alone are compiled (or loaded from Numba's cache):
    they are compiled when first needed, not when a team starts (that would add seconds to every first
    ``fit`` with a cold cache, for a way most teams never take)."""
    return len(_split_batches.overloads) + len(_sliced_batches.overloads)


def _window(theta, batch_size):
    """Rows per window of a team's leader (see :func:`_led_chunks`): whole mini-batches, about _WORK_PER_WINDOW
    row x parameter products."""
    return batch_size * max(1, int(_WORK_PER_WINDOW / (theta.shape[0] * batch_size)))


def _team_batches(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, eta, momentum, velocity,
                  l2, G, acts, deltas, identity, members, chunk=None):
    """:func:`_sliced_batches` run by a team of ``members`` threads: the same result. With ``chunk`` (a multiple
    of ``batch_size``), the leader comes back to Python after every ``chunk`` rows (so that Ctrl-C stops the
    epoch there, and to choose between its team and working alone, see :class:`_TeamChoice`) while the helpers
    wait for its next mini-batch: one team for the whole range, whose start costs tens of microseconds."""
    team = np.zeros(_TEAM_WORDS, dtype=np.int64)
    costs = np.zeros(_SLICES)
    hits = np.zeros(_SLICES, dtype=np.int64)
    shared = (theta, sizes, activation, cost, X, y, order)
    serial = (batch_size, eta, momentum, velocity, l2, G, acts, deltas, identity)  # as train_epoch on one thread
    eta, momentum, l2 = theta.dtype.type(eta), theta.dtype.type(momentum), theta.dtype.type(l2)
    step = (eta, momentum, velocity, l2, G, acts, deltas, identity, costs, hits)
    # The leader over no rows first: on a first call it compiles here, not while the helpers spin, waiting.
    _team_lead(np.zeros(_TEAM_WORDS, dtype=np.int64), *shared, start, start, batch_size, *step, 0.0, 0)
    choice = _team_choice(("slices", theta.dtype.str, theta.shape[0], batch_size, members))

    def lead(lo, hi, alone, c, k):
        if alone:  # the serial kernel: the same operations
            return _sliced_batches(*shared, lo, hi, *serial, c, k)
        return _team_lead(team, *shared, lo, hi, batch_size, *step, c, k)

    wake = threading.Event()
    total, correct = _with_helpers(
        members,
        lambda: _helping(lambda tries: _team_help(team, *shared, *step, tries), wake),
        lambda: _led_chunks(choice, team, wake, chunk, _window(theta, batch_size), start, stop, lead),
        lambda: _team_stop(team, wake),
    )
    return total, int(correct)


def _chunks(chunk, start, stop, run):
    """The summed ``(cost, correct)`` of ``run(lo, hi)`` over ranges of ``chunk`` rows (None: all) from ``start`` to
    ``stop``, in order."""
    step = max(stop - start if chunk is None else chunk, 1)
    total, correct = 0.0, 0
    for lo in range(start, stop, step):
        c, k = run(lo, min(lo + step, stop))
        total += c
        correct += k
    return total, correct


# --------------------------------------------------------------------------------------------
# Mini-batches of _MIN_SPLIT_ROWS to _SLICED_MIN_ROWS - 1 rows of a network with a wide first layer (MNIST's 784
# inputs): the first layer split by input between two threads, as in the C++ kernels. The first layer
# is nearly all the work of such a network. Its weights are cut into two parts by input (rows
# [0, cut) and [cut, n0) of W0, cut a multiple of 16 near n0 / 2), and per mini-batch:
#   - the parts' phase, one task per part: the part's update for the mini-batch before (plain SGD's
#     step fused into the gradient pass, else the gradient of its rows of W0 and their step), then
#     its partial weighted inputs x[lo:hi] @ W0[lo:hi] for the next mini-batch;
#   - the middle, on the leader: the two partial sums added, the other layers forward and backward
#     with their updates, the cost, and the first layer's deltas.
# The threads exchange only the small arrays of partial weighted inputs and deltas, never the
# parameters or their gradients. The cut depends only on n0, and each sum runs in the same order
# whichever thread runs it, so the results do not depend on the thread count: on one thread (and in
# train_many) the same operations run one after the other (_split_batches).

_MIN_SPLIT_INPUTS = 256
# Below this many rows a mini-batch's work is too small to share: split, batches of 2-5 rows were
# 1.04-1.16 times as long as whole on one thread and 0.89-1.55 on two, batch 6 1.05-1.08 and
# 0.79-1.14, batch 10 1.06-1.07 and 0.82-0.85 (python benchmarks/numba_split.py, two to four runs
# per batch size). From _SLICED_MIN_ROWS rows the row slices are faster (split on two threads: 1.18-1.30
# times as long at batch 64-200).
_MIN_SPLIT_ROWS = 6


@_jit
def _uses_split(sizes, batch_size):
    """Whether mini-batches of ``batch_size`` rows are trained with the first layer in two parts."""
    return sizes[0] >= _MIN_SPLIT_INPUTS and _MIN_SPLIT_ROWS <= batch_size < _SLICED_MIN_ROWS


@_jit
def _part_columns(n0, h):
    """Part ``h``'s inputs: ``(lo, n)``, the inputs ``lo .. lo + n``."""
    cut = (n0 // 2 + 15) // 16 * 16
    return (0, cut) if h == 0 else (cut, n0 - cut)


@_inline
def _part_forward(h, theta, sizes, X, y, order, r0, m, stop, batch_size, z, nzi, n_nz, bias):
    """Part ``h``'s forward pass over the ``m`` rows at ``order[r0]``: its inputs that are not zero in every
    row (into ``nzi[h]``, their count ``n_nz[h, 0]``), and its partial weighted inputs ``x[lo:hi] @ W0[lo:hi]``,
    plus the biases in part 0, into ``z[h]``. The next mini-batch's rows (this part's columns) are
    prefetched first."""
    n0, n1 = sizes[0], sizes[1]
    lo, n = _part_columns(n0, h)
    _prefetch_rows(X, order, r0 + m, min(r0 + m + batch_size, stop), n0, lo, n)
    if h == 0:
        # the rows' labels, which the middle reads next: on their way from memory during this pass
        for b in range(r0, r0 + m):
            _prefetch(y, order[b])
    n_nz[h, 0] = _nonzero_inputs(X, order, r0, lo, n0, n, m, nzi[h])
    # part 1 adds no biases: bias[0] holds zeros (one call site for both parts: each is compiled code)
    b, b_off = (theta, n0 * n1) if h == 0 else (bias[0], 0)
    # lo * 0: an int64 0, not the literal 0, which would compile a second copy of the kernel
    _affine(X, order, r0, lo, n0, m, theta, lo * n1, b, b_off, n1, z[h], lo * 0, nzi[h], n_nz[h, 0])


@_inline
def _part_update(h, theta, sizes, X, order, r0, m, mode, eta, momentum, velocity, l2, G, deltas, nzi, n_nz, bias):
    """Part ``h``'s update for the ``m`` rows at ``order[r0]`` from the first layer's deltas (``deltas[0:]``)
    and the inputs listed by its forward pass: plain SGD's step fused into the gradient pass, else the
    gradient of its rows of ``W0`` (and the biases, in part 0) in ``G``, then their step."""
    n0, n1 = sizes[0], sizes[1]
    lo, n = _part_columns(n0, h)
    w0, w1, b0 = lo * n1, (lo + n) * n1, n0 * n1
    target, scale = _update_target(theta, G, m, mode, eta)
    if mode == _STEP_GENERAL:
        G[w0:w1] = 0
        if h == 0:
            G[b0 : b0 + n1] = 0
    # part 1's copy of the bias update goes to bias[1], unused
    b, b_off = (target, b0) if h == 0 else (bias[1], 0)
    _add_outer(target, w0, b, b_off, n1, X, order, r0, lo, n0, m, scale, deltas, lo * 0, nzi[h], n_nz[h, 0])
    if mode == _STEP_GENERAL:
        _general_step(theta, G, velocity, w0, w1, w1, m, eta, momentum, l2)
        if h == 0:
            _general_step(theta, G, velocity, b0, b0, b0 + n1, m, eta, momentum, l2)


@_inline
def _split_middle(theta, sizes, activation, cost, y, order, r0, m, mode, eta, momentum, velocity, l2, G, z, acts,
                  deltas, identity, every_input, wt, w_off, b_off, a_off):
    """The middle of the ``m`` rows at ``order[r0]``, after both parts' forward passes: the first layer's
    weighted inputs (the two partial sums added), the other layers forward and backward with their updates,
    and the first layer's deltas (``deltas[0:]``). Returns the rows' summed cost and correct count. (A team's
    leader runs it in two pieces, :func:`_split_middle_early` and :func:`_split_middle_late`, with the same
    results.)"""
    batch_cost, batch_correct = _split_middle_forward(theta, sizes, activation, cost, y, order, r0, m, z, acts,
                                                      identity, every_input, w_off, b_off, a_off)  # fmt: skip
    if mode == _STEP_GENERAL:
        G[b_off[0] + sizes[1] :] = 0  # the layers above the first
    target, scale = _update_target(theta, G, m, mode, eta)
    _upper_backward(theta, sizes, activation, cost, y, order, r0, m, target, scale, w_off, b_off, a_off, acts, deltas,
                    identity, every_input, wt)  # fmt: skip
    if mode == _STEP_GENERAL:
        _layers_step(theta, sizes, G, velocity, 1, m, eta, momentum, l2, w_off, b_off)
    return batch_cost, batch_correct


@_inline
def _split_middle_forward(theta, sizes, activation, cost, y, order, r0, m, z, acts, identity, every_input, w_off, b_off,
                          a_off):
    """The first layer's weighted inputs of the ``m`` rows at ``order[r0]`` (the parts' partial sums ``z[0]`` and
    ``z[1]`` added), then the other layers forward (:func:`_upper_forward`): the rows' summed cost and correct
    count."""
    stop = m * sizes[1]
    lanes = _VEC_BYTES // theta.itemsize
    for k in range(0, stop, lanes):
        _vstore(acts, k, _vadd(_vload(z[0], k, stop - k), _vload(z[1], k, stop - k)), stop - k)
    return _upper_forward(theta, sizes, activation, cost, y, order, r0, m, w_off, b_off, a_off, acts, identity,
                          every_input)


@_inline
def _split_middle_early(theta, sizes, activation, cost, y, order, r0, m, z, acts, deltas, identity, every_input, wt,
                        w_off, b_off, a_off):
    """What the parts wait for in :func:`_split_middle`: the first layer's weighted inputs, the other layers
    forward, the cost, and every layer's deltas down to the first layer's. :func:`_split_middle_late` makes
    the updates of the layers above the first: a team's leader runs it after its part of the next phase,
    where it would otherwise wait for the helper's part."""
    batch_cost, batch_correct = _split_middle_forward(theta, sizes, activation, cost, y, order, r0, m, z, acts,
                                                      identity, every_input, w_off, b_off, a_off)  # fmt: skip
    _upper_deltas(theta, sizes, activation, cost, y, order, r0, m, w_off, a_off, acts, deltas, wt)
    return batch_cost, batch_correct


@_inline
def _split_middle_late(theta, sizes, m, mode, eta, momentum, velocity, l2, G, acts, deltas, identity, every_input,
                       w_off, b_off, a_off):
    """The updates of :func:`_split_middle` (the layers above the first), after :func:`_split_middle_early`;
    they touch nothing the parts read."""
    if mode == _STEP_GENERAL:
        G[b_off[0] + sizes[1] :] = 0  # the layers above the first
    target, scale = _update_target(theta, G, m, mode, eta)
    _upper_updates(sizes, m, target, scale, w_off, b_off, a_off, acts, deltas, identity, every_input)
    if mode == _STEP_GENERAL:
        _layers_step(theta, sizes, G, velocity, 1, m, eta, momentum, l2, w_off, b_off)


@_jit
def _split_batches(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, mode, eta, momentum,
                   velocity, l2, G, z, nzi, n_nz, bias, acts, deltas, identity, total, correct):
    """``_run_batches`` in ``mode`` (``_STEP_SGD`` or ``_STEP_GENERAL``, ``G`` its theta-shaped buffer) with the
    first layer in two parts, one operation after the other (see :class:`_SplitScratch` for the scratch); the cost
    and correct count are summed on from ``total`` and ``correct``."""
    eta_, momentum_, l2_ = theta.dtype.type(eta), theta.dtype.type(momentum), theta.dtype.type(l2)
    w_off, b_off, a_off = _layer_offsets(sizes, batch_size)
    every_input = _every_input(sizes)
    wt = _hidden_scratch(theta, sizes)
    for r0 in range(start, stop, batch_size):
        m = min(batch_size, stop - r0)
        for h in range(2):
            # the next mini-batch's rows are prefetched also past stop (where the next call goes on)
            _part_forward(h, theta, sizes, X, y, order, r0, m, order.shape[0], batch_size, z, nzi, n_nz, bias)
        c, k = _split_middle(theta, sizes, activation, cost, y, order, r0, m, mode, eta_, momentum_, velocity, l2_, G,
                             z, acts, deltas, identity, every_input, wt, w_off, b_off, a_off)  # fmt: skip
        total += c
        correct += k
        for h in range(2):
            _part_update(h, theta, sizes, X, order, r0, m, mode, eta_, momentum_, velocity, l2_, G, deltas, nzi, n_nz,
                         bias)  # fmt: skip
    return total, correct


@_inline
def _parts_run_one(team, first, theta, sizes, X, y, order, stop, batch_size, mode, eta, momentum, velocity, l2, G,
                   z, nzi, n_nz, bias, deltas):
    """Claim and run one task of the parts' current phase (as :func:`_team_run_one`): part ``i``'s update for
    the mini-batch published (none if its row count is 0), then its forward pass over the one after it (if
    it is before ``stop``, the end of the team's rows)."""
    i, r0, m, _kind = _team_claim(team, first)
    if i < 0:
        return i + 1
    if m > 0:
        _part_update(i, theta, sizes, X, order, r0, m, mode, eta, momentum, velocity, l2, G, deltas, nzi, n_nz, bias)
    r1 = r0 + batch_size
    if r1 < stop:
        _part_forward(i, theta, sizes, X, y, order, r1, min(batch_size, stop - r1), stop, batch_size, z, nzi, n_nz,
                      bias)
    _team_task_done(team)
    return 1


@_jit
def _split_lead(team, theta, sizes, activation, cost, X, y, order, start, stop, end, batch_size, mode, eta, momentum,
                velocity, l2, G, z, nzi, n_nz, bias, acts, deltas, identity, first, total, correct):
    """The leader's part of :func:`_split_team_batches` over the mini-batches of rows ``start`` to ``stop`` of the
    team's rows, which end at ``end``: returns their cost and correct count, summed on from ``total`` and
    ``correct``. A ``first`` call (the team's first, or the first after the leader worked alone) starts with a
    phase of the first mini-batch's forward passes alone; each call's last phase has the forward passes of the
    mini-batch after ``stop`` (if it is before ``end``), so a next call starts from there. Phases are numbered
    on from the team's last one."""
    w_off, b_off, a_off = _layer_offsets(sizes, batch_size)
    every_input = _every_input(sizes)
    wt = _hidden_scratch(theta, sizes)
    phase = _atomic_load(team, _T_CLAIM) >> 32
    r0 = start - batch_size  # the first phase: no update, the first mini-batch's forward passes
    m = 0
    for p in range(1, (stop - start + batch_size - 1) // batch_size + 2):
        if p > 1:
            r0 += batch_size
            m = min(batch_size, stop - r0)
            c, k = _split_middle_early(theta, sizes, activation, cost, y, order, r0, m, z, acts, deltas, identity,
                                       every_input, wt, w_off, b_off, a_off)  # fmt: skip
            total += c
            correct += k
        elif not first:
            continue  # the forward passes were the last phase of the call before
        phase += 1
        _team_publish(team, phase, r0, m, _PARTS_PHASE, 2)
        while _parts_run_one(team, 0, theta, sizes, X, y, order, end, batch_size, mode, eta, momentum, velocity, l2, G,
                             z, nzi, n_nz, bias, deltas) != 0:  # fmt: skip
            pass
        if p > 1:  # the middle's updates, while the helper finishes its part
            _split_middle_late(theta, sizes, m, mode, eta, momentum, velocity, l2, G, acts, deltas, identity,
                               every_input, w_off, b_off, a_off)  # fmt: skip
        _team_wait(team, 2)
    return total, correct


@_jit
def _parts_help(team, theta, sizes, X, y, order, stop, batch_size, mode, eta, momentum, velocity, l2, G, z, nzi,
                n_nz, bias, deltas, tries):
    """A member of the split's team that does not lead: claims and runs the parts' tasks until the leader is
    done (returns -1), or until it has found none for ``tries`` tries in a row (returns the number of tasks it
    ran), as :func:`_team_help`."""
    ran = 0
    idle = 0
    while _atomic_load(team, _T_OVER) == 0:
        r = _parts_run_one(team, 1, theta, sizes, X, y, order, stop, batch_size, mode, eta, momentum, velocity, l2, G,
                           z, nzi, n_nz, bias, deltas)  # fmt: skip
        if r == 0:
            idle += 1
            if idle >= tries:
                return ran
            _spin_pause()
        elif r == 1:
            ran += 1
            idle = 0
    return -1


def _split_team_batches(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, mode, eta, momentum,
                        velocity, l2, G, z, nzi, n_nz, bias, acts, deltas, identity, members, chunk=None):
    """:func:`_split_batches` run by a team of ``members`` threads (as :func:`_team_batches`, ``chunk`` too): the same
    result."""
    team = np.zeros(_TEAM_WORDS, dtype=np.int64)
    shared = (theta, sizes, activation, cost, X, y, order)
    serial = (batch_size, mode, eta, momentum, velocity, l2, G, z, nzi, n_nz, bias, acts, deltas, identity)
    eta, momentum, l2 = theta.dtype.type(eta), theta.dtype.type(momentum), theta.dtype.type(l2)
    # The leader over no rows first (one phase with no task to do): on a first call it compiles here, not
    # while the helper spins, waiting.
    _split_lead(np.zeros(_TEAM_WORDS, dtype=np.int64), theta, sizes, activation, cost, X, y, order, start, start,
                start, batch_size, mode, eta, momentum, velocity, l2, G, z, nzi, n_nz, bias, acts, deltas, identity,
                True, 0.0, 0)  # fmt: skip
    choice = _team_choice(("split", theta.dtype.str, theta.shape[0], batch_size, members))
    ready = [-1]  # the first row of the mini-batch whose forward passes the last team call left in z

    def lead(lo, hi, alone, c, k):
        # Alone, the leader runs the serial kernel (the same operations), which leaves no forward passes for
        # the next call.
        if alone:
            return _split_batches(*shared, lo, hi, *serial, c, k)
        first, ready[0] = ready[0] != lo, hi
        return _split_lead(team, theta, sizes, activation, cost, X, y, order, lo, hi, stop, batch_size, mode, eta,
                           momentum, velocity, l2, G, z, nzi, n_nz, bias, acts, deltas, identity, first, c, k)

    wake = threading.Event()
    total, correct = _with_helpers(
        members,
        lambda: _helping(lambda tries: _parts_help(team, theta, sizes, X, y, order, stop, batch_size, mode, eta,
                                                   momentum, velocity, l2, G, z, nzi, n_nz, bias, deltas, tries),
                         wake),
        lambda: _led_chunks(choice, team, wake, chunk, _window(theta, batch_size), start, stop, lead),
        lambda: _team_stop(team, wake),
    )
    return total, int(correct)


class _SplitScratch:
    """Work arrays of :func:`_split_batches` for mini-batches of up to ``batch_size`` rows: the parts' partial
    weighted inputs ``z`` and lists of inputs ``nzi`` (with their counts ``n_nz[:, 0]``), ``bias`` (row 0: zeros,
    part 1's bias; row 1: where part 1's bias update goes), and ``acts``, ``deltas`` and ``identity`` as in
    :class:`_Scratch`."""

    def __init__(self, theta, sizes, batch_size):
        n0, n1 = int(sizes[0]), int(sizes[1])
        width = int(np.sum(sizes[1:]))
        # Each part's arrays a cache line apart from the other's (the parts are written by two threads).
        line = _VEC_BYTES // theta.itemsize
        self.z = np.empty((2, -(-batch_size * n1 // line) * line + line), dtype=theta.dtype)
        self.nzi = np.empty((2, -(-n0 // 16) * 16 + 2 * 16), dtype=np.int32)  # room for _nonzero_inputs' last store
        self.n_nz = np.zeros((2, 8), dtype=np.int64)
        self.bias = np.zeros((2, n1), dtype=theta.dtype)
        self.acts = np.empty(batch_size * width, dtype=theta.dtype)
        self.deltas = np.empty_like(self.acts)
        self.identity = np.arange(batch_size, dtype=np.int64)

    def args(self):
        return self.z, self.nzi, self.n_nz, self.bias, self.acts, self.deltas, self.identity


class _SliceScratch:
    """Gradient buffers and work arrays of the slices of mini-batches of ``batch_size`` rows."""

    def __init__(self, theta, sizes, batch_size):
        rows = -(-batch_size // 2)  # the largest slice (two slices below _FOUR_SLICES_MIN_ROWS rows)
        width = int(np.sum(sizes[1:]))
        self.G = np.empty((_SLICES, theta.shape[0]), dtype=theta.dtype)
        self.acts = np.empty((_SLICES, rows * width), dtype=theta.dtype)
        self.deltas = np.empty_like(self.acts)
        self.identity = np.arange(rows, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The five functions of the backend contract


class _Scratch:
    """Work arrays for mini-batches of up to ``rows`` rows (allocated once per call)."""

    def __init__(self, theta, sizes, rows):
        width = int(np.sum(sizes[1:]))
        self.acts = np.empty(rows * width, dtype=theta.dtype)
        self.deltas = np.empty(rows * width, dtype=theta.dtype)
        self.identity = np.arange(rows, dtype=np.int64)


def _call(theta, sizes, activation, cost, X, y, order, start, stop, batch_size, mode,
          eta, momentum, velocity, l2, out, scratch):
    # A read-only array is another type to numba: copies keep one compiled signature for all calls.
    if mode in (_STEP_SGD, _STEP_GENERAL):
        for name, arr in (("theta", theta), ("velocity", velocity)):
            if not arr.flags.writeable:
                raise ValueError(f"train_epoch: {name} is read-only but is updated in place")
    elif not theta.flags.writeable:
        theta = theta.copy()
        velocity = theta[:0]
    return _run_batches(
        theta, sizes, int(activation), int(cost), X.reshape(-1), y, order, start, stop, batch_size, mode,
        eta, momentum, velocity, l2, out, scratch.acts, scratch.deltas, scratch.identity,
    )


_NO_LABELS = np.empty(0, dtype=np.int64)


# Forward passes over this many rows or more run in _SLICES fixed runs of whole blocks on Numba's
# threads, as the C++ kernels do (each run's rows and cost sum depend only on the run: the same
# result for any thread count).
_PARALLEL_FORWARD_MIN_ROWS = 2048


def _forward_runs(theta, sizes, activation, cost, X, y, order, n, rows, out, acts, deltas, identity, totals,
                  nonfinite):
    """``_run_batches`` in ``_FORWARD`` mode over rows ``0 .. n``, in ``_SLICES`` runs of whole blocks of
    ``rows`` rows, on up to ``_SLICES`` threads, each claiming the next run not taken; run ``s``'s summed cost
    goes to ``totals[s]``, its count of blocks with a non-finite first-layer weighted input to
    ``nonfinite[s]``."""
    blocks = (n + rows - 1) // rows

    def run(s, _state):
        lo = min(blocks * s // _SLICES * rows, n)
        hi = min(blocks * (s + 1) // _SLICES * rows, n)
        totals[s] = 0.0
        nonfinite[s] = 0
        if hi > lo:
            totals[s], nonfinite[s] = _run_batches(theta, sizes, activation, cost, X, y, order, lo, hi, rows,
                                                   _FORWARD, 0.0, 0.0, theta[:0], 0.0, out, acts[s], deltas[s],
                                                   identity)  # fmt: skip

    _each_on_threads(min(numba.get_num_threads(), _SLICES), _SLICES, run)


def _nonfinite_error(fn):
    return DataError(
        f"fastgd.backends._numba.{fn}: a weighted input of the first layer is not finite: X (or theta) holds NaN "
        "or infinity, or values so large that the sum overflows"
    )


def _inputs(*arrays):
    """The data arrays as the kernels take them: writable. Numba compiles a read-only array as another type,
    every kernel again (about 11 s per dtype, for a sweep's shared data or ``np.load(..., mmap_mode="r")``);
    the kernels never write X or y, so a read-only C-contiguous one is passed as a writable alias of its
    memory, not a copy. The alias does not keep the array alive: it is for the length of the caller's call."""
    out = []
    for a in arrays:
        if a is not None and not a.flags.writeable and a.flags.c_contiguous and a.size:
            memory = (ctypes.c_char * a.nbytes).from_address(a.ctypes.data)
            a = np.frombuffer(memory, dtype=a.dtype).reshape(a.shape)
        out.append(a)
    return out


def _forward_pass(theta, sizes, activation, cost, X, y, fn=None):
    """Output activations ``(n, sizes[-1])`` and the summed row cost (0 when ``y`` is empty). With ``fn``
    (the caller's name), raises DataError when a first-layer weighted input is NaN or infinite; without,
    such rows' results (NaN) stand."""
    X, y = _inputs(X, y)
    n = X.shape[0]
    rows = max(min(n, _ROWS_PER_BLOCK), 1)
    out = np.empty((n, int(sizes[-1])), dtype=theta.dtype)
    order = np.arange(n, dtype=np.int64)
    if n < _PARALLEL_FORWARD_MIN_ROWS:
        total, nonfinite = _call(theta, sizes, activation, cost, X, y, order, 0, n, rows, _FORWARD, 0.0, 0.0,
                                 theta[:0], 0.0, out.reshape(-1), _Scratch(theta, sizes, rows))  # fmt: skip
        if nonfinite and fn:
            raise _nonfinite_error(fn)
        return out, total
    if not theta.flags.writeable:  # one compiled signature (see _call)
        theta = theta.copy()
    width = int(np.sum(sizes[1:]))
    acts = np.empty((_SLICES, rows * width), dtype=theta.dtype)
    deltas = np.empty_like(acts)
    totals = np.zeros(_SLICES)
    nonfinite = np.zeros(_SLICES, dtype=np.int64)
    _forward_runs(theta, sizes, int(activation), int(cost), X.reshape(-1), y, order, n, rows, out.reshape(-1), acts,
                  deltas, np.arange(rows, dtype=np.int64), totals, nonfinite)  # fmt: skip
    if nonfinite.any() and fn:
        raise _nonfinite_error(fn)
    total = 0.0
    for s in range(_SLICES):
        total += float(totals[s])
    return out, total


def forward(theta, sizes, activation, cost, X):
    """Output activations ``(n, sizes[-1])`` in theta's dtype."""
    return _forward_pass(theta, sizes, activation, cost, X, _NO_LABELS, "forward")[0]


def predict(theta, sizes, activation, cost, X):
    """Index of the largest output activation of each row (first on ties), int64 ``(n,)``."""
    out = _forward_pass(theta, sizes, activation, cost, X, _NO_LABELS, "predict")[0]
    return np.argmax(out, axis=1).astype(np.int64)


def cost(theta, sizes, activation, cost, X, y):
    """Mean cost over the rows (no regularisation term), as a Python float."""
    return _forward_pass(theta, sizes, activation, cost, X, y, "cost")[1] / max(X.shape[0], 1)


def grad(theta, sizes, activation, cost, X, y, out):
    """Overwrite ``out`` with the gradient of the mean cost over the rows; return the mean cost."""
    X, y = _inputs(X, y)
    n = X.shape[0]
    rows = max(min(n, _ROWS_PER_BLOCK), 1)
    out[...] = 0
    total, _ = _call(theta, sizes, activation, cost, X, y, np.arange(n, dtype=np.int64), 0, n, rows,
                     _ACCUMULATE, 0.0, 0.0, theta[:0], 0.0, out, _Scratch(theta, sizes, rows))
    out /= max(n, 1)
    return total / max(n, 1)


def train_epoch(theta, sizes, activation, cost, X, y, order, batch_size, eta, momentum, velocity, l2):
    """One epoch of mini-batch gradient descent over ``order``, in place; return the mean row cost and
    the number of rows classified correctly in their mini-batch's forward pass."""
    X, y, order = _inputs(X, y, order)
    n = order.shape[0]
    batch_size = int(batch_size)
    eta, momentum, l2 = float(eta), float(momentum), float(l2)
    sliced = batch_size >= _SLICED_MIN_ROWS
    split = bool(_uses_split(sizes, batch_size))
    if momentum == 0.0 and l2 == 0.0 and batch_size <= _FUSED_MAX_ROWS:
        mode, buffer = _STEP_SGD, theta[:0]
    else:
        mode, buffer = _STEP_GENERAL, theta[:0] if sliced else np.empty_like(theta)
    if momentum == 0.0:
        velocity = theta[:0]  # ignored; an array of theta's type keeps one compiled signature
    # Chunks of whole mini-batches, each about _WORK_PER_CHUNK multiply-adds: Python gets
    # control between them, so Ctrl-C stops the epoch after a whole step.
    batches_per_chunk = max(1, int(_WORK_PER_CHUNK / (theta.shape[0] * batch_size)))
    chunk = batches_per_chunk * batch_size
    if not (sliced or split):
        scratch = _Scratch(theta, sizes, batch_size)
        total, correct = _chunks(chunk, 0, n, lambda lo, hi: _call(
            theta, sizes, activation, cost, X, y, order, lo, hi, batch_size, mode, eta, momentum, velocity, l2, buffer,
            scratch))  # fmt: skip
        return total / max(n, 1), int(correct)
    if not theta.flags.writeable or (momentum != 0.0 and not velocity.flags.writeable):
        raise ValueError("train_epoch: theta and velocity are updated in place and must be writable")
    shared = (theta, sizes, int(activation), int(cost), X.reshape(-1), y, order)
    kernels: tuple[Any, Any]  # the serial kernel and its team
    if split:
        parts = _SplitScratch(theta, sizes, batch_size)
        members = min(numba.get_num_threads(), 2)
        kernels = (_split_batches, _split_team_batches)
        rest = (batch_size, mode, eta, momentum, velocity, l2, buffer, *parts.args())
    else:
        work = _SliceScratch(theta, sizes, batch_size)
        members = min(numba.get_num_threads(), int(_n_slices(batch_size)))
        kernels = (_sliced_batches, _team_batches)
        rest = (batch_size, eta, momentum, velocity, l2, work.G, work.acts, work.deltas, work.identity)
    serial, team = kernels
    if members > 1:  # one team for the epoch, its leader back in Python after each chunk
        total, correct = team(*shared, 0, n, *rest, members, chunk)
    else:
        total, correct = _chunks(chunk, 0, n, lambda lo, hi: serial(*shared, lo, hi, *rest, 0.0, 0))
    return total / max(n, 1), int(correct)


# --------------------------------------------------------------------------------------------
# Population training: the networks spread over threads


def _run_many(thetas, sizes, activation, cost, X, y, orders, start, stop, batch_size, mode, etas, momentum,
              velocities, l2, todo, costs, correct, members):
    """Rows ``start .. stop`` of each network ``todo[j]``'s order, by the kernel train_epoch uses for them, on
    ``members`` threads, each claiming the next network not taken and with its own work arrays; each network's
    summed cost and correct count go to ``costs`` and ``correct``."""
    sliced = batch_size >= _SLICED_MIN_ROWS
    split = bool(_uses_split(sizes, batch_size))

    def scratch():
        theta0 = thetas[0]
        G = np.empty_like(theta0) if mode == _STEP_GENERAL and not sliced else theta0[:0]
        if sliced:
            return _SliceScratch(theta0, sizes, batch_size), G
        return (_SplitScratch if split else _Scratch)(theta0, sizes, batch_size), G

    def train(j, state):
        work, G = state
        k = todo[j]
        if sliced:  # as train_epoch: fixed slices, here one after the other
            c, hits = _sliced_batches(thetas[k], sizes, activation, cost, X, y, orders[k], start, stop, batch_size,
                                      etas[k], momentum, velocities[k], l2, work.G, work.acts, work.deltas,
                                      work.identity, 0.0, 0)  # fmt: skip
        elif split:  # as train_epoch: the first layer in two parts, one after the other
            c, hits = _split_batches(thetas[k], sizes, activation, cost, X, y, orders[k], start, stop, batch_size,
                                     mode, etas[k], momentum, velocities[k], l2, G, *work.args(), 0.0, 0)
        else:
            c, hits = _run_batches(thetas[k], sizes, activation, cost, X, y, orders[k], start, stop, batch_size, mode,
                                   etas[k], momentum, velocities[k], l2, G, work.acts, work.deltas, work.identity)
        costs[k] = c
        correct[k] = hits

    _each_on_threads(members, todo.shape[0], train, scratch)


def train_epoch_many(thetas, sizes, activation, cost, X, y, orders, batch_size, etas, momentum, velocities, l2,
                     active, Xv, yv, n_threads):
    """One epoch of each active network (rows of ``thetas``), in place, spread over ``n_threads`` threads (0:
    Numba's thread count); see the backend contract in :mod:`fastgd.backends`."""
    X, y, orders = _inputs(X, y, orders)
    K, n = thetas.shape[0], orders.shape[1]
    batch_size = int(batch_size)
    momentum, l2 = float(momentum), float(l2)
    todo = np.flatnonzero(active).astype(np.int64)
    costs = np.full(K, np.nan)
    correct = np.zeros(K, dtype=np.int64)
    val_costs = np.full(K, np.nan)
    val_correct = np.zeros(K, dtype=np.int64)
    if todo.size == 0:
        return costs, correct, val_costs, val_correct
    # The same mode and chunks as train_epoch, so that each network's cost is summed in the same order.
    fused = momentum == 0.0 and l2 == 0.0 and batch_size <= _FUSED_MAX_ROWS
    mode = _STEP_SGD if fused else _STEP_GENERAL
    if momentum == 0.0:
        velocities = np.empty((K, 0), dtype=thetas.dtype)
    batches_per_chunk = max(1, int(_WORK_PER_CHUNK / (thetas.shape[1] * batch_size)))
    chunk = batches_per_chunk * batch_size
    totals = [0.0] * K
    chunk_costs = np.zeros(K)
    chunk_correct = np.zeros(K, dtype=np.int64)
    members = min(int(n_threads) or numba.get_num_threads(), todo.size)
    Xf = X.reshape(-1)
    etas = np.asarray(etas, dtype=np.float64)
    for start in range(0, n, chunk):
        _run_many(thetas, sizes, int(activation), int(cost), Xf, y, orders, start, min(start + chunk, n), batch_size,
                  mode, etas, momentum, velocities, l2, todo, chunk_costs, chunk_correct, members)  # fmt: skip
        for k in todo:
            totals[k] += float(chunk_costs[k])
            correct[k] += chunk_correct[k]
    for k in todo:
        costs[k] = totals[k] / max(n, 1)
        if Xv is not None:
            # as cost() and predict(); a diverged network's non-finite weights give NaN results, which stand
            out, total = _forward_pass(thetas[k], sizes, activation, cost, Xv, yv)
            val_costs[k] = total / max(Xv.shape[0], 1)
            val_correct[k] = int(np.count_nonzero(np.argmax(out, axis=1) == yv))
    return costs, correct, val_costs, val_correct
