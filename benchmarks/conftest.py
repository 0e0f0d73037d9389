"""Fixtures of fastgd's benchmark suite: MNIST, the backends (warmed up), the NumPy reference.

Run with ``python -m pytest benchmarks --benchmark-enable`` and ``FASTGD_DATA`` naming a folder
that holds MNIST (see ``benchmarks/README.md``). With the default ``--benchmark-disable`` every
benchmark body runs once, on a shortened order for the epoch benchmarks, and is still checked
against the reference: a quick smoke test for CI.

Everything here is session-scoped and computed once: the data, the initial parameters, the
example order and every reference result. The benchmarks themselves (and the tolerances they
assert) are in ``bench_kernels.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import fastgd
from fastgd import backends

# --------------------------------------------------------------------------------------------
# The workload: the book's network and plain SGD on MNIST

SIZES = (784, 16, 16, 10)
ACTIVATION = "sigmoid"
COST = "quadratic"
ACT_CODE = backends.ACTIVATIONS.index(ACTIVATION)  # 0
COST_CODE = backends.COSTS.index(COST)  # 0
ETA = 3.0
INIT_SEED = 0  # N(0, 1) initialisation ("normal"), the book's
ORDER_SEED = 12345  # the example order of the epoch, identical for every backend
DTYPES = ("float32", "float64")
N_TRAIN = 60_000

#: Environment variables that change how NumPy's BLAS (the reference backend) runs; recorded,
#: never changed by the suite.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cpp_build() -> dict[str, Any]:
    """The C++ extension's build information, or ``{}`` when it can't be loaded."""
    try:
        return dict(backends.load("cpp").info())
    except fastgd.BackendUnavailableError:
        return {}


CPP_BUILD = _cpp_build()


def pytest_report_header(config: pytest.Config) -> list[str]:
    data = os.environ.get("FASTGD_DATA")
    lines = [
        f"fastgd {fastgd.__version__}; cpp build: "
        + (", ".join(f"{k}={v}" for k, v in CPP_BUILD.items()) if CPP_BUILD else "unavailable"),
        f"FASTGD_DATA={data!r}" + ("" if data else " (benchmarks needing MNIST will be skipped)"),
        "BLAS environment: " + (", ".join(f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ) or "none set"),
    ]
    return lines


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Store fastgd's configuration (backends, C++ build, ISA) with every saved run."""
    machine_info["fastgd"] = fastgd.config()
    machine_info["numpy"] = np.__version__
    machine_info["blas_env"] = {k: os.environ[k] for k in BLAS_ENV if k in os.environ}
    try:
        import numba

        machine_info["numba"] = numba.__version__
    except ImportError:
        pass


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class Workload:
    """MNIST (both dtypes), the initial parameters and the example order, each made once."""

    train64: tuple[np.ndarray, np.ndarray]
    test64: tuple[np.ndarray, np.ndarray]
    act_code: int = ACT_CODE
    cost_code: int = COST_CODE
    eta: float = ETA
    n_train: int = N_TRAIN
    sizes: np.ndarray = field(default_factory=lambda: np.asarray(SIZES, dtype=np.int64))
    order: np.ndarray = field(
        default_factory=lambda: np.random.default_rng(ORDER_SEED).permutation(N_TRAIN).astype(np.int64)
    )
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def _get(self, key: tuple[str, str], make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def train(self, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """The 60,000 training images ``(X, y)``: X C-contiguous in ``dtype``, y int64."""
        X, y = self.train64
        return self._get(("train", dtype), lambda: (np.ascontiguousarray(X, dtype=dtype), y))

    def test(self, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """The 10,000 test images ``(X, y)``."""
        X, y = self.test64
        return self._get(("test", dtype), lambda: (np.ascontiguousarray(X, dtype=dtype), y))

    def theta0(self, dtype: str) -> np.ndarray:
        """A fresh copy of the book's initial parameters (N(0, 1), seed ``INIT_SEED``) in ``dtype``."""
        theta = self._get(
            ("theta0", dtype),
            lambda: fastgd.Network(
                list(SIZES), activation=ACTIVATION, cost=COST, init="normal", seed=INIT_SEED,
                dtype=dtype, backend="numpy",
            ).theta.copy(),
        )  # fmt: skip
        return theta.copy()


@pytest.fixture(scope="session")
def workload() -> Workload:
    """Real MNIST from ``$FASTGD_DATA``, loaded once; skips when the variable is unset.

    When ``FASTGD_DATA`` is set, a missing or broken dataset fails the benchmarks instead of
    skipping them (nothing is ever downloaded: fastgd does not download into a folder you name).
    """
    folder = os.environ.get("FASTGD_DATA")
    if not folder:
        pytest.skip(
            "FASTGD_DATA is not set: the benchmarks train on real MNIST; point FASTGD_DATA at a folder "
            "holding its four files (e.g. FASTGD_DATA=../shared/mnist)"
        )
    try:
        # float64 once per split; float32 is cast from it (bitwise what load_mnist(dtype="float32")
        # returns: both are the pixel / 255 correctly rounded).
        train = fastgd.load_mnist("train", dtype="float64")
        test = fastgd.load_mnist("test", dtype="float64")
    except Exception as exc:  # noqa: BLE001 - any failure to load is the same verdict
        pytest.fail(f"FASTGD_DATA={folder!r} is set but MNIST could not be loaded from it: {type(exc).__name__}: {exc}")
    (X, y), (Xt, yt) = train, test
    if X.shape != (N_TRAIN, SIZES[0]) or Xt.shape != (10_000, SIZES[0]):
        pytest.fail(f"unexpected MNIST shapes from FASTGD_DATA={folder!r}: train {X.shape}, test {Xt.shape}")
    return Workload(train64=(X, y.astype(np.int64)), test64=(Xt, yt.astype(np.int64)))


# --------------------------------------------------------------------------------------------
# Backends


@dataclass
class Backend:
    """One backend module, warmed up: ``warmup_seconds`` includes any Numba compilation."""

    name: str
    module: ModuleType
    warmup_seconds: float


def _warm_up(module: ModuleType, work: Workload) -> float:
    """Call every kernel the benchmarks time, in both dtypes, on arrays of the same kinds.

    Numba compiles (or loads from its on-disk cache) one specialisation per argument types on
    the first call; doing that here keeps it out of every timing.
    """
    t0 = time.perf_counter()
    for dtype in DTYPES:
        X, y = work.train(dtype)
        Xt, _ = work.test(dtype)
        theta = work.theta0(dtype)
        rows = np.ascontiguousarray(work.order[:20])
        g = np.empty_like(theta)
        module.train_epoch(theta, work.sizes, ACT_CODE, COST_CODE, X, y, rows, 10, ETA, 0.0, None, 0.0)
        module.grad(theta, work.sizes, ACT_CODE, COST_CODE, np.ascontiguousarray(X[rows]), y[rows], g)
        module.predict(theta, work.sizes, ACT_CODE, COST_CODE, Xt[:20])
    return time.perf_counter() - t0


@pytest.fixture(scope="session", params=backends.NAMES, ids=lambda name: str(name))
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each of fastgd's backends, warmed up; one that can't load is skipped with the reason.

    A backend named in ``$FASTGD_EXPECT_BACKENDS`` (comma-separated; CI sets all three) fails
    instead when it is missing.
    """
    name = request.param
    ok, reason = backends.available(name)
    if not ok:
        expected = {b.strip() for b in os.environ.get("FASTGD_EXPECT_BACKENDS", "").split(",")}
        if name in expected:
            pytest.fail(f"backend {name!r} is expected (FASTGD_EXPECT_BACKENDS) but unavailable: {reason}")
        pytest.skip(f"backend {name!r} is not available: {reason}")
    module = backends.load(name)
    work = request.getfixturevalue("workload")
    return Backend(name=name, module=module, warmup_seconds=_warm_up(module, work))


@pytest.fixture
def record(benchmark: Any, backend: Backend) -> Callable[..., None]:
    """``record(dtype=..., batch_size=..., ...)``: fill ``benchmark.extra_info`` for this benchmark."""

    def record(**fields: Any) -> None:
        benchmark.extra_info.update(
            backend=backend.name,
            fastgd_version=fastgd.__version__,
            cpp_isa=CPP_BUILD.get("isa"),
            cpp_threads=CPP_BUILD.get("threads"),
            warmup_seconds=round(backend.warmup_seconds, 4),
            **fields,
        )

    return record


# --------------------------------------------------------------------------------------------
# The reference


class Reference:
    """The NumPy backend in float64: the oracle of every benchmark, each result computed once.

    float64 and float32 results of every backend are compared with these float64 results.
    """

    def __init__(self, work: Workload) -> None:
        self.work = work
        self.module = backends.load("numpy")
        self._epochs: dict[int, dict[int, tuple[np.ndarray, float]]] = {}
        self._grads: dict[int, tuple[np.ndarray, float]] = {}
        self._test_outputs: np.ndarray | None = None
        self.seconds = 0.0  # time spent computing reference results, for the curious

    def epoch(self, batch: int, rows: int) -> tuple[np.ndarray, float]:
        """Parameters after plain SGD over ``order[:rows]`` in mini-batches of ``batch``, and the
        mean row cost over those rows (as ``train_epoch`` returns it).

        States are kept per ``(batch, rows)`` and continued from the nearest earlier one: mini-batch
        steps depend only on the parameters, so SGD over ``order[:a]`` then ``order[a:b]`` is the same
        computation as over ``order[:b]`` when ``a`` is a multiple of ``batch``.
        """
        if rows % batch and rows != N_TRAIN:
            raise ValueError(f"rows ({rows}) must be a multiple of the batch size ({batch})")
        states = self._epochs.setdefault(batch, {0: (self.work.theta0("float64"), 0.0)})
        if rows not in states:
            start = max(r for r in states if r < rows)
            theta, total = states[start]
            theta = theta.copy()
            X, y = self.work.train("float64")
            t0 = time.perf_counter()
            mean, _ = self.module.train_epoch(
                theta, self.work.sizes, ACT_CODE, COST_CODE, X, y, self.work.order[start:rows], batch, ETA,
                0.0, None, 0.0,
            )  # fmt: skip
            self.seconds += time.perf_counter() - t0
            states[rows] = (theta, total + mean * (rows - start))
        theta, total = states[rows]
        return theta, total / rows

    def grad(self, batch: int) -> tuple[np.ndarray, float]:
        """Gradient and mean cost at the initial parameters over the rows ``order[:batch]``."""
        if batch not in self._grads:
            X, y = self.work.train("float64")
            rows = self.work.order[:batch]
            g = np.empty(self.work.theta0("float64").shape)
            c = self.module.grad(
                self.work.theta0("float64"), self.work.sizes, ACT_CODE, COST_CODE, np.ascontiguousarray(X[rows]),
                y[rows], g,
            )  # fmt: skip
            self._grads[batch] = (g, float(c))
        return self._grads[batch]

    def test_outputs(self) -> np.ndarray:
        """Output activations of the initial network on the 10,000 test images, ``(10000, 10)``."""
        if self._test_outputs is None:
            Xt, _ = self.work.test("float64")
            self._test_outputs = self.module.forward(
                self.work.theta0("float64"), self.work.sizes, ACT_CODE, COST_CODE, Xt
            )
        return self._test_outputs


@pytest.fixture(scope="session")
def reference(workload: Workload) -> Reference:
    """Session-wide cache of float64 NumPy results (see :class:`Reference`)."""
    return Reference(workload)
