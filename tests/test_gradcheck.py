"""Backprop against finite differences, for every backend, shape, activation and cost."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GRADCHECK_RTOL

import fastgd
from fastgd import Network

SHAPES = [[7, 5, 4, 3], [5, 3], [6, 8, 8, 8, 4], [20, 12, 10]]


def _away_from_relu_kinks(net: Network, X: np.ndarray, margin: float) -> bool:
    """True if no hidden unit's weighted input is within `margin` of 0 (finite differences
    across a ReLU's kink measure a different one-sided slope)."""
    a = X
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = a @ W.T + b
        if np.min(np.abs(z)) < margin:
            return False
        a = np.maximum(z, 0)
    return True


@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy", "log-likelihood"])
def test_backprop_matches_finite_differences(backend, sizes, activation, cost) -> None:  # noqa: ANN001
    rng = np.random.default_rng(sum(sizes))
    for seed in range(500):
        net = Network(sizes, activation=activation, cost=cost, init="scaled", seed=seed, dtype="float64",
                      backend=backend.NAME)  # fmt: skip
        X = rng.random((11, sizes[0]))
        if activation != "relu" or _away_from_relu_kinks(net, X, margin=0.01):
            break
    else:
        pytest.fail("no ReLU network away from its kinks was found")
    y = rng.integers(0, sizes[-1], 11)
    report = fastgd.gradcheck(net, X, y, method="five-point")
    assert report.n_checked == net.n_params
    assert report.max_rel_error <= GRADCHECK_RTOL, str(report)
    # the textbook two-point estimate agrees too, to its own (coarser) accuracy
    assert fastgd.gradcheck(net, X, y, method="central").max_rel_error <= 1e-4


def test_a_wrong_gradient_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a gradient off by 0.1% in one component is flagged."""
    module = fastgd.backends.load("numpy")
    real_grad = module.grad

    def broken_grad(theta, sizes, activation, cost, X, y, out):  # noqa: ANN001, ANN202
        c = real_grad(theta, sizes, activation, cost, X, y, out)
        out[3] *= 1.001
        return c

    rng = np.random.default_rng(0)
    X, y = rng.random((9, 6)), rng.integers(0, 3, 9)
    net = Network([6, 5, 3], dtype="float64", backend="numpy")
    assert fastgd.gradcheck(net, X, y, method="five-point").passed(GRADCHECK_RTOL)
    monkeypatch.setattr(module, "grad", broken_grad)
    report = fastgd.gradcheck(net, X, y, method="five-point")
    assert not report.passed(GRADCHECK_RTOL)
    assert report.max_rel_error > 1e-4
    worst = max(report.layers, key=lambda e: e.max_rel_error)
    assert (worst.layer, worst.kind) == (0, "weights")


def test_report_counts_and_costs() -> None:
    net = Network([784, 16, 16, 10], dtype="float32")
    rng = np.random.default_rng(0)
    X, y = rng.random((10, 784)).astype(np.float32), rng.integers(0, 10, 10)
    report = fastgd.gradcheck(net, X, y, max_params=500)
    assert report.n_params == 13002 and report.n_checked == 500
    assert report.fd_evaluations == 1000 and report.backprop_evaluations == 1
    assert report.dtype == "float64"
    assert report.fd_seconds > report.backprop_seconds
    assert sum(e.count for e in report.layers) == 500
    assert {(e.layer, e.kind) for e in report.layers} <= {(l, k) for l in range(3) for k in ("weights", "biases")}
    text = str(report)
    assert "cost evaluations" in text and "worst relative error" in text
    assert np.array_equal(net.theta, Network([784, 16, 16, 10], dtype="float32").theta)  # not modified


def test_bad_arguments() -> None:
    net = Network([5, 3], dtype="float64")
    X, y = np.random.default_rng(0).random((4, 5)), np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="method"):
        fastgd.gradcheck(net, X, y, method="complex-step")
    with pytest.raises(ValueError, match="positive"):
        fastgd.gradcheck(net, X, y, h=0.0)
