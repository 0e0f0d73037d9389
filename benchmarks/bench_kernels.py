"""Benchmarks of fastgd's kernels on MNIST, 784-16-16-10, each result checked against the reference.

Groups (compare backends within a group):

* ``train-epoch``: one epoch of 60,000 images through ``train_epoch`` (the book's plain SGD:
  sigmoid, quadratic cost, eta 3.0, no momentum, no l2, N(0, 1) initial parameters), per
  backend x dtype x batch size (1, 10, 100, 1000);
* ``grad-batch``: one ``grad`` call on a mini-batch of 1, 10, 100 and 1000 rows;
* ``predict``: ``predict`` over the 10,000 test images.

Every benchmark compares its result with the float64 NumPy reference (``conftest.Reference``)
using the tolerances named below; README.md explains them and gives the measured errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:  # the fixtures' types; conftest is never imported as a module
    from conftest import Backend, Reference, Workload

N_TRAIN = 60_000  # rows of MNIST's training set
DTYPES = ("float32", "float64")

# --------------------------------------------------------------------------------------------
# Tolerances: relative max-abs errors, max |got - ref| / max |ref|, against the float64 reference.
# float32 results are compared with the float64 reference too (the honest float32 error).

RTOL64_EPOCH = 1e-9  # parameters (and mean cost) after SGD; measured <= 2e-14
RTOL32_EPOCH = 1e-5  # same, float32; NumPy and C++ measured <= 1.6e-6 over COMPARE_ROWS (README)
RTOL64_GRAD = 1e-12  # one mini-batch gradient; measured <= 3e-15
RTOL32_GRAD = 1e-5  # same, float32; measured <= 8.3e-7
TIE64 = 1e-12  # predict: a label may differ only where the reference's top outputs are this close
TIE32 = 1e-5  # same, float32 (float32 outputs are off by up to ~1e-6; the closest pair is 1.3e-6)

#: Rows of the order over which epoch parameters are compared tightly. With eta 3.0, SGD on MNIST
#: is chaotic at batch 1 and 10: a rounding difference of 1e-16 grows about tenfold every 100
#: steps once training gets going (batch 1 from the start, batch 10 after about 1,000 steps), so
#: after a whole epoch two *correct* float64 implementations differ by 10-100% in their
#: parameters. The parameters are therefore compared after the first 50 (batch 1) or 2,000
#: (batch 10) rows, before that amplification; batch 100 and 1000 stay stable over the epoch.
COMPARE_ROWS = {1: 50, 10: 2_000, 100: N_TRAIN, 1000: N_TRAIN}
#: With --benchmark-disable (CI) the epoch benchmarks run once over this many rows of the order.
SMOKE_ROWS = {1: 50, 10: 2_000, 100: 6_000, 1000: 6_000}
#: The whole chaotic epoch (batch 1 and 10) is checked statistically: its mean training cost must
#: be this close, relatively, to the reference's. Measured: at most 0.3% at batch 10; 0-20% at
#: batch 1, whose epoch is chaotic from its first few hundred steps. A coarse check (an epoch that
#: does not learn ends near the initial cost, 2.45, ten times the 0.24 of a working one).
EPOCH_COST_RTOL = {1: 0.40, 10: 0.02}

EPOCH_BATCHES = (1, 10, 100, 1000)
GRAD_BATCHES = (1, 10, 100, 1000)
ROUNDS = 3  # timed rounds of an epoch benchmark, each from a fresh copy of the initial parameters
SLOW_ROUNDS = 1  # the numpy backend at batch 1 and 10 (several seconds per epoch)


def rel_err(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``(max abs diff, max abs diff / max |ref|)``, computed in float64."""
    diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return diff, diff / float(np.max(np.abs(ref)))


def verdict(what: str, got: np.ndarray, ref: np.ndarray, tol: float) -> tuple[bool, str, float]:
    """Compare like llm.c's ``check_tensor``: what, max abs diff, max rel diff, OK / NOT OK."""
    diff, rel = rel_err(got, ref)
    ok = bool(np.isfinite(got).all()) and rel <= tol
    text = f"{what}: max abs diff {diff:.3e}, max rel diff {rel:.3e} (tolerance {tol:.0e}): {'OK' if ok else 'NOT OK'}"
    return ok, text, rel


# --------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="train-epoch")
@pytest.mark.parametrize("batch", EPOCH_BATCHES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epoch(
    benchmark: Any, record: Callable[..., None], backend: Backend, workload: Workload, reference: Reference,
    dtype: str, batch: int,
) -> None:  # fmt: skip
    X, y = workload.train(dtype)
    sizes = workload.sizes
    rows = N_TRAIN if benchmark.enabled else SMOKE_ROWS[batch]
    order = np.ascontiguousarray(workload.order[:rows])
    rounds = SLOW_ROUNDS if backend.name == "numpy" and batch <= 10 else ROUNDS
    thetas: list[np.ndarray] = []

    def epoch_args(theta: np.ndarray, order: np.ndarray) -> tuple[Any, ...]:
        # plain SGD: momentum 0 (no velocity), l2 0
        return (theta, sizes, workload.act_code, workload.cost_code, X, y, order, batch, workload.eta, 0.0, None, 0.0)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        theta = workload.theta0(dtype)  # a fresh copy: every round does the same work
        thetas.append(theta)
        return epoch_args(theta, order), {}

    warmup = 0 if backend.name == "numpy" else 1  # an untimed epoch first (caches, page faults)
    cost, _ = benchmark.pedantic(backend.module.train_epoch, setup=setup, rounds=rounds, warmup_rounds=warmup)
    final = thetas[-1]

    # Every round started from the same parameters and must end at the same ones, bit for bit.
    for k, theta in enumerate(thetas[:-1]):
        assert np.array_equal(theta, final), f"round {k} and the last round of the same epoch differ"

    # Tight comparison over the first `compared` rows: the benchmarked result itself when that is
    # all of it, else an untimed run of the same kernel over the start of the same order.
    compared = min(rows, COMPARE_ROWS[batch])
    if compared == rows:
        got, got_cost = final, float(cost)
    else:
        got = workload.theta0(dtype)
        got_cost = float(backend.module.train_epoch(*epoch_args(got, np.ascontiguousarray(order[:compared])))[0])
    ref, ref_cost = reference.epoch(batch, compared)
    tol = RTOL64_EPOCH if dtype == "float64" else RTOL32_EPOCH
    what = f"{backend.name} {dtype} batch {batch}, parameters after {compared} rows vs the float64 reference"
    ok, message, rel = verdict(what, got, ref, tol)
    cost_rel = abs(got_cost - ref_cost) / abs(ref_cost)

    record(
        dtype=dtype, batch_size=batch, rows=rows, rounds=rounds, compared_rows=compared,
        max_rel_err=rel, cost_rel_err=cost_rel,
    )  # fmt: skip
    assert ok, message
    assert cost_rel <= tol, f"{what}: mean cost {got_cost!r} vs {ref_cost!r}, relative error {cost_rel:.3e} > {tol:.0e}"

    if rows > compared:  # the rest of a chaotic epoch: statistically the same training
        assert np.isfinite(final).all(), f"{backend.name} {dtype} batch {batch}: non-finite parameters after the epoch"
        _, ref_epoch_cost = reference.epoch(batch, rows)
        epoch_rel = abs(float(cost) - ref_epoch_cost) / ref_epoch_cost
        benchmark.extra_info["epoch_cost_rel_diff"] = epoch_rel
        assert epoch_rel <= EPOCH_COST_RTOL[batch], (
            f"{backend.name} {dtype} batch {batch}: mean training cost over the epoch {float(cost):.5f} vs the "
            f"reference's {ref_epoch_cost:.5f} (relative {epoch_rel:.3f} > {EPOCH_COST_RTOL[batch]})"
        )


@pytest.mark.benchmark(group="grad-batch", max_time=0.25, min_rounds=5)
@pytest.mark.parametrize("batch", GRAD_BATCHES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad(
    benchmark: Any, record: Callable[..., None], backend: Backend, workload: Workload, reference: Reference,
    dtype: str, batch: int,
) -> None:  # fmt: skip
    X, y = workload.train(dtype)
    rows = workload.order[:batch]
    Xb, yb = np.ascontiguousarray(X[rows]), np.ascontiguousarray(y[rows])
    theta = workload.theta0(dtype)
    out = np.empty_like(theta)

    cost = benchmark(backend.module.grad, theta, workload.sizes, workload.act_code, workload.cost_code, Xb, yb, out)

    ref, ref_cost = reference.grad(batch)
    tol = RTOL64_GRAD if dtype == "float64" else RTOL32_GRAD
    ok, message, rel = verdict(f"{backend.name} {dtype} gradient of {batch} rows", out, ref, tol)
    cost_rel = abs(float(cost) - ref_cost) / abs(ref_cost)
    record(dtype=dtype, batch_size=batch, max_rel_err=rel, cost_rel_err=cost_rel)
    assert ok, message
    assert cost_rel <= tol, f"{backend.name} {dtype} batch {batch}: cost {cost!r} vs {ref_cost!r}"


@pytest.mark.benchmark(group="predict", max_time=0.5, min_rounds=5)
@pytest.mark.parametrize("dtype", DTYPES)
def test_predict(
    benchmark: Any, record: Callable[..., None], backend: Backend, workload: Workload, reference: Reference,
    dtype: str,
) -> None:  # fmt: skip
    Xt, _ = workload.test(dtype)
    theta = workload.theta0(dtype)

    labels = benchmark(backend.module.predict, theta, workload.sizes, workload.act_code, workload.cost_code, Xt)

    outputs = reference.test_outputs()
    ref_labels = np.argmax(outputs, axis=1)
    assert labels.dtype == np.int64 and labels.shape == ref_labels.shape, (labels.dtype, labels.shape)
    rows = np.arange(labels.shape[0])
    # How far below the reference's best output the chosen label's output is: 0 where they agree.
    gap = outputs[rows, ref_labels] - outputs[rows, np.clip(labels, 0, outputs.shape[1] - 1)]
    bad = (labels < 0) | (labels >= outputs.shape[1]) | (gap > (TIE64 if dtype == "float64" else TIE32))
    differ = int(np.sum(labels != ref_labels))
    record(dtype=dtype, batch_size=Xt.shape[0], labels_differing=differ, max_gap=float(gap.max()))
    assert not bad.any(), (
        f"{backend.name} {dtype} predict: {int(bad.sum())} of {differ} differing labels are not near-ties "
        f"(first rows {np.flatnonzero(bad)[:5].tolist()}, worst gap {gap.max():.3e})"
    )
