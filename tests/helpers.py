"""Named tolerances and small helpers shared by the tests."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from fastgd import backends

# Agreement with the NumPy reference (relative to the largest magnitude of the compared array).
RTOL64 = 1e-12  # float64 forward, cost and gradient
EPOCH_RTOL64 = 1e-9  # float64 parameters after one whole epoch
# float32 backends against the float64 reference, on the small test networks: a few float32
# roundings (eps 6e-8) per layer; measured worst 3.4e-7 (outputs), 3e-7 (gradients), 2e-7
# (parameters after a short epoch), 5.5e-7 (velocity): the bars leave a margin of about 10.
RTOL32 = 2e-6  # forward and cost
RTOL32_GRAD = 5e-6  # gradient, and parameters and velocity after one short epoch
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



def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """Worst ``|actual - expected|`` over the array, relative to its largest ``|expected|``."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    return float(np.max(np.abs(actual - expected)) / scale) if scale > 0 else float(np.max(np.abs(actual), initial=0.0))


def param_count(sizes) -> int:  # noqa: ANN001
    return sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))


def default_sigint() -> None:
    """``preexec_fn`` of a child process that the tests interrupt with SIGINT: a process started in the
    background by a non-interactive shell ignores SIGINT, its children inherit that, and Python then
    installs no KeyboardInterrupt handler; the child gets the default disposition back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
