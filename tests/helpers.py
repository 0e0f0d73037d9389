"""Named tolerances and small helpers shared by the tests."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastgd import backends

# Agreement with the NumPy reference (relative to the largest magnitude of the compared array).
RTOL64 = 1e-12  # float64 forward, cost and gradient
EPOCH_RTOL64 = 1e-9  # float64 parameters after one whole epoch
RTOL32 = 2e-5  # float32 forward, cost and gradient, against the float64 reference
EPOCH_RTOL32 = 1e-3  # float32 parameters after one short epoch, against the float64 reference
GRADCHECK_RTOL = 1e-7  # backprop vs five-point finite differences, float64

EXPECTED_BACKENDS = {b.strip() for b in os.environ.get("FASTGD_EXPECT_BACKENDS", "").split(",") if b.strip()}


def require_backend(name: str):  # noqa: ANN201
    """The backend module, or skip (fail, if it is expected) when it is unavailable."""
    ok, reason = backends.available(name)
    if not ok:
        if name in EXPECTED_BACKENDS:
            pytest.fail(f"backend {name!r} is expected (FASTGD_EXPECT_BACKENDS) but unavailable: {reason}")
        pytest.skip(f"backend {name!r} is unavailable: {reason}")
    return backends.load(name)



def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the largest magnitude in b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b))) / scale


def param_count(sizes) -> int:  # noqa: ANN001
    return sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))


def small_problem(sizes, n: int = 11, seed: int = 0, dtype=np.float64, scale: float = 1.0):  # noqa: ANN001, ANN201
    """theta ~ N(0, scale^2/fan_in)-ish, X ~ U(0, 1), labels: a small well-conditioned problem."""
    rng = np.random.default_rng(seed)
    parts = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        parts += [rng.standard_normal(n_in * n_out) * scale / np.sqrt(n_in), rng.standard_normal(n_out) * 0.5]
    theta = np.concatenate(parts).astype(dtype)
    X = rng.random((n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    return theta, np.asarray(sizes, dtype=np.int64), X, y
