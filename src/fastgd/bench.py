"""``fastgd bench``: how fast ``Network.fit`` trains, and how far that is from the machine's limit.

Everything is timed as a user calls it: ``Network(...).fit(X, y, epochs=1, ...)`` for one epoch
(the wall time of the call; building the network and loading the data are not timed) and
``Network.predict`` over the test images. The workload is the book's: 784-16-16-10, sigmoid
hidden and output layers, quadratic cost, N(0, 1) initialisation, plain SGD with eta 3.0
(``optimizer="sgd"``), on MNIST.

The roofline (``--roofline``) measures the machine's matrix-multiply peak through NumPy's BLAS
(a float32 and a float64 square GEMM, the best of several sizes, with ``threadpoolctl`` limiting
BLAS to one thread, then to all cores) and prints each timing as a multiple of its compute
bound: the FLOPs the algorithm must do (:func:`epoch_flops`, :func:`predict_flops`) divided by
that peak. Without ``threadpoolctl`` the GEMM runs with the BLAS's own thread count, reported as
"threads not limited", and no single-core peak is claimed.

The functions return plain data (dataclasses); :func:`main` / :func:`run_command` print it.
``python -m fastgd.bench`` works without the ``fastgd bench`` subcommand.

Note: ``OPENBLAS_CORETYPE`` (and ``OPENBLAS_L2_SIZE``) in the environment make OpenBLAS use other
kernels than it would pick for this CPU, which changes NumPy's GEMM peak (and the numpy
backend's speed); they are read when NumPy loads, so the roofline reports them and the active
coretype, and warns when they are set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BOOK",
    "FitTiming",
    "GemmPeak",
    "PredictTiming",
    "Roofline",
    "blas_info",
    "epoch_flops",
    "flops_per_example",
    "forward_flops",
    "gemm_peak",
    "machine_info",
    "main",
    "predict_flops",
    "roofline",
    "run_bench",
    "time_fit",
    "time_predict",
]

#: The benchmarked network and training settings: the book's (Nielsen, chapter 1).
BOOK: dict[str, Any] = dict(sizes=(784, 16, 16, 10), activation="sigmoid", cost="quadratic", init="normal", eta=3.0)
INIT_SEED = 0  # seed of the N(0, 1) initial parameters
ORDER_SEED = 1  # seed of fit's shuffling: the epoch's example order is default_rng(1).permutation(n)
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SLOW_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# --------------------------------------------------------------------------------------------
# FLOP counts (sigmoid hidden and output layers, quadratic cost, plain SGD)
#
# For layer widths s_0 .. s_L (s_0 inputs), write
#   W = sum_l s_l * s_(l+1)              weights (12,960 for 784-16-16-10)
#   U = s_1 + ... + s_L                  units = biases (42)
#   H = s_1 + ... + s_(L-1)              hidden units (32)
#   O = s_L                              outputs (10)
#   P = W + U                            parameters (13,002)
# and count a multiply-add as 2 FLOP, exp as 1, a division as 1. Per example:
#   forward matrix products          2 W                    (Z = A W: 25,920)
#   forward bias adds                U
#   sigmoid 1 / (1 + exp(-z))        4 U                    (negate, exp, add, divide)
#   output delta (a - y) a (1 - a)   4 O                    (subtract, 1 - a, a * ., * .)
#   delta back through the weights   2 (W - s_0 s_1)        (D W^T for every layer but the first:
#                                                            nothing propagates into the pixels)
#   hidden delta . * a (1 - a)       3 H
#   weight gradient products         2 W                    (A^T D: 25,920)
#   bias gradient sums               U
# which is 4 W + 2 (W - s_0 s_1) + 6 U + 4 O + 3 H = 53,060 for 784-16-16-10: the issue's
# "forward and backward matrix products 2 x 25,920, deltas, activations". Per mini-batch, the
# update theta -= (eta / m) g costs 2 P (26,004), i.e. 2 P / m per example at batch m:
# 53,060 + 26,004 / 10 = 55,660.4, the 55,660 per example at batch 10, and 3.34 GFLOP per
# epoch of 60,000 examples (6,000 mini-batches). Prediction is the forward pass only:
# 2 W + U + 4 U = 26,130 per example (the argmax is not counted).
# The matrix products dominate (98% at batch 10); other activations or costs change only the
# small element-wise terms, so the same counts serve as their bound to within a few percent.


def _shape_terms(sizes: Sequence[int]) -> tuple[int, int, int, int, int]:
    s = [int(v) for v in sizes]
    if len(s) < 2 or min(s) < 1:
        raise ValueError(f"need at least two positive layer sizes, got {list(sizes)}")
    W = sum(a * b for a, b in zip(s[:-1], s[1:]))
    U = sum(s[1:])
    H = sum(s[1:-1])
    O = s[-1]
    first = s[0] * s[1]
    return W, U, H, O, first


def forward_flops(sizes: Sequence[int]) -> int:
    """FLOPs of one example's forward pass: ``2 W + 5 U`` (products, bias adds, sigmoids)."""
    W, U, _, _, _ = _shape_terms(sizes)
    return 2 * W + U + 4 * U


def backprop_flops(sizes: Sequence[int]) -> int:
    """FLOPs of one example's forward and backward pass (its gradient contribution), no update."""
    W, U, H, O, first = _shape_terms(sizes)
    backward = 4 * O + 2 * (W - first) + 3 * H + 2 * W + U
    return forward_flops(sizes) + backward


def update_flops(sizes: Sequence[int]) -> int:
    """FLOPs of one plain-SGD step ``theta -= (eta / m) g``: ``2 P``."""
    W, U, _, _, _ = _shape_terms(sizes)
    return 2 * (W + U)


def epoch_flops(sizes: Sequence[int], n: int, batch_size: int) -> int:
    """FLOPs of one epoch of plain mini-batch SGD over ``n`` examples: ``n`` backprops and
    ``ceil(n / batch_size)`` updates (the last mini-batch may be shorter)."""
    if n < 1 or batch_size < 1:
        raise ValueError("n and batch_size must be positive")
    return n * backprop_flops(sizes) + math.ceil(n / batch_size) * update_flops(sizes)


def flops_per_example(sizes: Sequence[int], batch_size: int) -> float:
    """FLOPs per training example at ``batch_size``, the update amortised over the mini-batch
    (55,660.4 for 784-16-16-10 at batch 10)."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    return backprop_flops(sizes) + update_flops(sizes) / batch_size


def predict_flops(sizes: Sequence[int], n: int) -> int:
    """FLOPs of predicting ``n`` rows (forward passes only)."""
    return n * forward_flops(sizes)


# --------------------------------------------------------------------------------------------
# The machine


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process, from ``threadpoolctl`` (``[]`` without it).

    For OpenBLAS, ``architecture`` is the kernel set (coretype) in use.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [
        {k: (_short_path(v) if k == "filepath" and v else v) for k, v in lib.items() if k in keep}
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]


def _short_path(path: str) -> str:
    """``numpy.libs/libscipy_openblas64_-....so``: the library and the folder naming its package."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def numpy_blas() -> dict[str, Any]:
    """NumPy's own BLAS (from threadpoolctl, else from ``numpy.show_config``), best effort."""
    libs = blas_info()
    for lib in libs:
        if str(lib.get("filepath", "")).startswith("numpy"):
            return lib
    if libs:
        return libs[0]
    try:
        cfg = np.show_config(mode="dicts")  # type: ignore[call-arg, unused-ignore]  # (NumPy < 1.25: no mode)
        blas = cfg["Build Dependencies"]["blas"]
        return {"internal_api": blas.get("name"), "version": blas.get("version")}
    except Exception:  # noqa: BLE001 - older NumPy: no dict mode
        return {}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python, NumPy and its BLAS, fastgd's build, BLAS environment, load."""
    from . import __version__, backends

    cpu = _lscpu()
    cores = None
    with suppress(KeyError, ValueError):
        cores = int(cpu["Core(s) per socket"]) * int(cpu.get("Socket(s)", "1"))
    info: dict[str, Any] = {
        "cpu": cpu.get("Model name") or platform.processor() or "unknown",
        "cpu_family_model": f"{cpu.get('CPU family', '?')}/{cpu.get('Model', '?')}",
        "cores": cores,
        "cpus": cpu_count(),
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "threadpoolctl": _threadpoolctl_version(),
        "fastgd": __version__,
        "blas_env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    ok, _ = backends.available("cpp")
    if ok:
        cpp = dict(backends.load("cpp").info())
        info["cpp"] = {k: cpp.get(k) for k in ("isa", "threads", "compiler", "flags")}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    return info


def _threadpoolctl_version() -> str | None:
    try:
        import threadpoolctl
    except ImportError:
        return None
    return str(threadpoolctl.__version__)


def describe_machine(info: dict[str, Any]) -> list[str]:
    """Human-readable lines for :func:`machine_info`."""
    blas = info.get("numpy_blas") or {}
    blas_text = " ".join(str(blas[k]) for k in ("internal_api", "version") if blas.get(k)) or "unknown BLAS"
    if blas.get("architecture"):
        blas_text += f", {blas['architecture']} kernels"
    elif not info.get("threadpoolctl"):
        blas_text += ", kernels and threads unknown without threadpoolctl"
    if blas.get("num_threads"):
        blas_text += f", {blas['num_threads']} threads"
    lines = [
        f"machine: {info['cpu']} (family/model {info['cpu_family_model']}), {info['cores'] or '?'} cores, "
        f"{info['cpus']} CPUs usable; {info['platform']}; Python {info['python']}",
        f"NumPy {info['numpy']} ({blas_text}); threadpoolctl {info['threadpoolctl'] or 'not installed'}"
        + (f"; Numba {info['numba']}" if info.get("numba") else ""),
    ]
    cpp = info.get("cpp")
    lines.append(
        f"fastgd {info['fastgd']}; cpp backend: "
        + (f"{cpp['isa']} kernels, {cpp['threads']} thread{'' if cpp['threads'] == 1 else 's'}, "
           f"{cpp['compiler']} {cpp['flags']}" if cpp else "unavailable")
    )
    env = info.get("blas_env") or {}
    lines.append("BLAS environment: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "none set"))
    slow = [k for k in SLOW_BLAS_ENV if k in env]
    if slow:
        lines.append(
            f"WARNING: {', '.join(slow)} set: OpenBLAS runs other kernels than it would choose for this CPU, "
            "which changes NumPy's GEMM peak and speed; rerun with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...`"
        )
    if info.get("loadavg"):
        la = info["loadavg"]
        busy = la[0] > 0.5 + 0.5 * info["cpus"]  # this process itself counts about 1
        lines.append(f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {info['cpus']} CPUs"
                     + ("  (busy: other processes share the CPUs, timings are noisy)" if busy else ""))  # fmt: skip
    return lines


# --------------------------------------------------------------------------------------------
# Matrix-multiply peak


@dataclass
class GemmPeak:
    """Best GEMM rate of NumPy's BLAS for one dtype and thread count.

    ``threads`` is the limit set through threadpoolctl, or ``None`` when threads could not be
    limited (threadpoolctl missing): the BLAS then used its own count (``blas_threads``).
    """

    dtype: str
    threads: int | None
    gflops: float
    by_size: dict[int, float] = field(default_factory=dict)
    blas_threads: int | None = None

    @property
    def limited(self) -> bool:
        return self.threads is not None


@contextmanager
def blas_threads(n: int | None) -> Iterator[bool]:
    """Limit BLAS to ``n`` threads with threadpoolctl; yields whether the limit is in force."""
    if n is None:
        yield False
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True


def gemm_gflops(n: int, dtype: str, repeats: int = 3) -> float:
    """GFLOP/s of the best of ``repeats`` products of two n x n matrices (``2 n^3`` FLOP each)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=c)  # warm-up: threads started, pages touched
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def gemm_peak(dtype: str, threads: int | None, sizes: Sequence[int] = (1024, 1536, 2048), repeats: int = 3) -> GemmPeak:
    """NumPy's best GEMM rate over square ``sizes`` with BLAS limited to ``threads`` threads."""
    with blas_threads(threads) as limited:
        by_size = {int(n): gemm_gflops(int(n), dtype, repeats) for n in sizes}
        used = numpy_blas().get("num_threads")
    return GemmPeak(dtype=np.dtype(dtype).name, threads=threads if limited else None,
                    gflops=max(by_size.values()), by_size=by_size, blas_threads=used)  # fmt: skip


@dataclass
class Roofline:
    """GEMM peaks: ``single[dtype]`` (one thread) and ``multi[dtype]`` (all cores); ``single`` is
    empty when threads cannot be limited, and ``multi`` then holds the unlimited measurement."""

    single: dict[str, GemmPeak] = field(default_factory=dict)
    multi: dict[str, GemmPeak] = field(default_factory=dict)
    cores: int = 1

    def bound(self, flops: float, dtype: str, all_cores: bool = False) -> float:
        """Seconds that ``flops`` take at the peak (NaN when that peak was not measured)."""
        peak = (self.multi if all_cores else self.single).get(np.dtype(dtype).name)
        return flops / (peak.gflops * 1e9) if peak else math.nan


def roofline(dtypes: Sequence[str] = ("float32", "float64"), sizes: Sequence[int] = (1024, 1536, 2048),
             repeats: int = 3, cores: int | None = None) -> Roofline:  # fmt: skip
    """Measure the single-core and all-core GEMM peaks for each dtype."""
    cores = cores or cpu_count()
    have_limits = _threadpoolctl_version() is not None
    out = Roofline(cores=cores)
    for dt in dtypes:
        name = np.dtype(dt).name
        if have_limits:
            out.single[name] = gemm_peak(name, 1, sizes, repeats)
            out.multi[name] = gemm_peak(name, cores, sizes, repeats)
        else:
            out.multi[name] = gemm_peak(name, None, sizes, repeats)
    return out


# --------------------------------------------------------------------------------------------
# Timing Network.fit and Network.predict


@dataclass
class FitTiming:
    """One epoch of ``Network.fit`` for one backend, dtype and batch size.

    ``seconds`` is the median wall time of the ``fit`` call over ``runs`` (each from the same
    initial parameters and example order); ``kernel_seconds`` the median of what ``fit``
    recorded for the epoch (``History.seconds``, the training kernel alone). ``warmup_seconds``
    is the first, untimed ``fit`` on a few mini-batches in this process (Numba's compilation or
    cache load). ``test_accuracy`` is NaN when no test data was given.
    """

    backend: str
    dtype: str
    batch_size: int
    n_rows: int
    seconds: float
    runs: list[float]
    kernel_seconds: float
    warmup_seconds: float
    train_cost: float
    test_accuracy: float
    flops: int


@dataclass
class PredictTiming:
    """``Network.predict`` over ``n_rows`` rows: median wall time of ``runs`` calls."""

    backend: str
    dtype: str
    n_rows: int
    seconds: float
    runs: list[float]
    warmup_seconds: float
    flops: int


def _book_network(backend: str, dtype: str, sizes: Sequence[int]):  # noqa: ANN202
    from .network import Network

    return Network(sizes, activation=BOOK["activation"], cost=BOOK["cost"], init=BOOK["init"], seed=INIT_SEED,
                   dtype=dtype, backend=backend)  # fmt: skip


def time_fit(backend: str, dtype: str, batch_size: int, X: np.ndarray, y: np.ndarray, *, runs: int = 3,
             sizes: Sequence[int] = BOOK["sizes"], eta: float = BOOK["eta"], X_test: np.ndarray | None = None,
             y_test: np.ndarray | None = None) -> tuple[FitTiming, Any]:  # fmt: skip
    """Time one epoch of the book's ``fit`` over ``X, y``; returns the timing and the trained network.

    ``X`` should already be of ``dtype`` (as ``load_mnist(..., dtype=dtype)`` gives it), so that
    no conversion is timed.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    n = int(X.shape[0])
    fit_kw = dict(epochs=1, batch_size=batch_size, eta=eta, optimizer="sgd", seed=ORDER_SEED)
    # Warm-up on a few mini-batches of the same size (Numba compiles per dtype and per kernel,
    # and its fused small-batch path depends on the batch size).
    w = min(n, 3 * batch_size)
    net = _book_network(backend, dtype, sizes)
    t0 = time.perf_counter()
    net.fit(X[:w], y[:w], **fit_kw)
    warmup = time.perf_counter() - t0
    times, kernel = [], []
    for _ in range(runs):
        net = _book_network(backend, dtype, sizes)
        t0 = time.perf_counter()
        hist = net.fit(X, y, **fit_kw)
        times.append(time.perf_counter() - t0)
        kernel.append(hist.seconds[0])
    acc = math.nan
    if X_test is not None and y_test is not None:
        acc = net.score(X_test, y_test)
    timing = FitTiming(backend=net.backend, dtype=np.dtype(dtype).name, batch_size=int(batch_size), n_rows=n,
                       seconds=float(np.median(times)), runs=times, kernel_seconds=float(np.median(kernel)),
                       warmup_seconds=warmup, train_cost=float(hist.train_cost[0]), test_accuracy=float(acc),
                       flops=epoch_flops(sizes, n, batch_size))  # fmt: skip
    return timing, net


def time_predict(net: Any, X: np.ndarray, runs: int = 7) -> PredictTiming:
    """Time ``net.predict(X)``: the first call (untimed warm-up) and the median of ``runs`` more."""
    t0 = time.perf_counter()
    net.predict(X)
    warmup = time.perf_counter() - t0
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        net.predict(X)
        times.append(time.perf_counter() - t0)
    return PredictTiming(backend=net.backend, dtype=net.dtype.name, n_rows=int(X.shape[0]),
                         seconds=float(np.median(times)), runs=times, warmup_seconds=warmup,
                         flops=predict_flops(net.sizes, int(X.shape[0])))  # fmt: skip


def available_backends() -> list[str]:
    from . import backends

    return [name for name in backends.NAMES if backends.available(name)[0]]


@dataclass
class BenchResult:
    fit: list[FitTiming]
    predict: list[PredictTiming]
    machine: dict[str, Any]
    roofline: Roofline | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "machine": self.machine,
            "fit": [asdict(t) for t in self.fit],
            "predict": [asdict(t) for t in self.predict],
            "roofline": None if self.roofline is None else {
                "cores": self.roofline.cores,
                "single": {k: asdict(v) for k, v in self.roofline.single.items()},
                "multi": {k: asdict(v) for k, v in self.roofline.multi.items()},
            },
        }  # fmt: skip


def run_bench(backends: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32", "float64"),
              batch_sizes: Sequence[int] = (10,), runs: int = 3, data: dict[str, Any] | None = None,
              data_dir: str | None = None, limit: int | None = None, with_roofline: bool = False,
              sizes: Sequence[int] = BOOK["sizes"], gemm_sizes: Sequence[int] = (1024, 1536, 2048),
              progress: Any = None) -> BenchResult:  # fmt: skip
    """Time ``fit`` (one epoch) per backend x dtype x batch size, and ``predict``, on MNIST.

    ``data`` may map a dtype name to ``(X, y, X_test, y_test)`` already in that dtype (as the
    tests do with small synthetic data); otherwise MNIST is loaded with :func:`fastgd.load_mnist`
    from ``data_dir`` (or ``$FASTGD_DATA``...). ``limit`` keeps the first rows of the training set.
    ``progress`` is called with each timing as it is made.
    """
    names = list(backends) if backends else available_backends()
    data = dict(data or {})
    # the peak first: a long run is more likely to meet other load by its end
    roof = roofline(dtypes, sizes=gemm_sizes) if with_roofline else None
    fits: list[FitTiming] = []
    preds: list[PredictTiming] = []
    for dt in dtypes:
        dt = np.dtype(dt).name
        if dt not in data:
            from .data import load_mnist

            X, y = load_mnist("train", data_dir=data_dir, dtype=dt)
            Xt, yt = load_mnist("test", data_dir=data_dir, dtype=dt)
            data[dt] = (X, y, Xt, yt)
        X, y, Xt, yt = data[dt]
        if limit:
            X, y = X[:limit], y[:limit]
        for name in names:
            net = None
            for bs in batch_sizes:
                timing, net = time_fit(name, dt, bs, X, y, runs=runs, sizes=sizes, X_test=Xt, y_test=yt)
                fits.append(timing)
                if progress:
                    progress(timing)
            if net is not None and Xt is not None:
                p = time_predict(net, Xt, runs=max(7, runs))
                preds.append(p)
                if progress:
                    progress(p)
    settings = dict(sizes=list(sizes), activation=BOOK["activation"], cost=BOOK["cost"], init=BOOK["init"],
                    eta=BOOK["eta"], optimizer="sgd", runs=runs, init_seed=INIT_SEED,
                    order_seed=ORDER_SEED)  # fmt: skip
    return BenchResult(fit=fits, predict=preds, machine=machine_info(), roofline=roof, settings=settings)


# --------------------------------------------------------------------------------------------
# Printing


def _fmt_s(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if x >= 0.001 else f"{x * 1e3:.3g}m"


def _fmt_x(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.1f}x"


def format_roofline(roof: Roofline) -> list[str]:
    lines = [f"matrix-multiply peak, NumPy GEMM (best of n = "
             f"{', '.join(str(n) for n in next(iter(roof.multi.values())).by_size)} square), GFLOP/s:"]  # fmt: skip
    for dt, multi in roof.multi.items():
        single = roof.single.get(dt)
        one = f"1 core {single.gflops:7.1f}" if single else "1 core     n/a (threadpoolctl not installed)"
        many = (f"all {roof.cores} cores {multi.gflops:7.1f}" if multi.limited
                else f"threads not limited {multi.gflops:7.1f}")  # fmt: skip
        lines.append(f"  {dt:<8} {one}   {many}")
        if single and multi.limited and roof.cores > 1 and multi.gflops < 0.75 * roof.cores * single.gflops:
            lines.append(f"  ({dt}: all cores gave less than 75% of {roof.cores} x one core: another process was "
                         "probably running; the all-core bound is then too lenient)")  # fmt: skip
    return lines


def format_result(res: BenchResult) -> str:
    s = res.settings
    roof = res.roofline
    out = [
        f"fastgd bench: Network.fit, one epoch; {'-'.join(map(str, s['sizes']))} {s['activation']}, {s['cost']} cost, "
        f"{s['init']} init, plain SGD eta {s['eta']:g}; median of {s['runs']} run{'s' if s['runs'] > 1 else ''} "
        "(wall time of fit)",
        *describe_machine(res.machine),
    ]
    if roof is not None:
        out += format_roofline(roof)
    head = (f"{'backend':<8}{'dtype':<9}{'batch':>6}{'rows':>8}{'s/epoch':>10}{'kernel s':>10}{'warm-up s':>11}"
            f"{'cost':>8}{'test acc':>9}")  # fmt: skip
    if roof is not None:
        head += f"{'GFLOP':>7}{'bound 1c':>10}{'x 1c':>7}{f'x {roof.cores}c':>7}"
    out += ["", head]
    for t in res.fit:
        row = (f"{t.backend:<8}{t.dtype:<9}{t.batch_size:>6}{t.n_rows:>8,}{_fmt_s(t.seconds):>10}"
               f"{_fmt_s(t.kernel_seconds):>10}{_fmt_s(t.warmup_seconds):>11}{t.train_cost:>8.4f}"
               f"{(f'{t.test_accuracy:.2%}' if math.isfinite(t.test_accuracy) else 'n/a'):>9}")  # fmt: skip
        if roof is not None:
            b1 = roof.bound(t.flops, t.dtype)
            bn = roof.bound(t.flops, t.dtype, all_cores=True)
            row += f"{t.flops / 1e9:>7.2f}{_fmt_s(b1):>10}{_fmt_x(t.seconds / b1):>7}{_fmt_x(t.seconds / bn):>7}"
        out.append(row)
    if res.predict:
        head = f"{'predict':<8}{'dtype':<9}{'rows':>14}{'seconds':>10}{'warm-up s':>21}"
        if roof is not None:
            head += f"{'GFLOP':>34}{'bound 1c':>10}{'x 1c':>7}{f'x {roof.cores}c':>7}"
        out += ["", head]
        for p in res.predict:
            row = f"{p.backend:<8}{p.dtype:<9}{p.n_rows:>14,}{_fmt_s(p.seconds):>10}{_fmt_s(p.warmup_seconds):>21}"
            if roof is not None:
                b1 = roof.bound(p.flops, p.dtype)
                bn = roof.bound(p.flops, p.dtype, all_cores=True)
                row += f"{p.flops / 1e9:>34.3f}{_fmt_s(b1):>10}{_fmt_x(p.seconds / b1):>7}{_fmt_x(p.seconds / bn):>7}"
            out.append(row)
    if roof is not None:
        out += ["", "bound = FLOPs / GEMM peak (fastgd.bench.epoch_flops, predict_flops); x 1c: time / single-core "
                "bound, x Nc: time / all-core bound. s/epoch in seconds ('m': milliseconds)."]  # fmt: skip
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Peers (benchmarks/peers.py, next to the package source)


def find_peers_script() -> Path | None:
    """``benchmarks/peers.py`` of the source tree this package was imported from, if there is one."""
    here = Path(__file__).resolve().parent  # .../src/fastgd
    for root in (here.parent.parent, here.parent):
        candidate = root / "benchmarks" / "peers.py"
        if candidate.is_file():
            return candidate
    return None


def run_peers(argv: Sequence[str]) -> int:
    """Run ``benchmarks/peers.py`` with ``argv`` in a fresh interpreter (OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE removed from its environment, as that script's docstring asks)."""
    script = find_peers_script()
    if script is None:
        print("fastgd bench --peers: benchmarks/peers.py is not next to this installation of fastgd "
              f"({Path(__file__).resolve().parent}). It is in fastgd's source repository: from a checkout, run\n"
              "  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/peers.py [--runs 3] "
              "[--only numpy,torch,sklearn,jax] [--data-dir DIR]", file=sys.stderr)  # fmt: skip
        return 2
    env = {k: v for k, v in os.environ.items() if k not in SLOW_BLAS_ENV}
    dropped = [k for k in SLOW_BLAS_ENV if k in os.environ]
    if dropped:
        print(f"(running {script} without {', '.join(dropped)})", flush=True)
    return subprocess.call([sys.executable, str(script), *argv], env=env)


# --------------------------------------------------------------------------------------------
# Command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fastgd bench`` (shared by the CLI subcommand and ``python -m fastgd.bench``)."""
    p.add_argument("--backends", type=_name_list, default=None,
                   help="comma-separated backends (default: every available one of cpp, numba, numpy)")  # fmt: skip
    p.add_argument("--dtypes", type=_name_list, default=["float32", "float64"], help="(default: float32,float64)")
    p.add_argument("--batch-sizes", type=_int_list, default=[10], help="e.g. 1,10,100,1000 (default: 10)")
    p.add_argument("--runs", type=int, default=3,
                   help="timed epochs per configuration; the median is shown (default: 3)")  # fmt: skip
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (default: all 60,000)")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST (default: $FASTGD_DATA, then the cache)")
    p.add_argument("--roofline", action="store_true",
                   help="measure the GEMM peak (1 core, all cores) and show each time as a multiple of its "
                   "compute bound")  # fmt: skip
    p.add_argument("--gemm-sizes", type=_int_list, default=[1024, 1536, 2048],
                   help="with --roofline: square GEMM sizes whose best rate is the peak "
                   "(default: 1024,1536,2048)")  # fmt: skip
    p.add_argument("--peers", action="store_true",
                   help="run benchmarks/peers.py (NumPy, PyTorch, scikit-learn, JAX) instead, when it is next "
                   "to the source")  # fmt: skip
    p.add_argument("--only", default=None, help="with --peers: which peers (passed to peers.py)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")


def run_command(args: argparse.Namespace) -> int:
    """Run ``fastgd bench`` as parsed by :func:`add_arguments`; print the table."""
    if args.peers:
        argv = ["--runs", str(args.runs)]
        if args.data_dir:
            argv += ["--data-dir", args.data_dir]
        if args.limit:
            argv += ["--limit", str(args.limit)]
        if args.only:
            argv += ["--only", args.only]
        return run_peers(argv)
    if args.runs < 1:
        raise ValueError("--runs must be at least 1")
    for dt in args.dtypes:
        if dt not in ("float32", "float64"):
            raise ValueError(f"--dtypes: expected float32 and/or float64, got {dt!r}")

    def progress(t: FitTiming | PredictTiming) -> None:
        what = f"fit batch {t.batch_size}" if isinstance(t, FitTiming) else "predict"
        print(f"  {t.backend} {t.dtype} {what}: {t.seconds:.4g} s", file=sys.stderr, flush=True)

    res = run_bench(backends=args.backends, dtypes=args.dtypes, batch_sizes=args.batch_sizes, runs=args.runs,
                    data_dir=args.data_dir, limit=args.limit or None, with_roofline=args.roofline,
                    gemm_sizes=args.gemm_sizes, progress=progress)  # fmt: skip
    print(format_result(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res.as_dict(), indent=1, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastgd.bench [options]``: the same as ``fastgd bench``."""
    parser = argparse.ArgumentParser(prog="fastgd bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
