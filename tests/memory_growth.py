#!/usr/bin/env python3
"""Memory growth check: 10,000 ``Network.fit``/``predict`` iterations must not grow memory.

Usage (from a checkout, with fastgd installed)::

    python tests/memory_growth.py                 # 10,000 iterations on the cpp backend
    python tests/memory_growth.py --iterations 2000 --backend numba

``tests/sanitize.sh`` runs it on the normal (non-sanitized) build; it also runs alone. Exit status
0 when memory stays within the bounds, 1 when it grows beyond them, 2 on an unexpected error.

One iteration, cycling over five tiny networks chosen to reach every path of the kernels
(float32 and float64; a step fused into the backward pass, and mini-batches larger than a block,
whose gradient is summed in slices on the worker threads; plain SGD, L2 and momentum; a partial
last mini-batch; a 35-layer network, whose layer tables the C++ core allocates on the heap; a
validation pass, which calls the cost and predict kernels)::

    net.fit(X, y, epochs=1, ...)     # one epoch, the train_epoch kernel (+ cost, predict)
    net.predict(X)                   # the predict kernel, a new output array
    one rejected call                # cpp backend only: a ValueError raised inside the extension

``net.history`` grows by one row per epoch by design (it records the network's whole life), so
it is emptied every iteration; nothing else is.

Memory is measured after a warm-up (so that lazily built caches, the allocators' arenas and
tracemalloc's own tables have settled) and again at the end, after ``gc.collect()``:

* RSS, the process's resident set size (``VmRSS`` in ``/proc/self/status``, else
  ``resource.getrusage``; the peak is printed too): catches leaks in C++ (``malloc`` inside the
  kernels or the thread pool), in pybind11 and in NumPy's buffers;
* tracemalloc's traced memory, which counts Python objects and NumPy array buffers: catches
  leaked references (an output array or an exception that is never freed).

Bounds (over 10,000 iterations; both scale with ``--iterations`` above that): RSS may grow by at
most 1 MiB and traced memory by at most 64 KiB, that is about 100 and 6.5 bytes per iteration.
The smallest leak worth finding, one ``predict`` output array per iteration (48 int64 labels:
384 bytes of data plus a ~100-byte array object), adds about 4.6 MiB of both, and a leaked
scratch buffer of the kernels (kilobytes) tens of MiB. Measured without leaks (Release build,
AVX-512 kernels): RSS +0.01 MiB and traced memory +0.5 KiB over 10,000 iterations, that is noise.

``--inject-leak BYTES`` and ``--inject-c-leak BYTES`` leak that much per iteration on purpose (a
NumPy array, seen by both measures; or ``malloc`` through ctypes, seen by RSS only, as a C++ leak
would be), to check that the check fails when it should.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import numpy as np

RSS_BOUND_MIB_PER_10K = 1.0
TRACED_BOUND_KIB_PER_10K = 64.0


def rss_bytes() -> int:
    """The current resident set size (VmRSS), in bytes; the peak where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size (VmHWM; else ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@dataclass
class Sample:
    iteration: int
    rss: int
    traced: int
    seconds: float

    def line(self) -> str:
        return (f"{self.iteration:>7}  {self.rss / 2**20:9.2f} MiB  {self.traced / 2**10:10.1f} KiB"
                f"  {self.seconds:7.2f} s")  # fmt: skip


def sample(iteration: int, t0: float) -> Sample:
    gc.collect()
    return Sample(iteration, rss_bytes(), tracemalloc.get_traced_memory()[0], time.perf_counter() - t0)


def build_cases(backend: str) -> list[dict[str, Any]]:
    """The tiny networks and the fit arguments each iteration cycles over."""
    import fastgd

    rng = np.random.default_rng(0)
    cases = []
    specs = [
        # sizes, dtype, activation, cost, fit arguments
        ([10, 8, 6, 4], "float32", "tanh", "log-likelihood",
         dict(batch_size=10, optimizer="default", validation=True)),  # L2: fused step, partial batch
        ([10, 8, 6, 4], "float64", "sigmoid", "quadratic",
         dict(batch_size=20, optimizer="sgd", eta=0.5)),  # batch > row block: slices on worker threads
        ([10, 7, 4], "float32", "relu", "cross-entropy",
         dict(batch_size=5, optimizer=fastgd.Optimizer(eta=0.01, momentum=0.9, l2=1e-4))),  # fused momentum
        ([10, 8, 6, 4], "float64", "tanh", "log-likelihood",
         dict(batch_size=48, optimizer=fastgd.Optimizer(eta=0.05, momentum=0.5), validation=True)),  # 3+ slices
        ([10] + [3] * 34 + [4], "float32", "tanh", "log-likelihood",
         dict(batch_size=16, optimizer="sgd", eta=0.05)),  # 35 layers: heap-allocated layer tables
    ]  # fmt: skip
    for k, (sizes, dtype, activation, cost, kw) in enumerate(specs):
        X = rng.random((48, sizes[0])).astype(dtype)
        y = rng.integers(0, sizes[-1], 48)
        net = fastgd.Network(sizes, activation=activation, cost=cost, seed=k, dtype=dtype, backend=backend)
        kw = dict(kw)
        validation = (X[:16], y[:16]) if kw.pop("validation", False) else None
        cases.append(dict(net=net, X=X, y=y, fit=dict(kw, epochs=1, validation_data=validation)))
    return cases


def rejected_call(module: Any, case: dict[str, Any], iteration: int) -> None:
    """One call the C++ extension must refuse with ValueError (exercises its error path)."""
    net, X, y = case["net"], case["X"], case["y"]
    sizes = np.asarray(net.sizes, dtype=np.int64)
    act, cost = ("sigmoid", "tanh", "relu").index(net.activation), 0
    try:
        if iteration % 2:
            module.predict(net.theta, sizes, act, cost, np.ascontiguousarray(X[:, :-1]))  # wrong width
        else:
            order = np.arange(X.shape[0], dtype=np.int64)
            order[-1] = X.shape[0]  # one row past the end
            module.train_epoch(net.theta, sizes, act, cost, X, y.astype(np.int64), order, 4, 0.1, 0.0, None, 0.0)
    except ValueError:
        return
    raise AssertionError("the extension accepted an invalid argument")


def run(iterations: int, warmup: int, backend: str, checkpoints: int, leak: int = 0,
        c_leak: int = 0) -> tuple[Sample, Sample]:  # fmt: skip
    import fastgd
    from fastgd import backends

    module = backends.load(backend)
    cases = build_cases(backend)
    leaked: list[Any] = []  # only for --inject-leak
    malloc = ctypes.CDLL(None).malloc
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]

    def step(i: int) -> None:
        case = cases[i % len(cases)]
        net = case["net"]
        net.fit(case["X"], case["y"], seed=i, **case["fit"])
        labels = net.predict(case["X"])
        assert labels.shape == (case["X"].shape[0],)
        net.history = fastgd.History()  # grows by design: one row per epoch over the network's life
        if backend == "cpp":
            rejected_call(module, case, i)
        if leak:
            leaked.append(np.ones(leak, dtype=np.uint8))  # deliberate leak (self-test)
        if c_leak:
            address = malloc(c_leak)  # deliberate C leak (self-test), touched so that it is resident
            if not address:
                raise MemoryError("malloc failed")
            ctypes.memset(address, 1, c_leak)

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    start = end = sample(0, t0)
    every = max(1, iterations // max(1, checkpoints))
    print(f"{'iter':>7}  {'RSS':>13}  {'traced':>14}  {'time':>9}")
    print(start.line(), flush=True)
    for i in range(1, iterations + 1):
        step(warmup + i)
        if i % every == 0 or i == iterations:
            end = sample(i, t0)
            print(end.line(), flush=True)
    return start, end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=10_000, help="fit+predict iterations (default 10000)")
    p.add_argument("--warmup", type=int, default=500, help="iterations before the first measurement (default 500)")
    p.add_argument("--backend", default="cpp", help="fastgd backend (default cpp)")
    p.add_argument("--checkpoints", type=int, default=10, help="intermediate measurements printed (default 10)")
    p.add_argument("--rss-bound-mib", type=float, default=None,
                   help=f"allowed RSS growth in MiB (default {RSS_BOUND_MIB_PER_10K:g} per 10,000 iterations)")
    p.add_argument("--traced-bound-kib", type=float, default=None,
                   help=f"allowed tracemalloc growth in KiB "
                   f"(default {TRACED_BOUND_KIB_PER_10K:g} per 10,000 iterations)")
    p.add_argument("--inject-leak", type=int, default=0, metavar="BYTES",
                   help="self-test: leak a NumPy array of BYTES per iteration (the check must then fail)")
    p.add_argument("--inject-c-leak", type=int, default=0, metavar="BYTES",
                   help="self-test: leak BYTES of malloc per iteration, invisible to tracemalloc")
    args = p.parse_args(argv)  # fmt: skip
    if args.iterations < 1 or args.warmup < 0:
        p.error("--iterations must be at least 1 and --warmup at least 0")
    scale = max(1.0, args.iterations / 10_000)
    rss_bound = (args.rss_bound_mib if args.rss_bound_mib is not None else RSS_BOUND_MIB_PER_10K * scale) * 2**20
    traced_bound = (
        args.traced_bound_kib if args.traced_bound_kib is not None else TRACED_BOUND_KIB_PER_10K * scale
    ) * 2**10

    tracemalloc.start()
    import fastgd

    module = fastgd.backends.load(args.backend)
    build = module.info() if hasattr(module, "info") else {}
    print(f"fastgd {fastgd.__version__} from {os.path.dirname(fastgd.__file__)}")
    details = f": isa={build.get('isa')}, build_type={build.get('build_type')}" if build else ""
    print(f"backend {args.backend}{details}")
    print(f"{args.iterations} iterations of fit(epochs=1) + predict (+ a rejected call on cpp) after {args.warmup} "
          f"warm-up iterations")  # fmt: skip
    try:
        start, end = run(args.iterations, args.warmup, args.backend, args.checkpoints, args.inject_leak,
                         args.inject_c_leak)
    except Exception as exc:  # noqa: BLE001 - report and fail with a distinct status
        print(f"memory_growth: FAILED with an unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    rss_growth = end.rss - start.rss
    traced_growth = end.traced - start.traced
    rss_ok = rss_growth <= rss_bound
    traced_ok = traced_growth <= traced_bound
    per_it = 1 / args.iterations
    print(f"memory: RSS {start.rss / 2**20:.2f} -> {end.rss / 2**20:.2f} MiB, growth {rss_growth / 2**20:+.3f} MiB "
          f"({rss_growth * per_it:+.1f} B/iteration; bound {rss_bound / 2**20:g} MiB) "
          f"{'ok' if rss_ok else 'EXCEEDED'}; peak RSS {max(peak_rss_bytes(), end.rss) / 2**20:.1f} MiB")
    print(f"memory: tracemalloc {start.traced / 2**10:.1f} -> {end.traced / 2**10:.1f} KiB, growth "
          f"{traced_growth / 2**10:+.2f} KiB ({traced_growth * per_it:+.2f} B/iteration; bound "
          f"{traced_bound / 2**10:g} KiB) {'ok' if traced_ok else 'EXCEEDED'}; peak {traced_peak / 2**20:.2f} MiB")
    print(f"memory: {args.iterations} iterations in {end.seconds - start.seconds:.1f} s")  # fmt: skip
    if rss_ok and traced_ok:
        print("memory: PASS")
        return 0
    print("memory: FAIL (memory grew beyond the bound: a leak?)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
