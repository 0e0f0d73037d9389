"""Properties that hold for every small network and data set (hypothesis), on every backend, float64.

* the gradient of a batch is the mean of the gradients of its rows;
* a step with eta = 0 (plain SGD, no L2) changes nothing;
* outputs stay in their range: sigmoid outputs in [0, 1], softmax rows in [0, 1] summing to 1;
* the same seeds give bit-identical parameters, run after run, and (C++ backend) whatever the
  number of worker threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import require_backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgd import Network, backends

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw: st.DrawFn, max_rows: int = 12) -> dict:
    """A small network (2-4 layers) and a data set for it."""
    sizes = [draw(st.integers(1, 6))] + draw(st.lists(st.integers(1, 6), max_size=2)) + [draw(st.integers(2, 5))]
    n = draw(st.integers(1, max_rows))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return dict(
        net=dict(sizes=sizes, activation=draw(st.sampled_from(backends.ACTIVATIONS)),
                 cost=draw(st.sampled_from(backends.COSTS)), init=draw(st.sampled_from(["normal", "scaled"])),
                 seed=seed % 1000, dtype="float64"),
        X=rng.uniform(-draw(st.sampled_from([1.0, 5.0])), 1.0, (n, sizes[0])),
        y=rng.integers(0, sizes[-1], n),
    )  # fmt: skip


@pytest.mark.parametrize("name", backends.NAMES)
@SETTINGS
@given(p=problems())
def test_batch_gradient_is_the_mean_of_row_gradients(name: str, p: dict) -> None:
    net = Network(**p["net"], backend=require_backend(name).NAME)
    X, y = p["X"], p["y"]
    batch = net.flat_gradient(X, y)
    rows = np.mean([net.flat_gradient(X[i : i + 1], y[i : i + 1]) for i in range(len(y))], axis=0)
    scale = max(np.max(np.abs(rows)), 1e-300)
    assert np.max(np.abs(batch - rows)) <= 1e-12 * scale
    assert net.cost(X, y) == pytest.approx(np.mean([net.cost(X[i : i + 1], y[i : i + 1]) for i in range(len(y))]),
                                           rel=1e-12, abs=1e-300)  # fmt: skip


@pytest.mark.parametrize("name", backends.NAMES)
@SETTINGS
@given(p=problems(), batch=st.integers(1, 12), epochs=st.integers(1, 3))
def test_eta_zero_changes_nothing(name: str, p: dict, batch: int, epochs: int) -> None:
    net = Network(**p["net"], backend=require_backend(name).NAME)
    theta = net.theta.copy()
    history = net.fit(p["X"], p["y"], epochs=epochs, batch_size=min(batch, len(p["y"])), eta=0.0, optimizer="sgd")
    assert np.array_equal(net.theta, theta)
    assert history.eta == [0.0] * epochs
    # with nothing changing, every epoch sees the same parameters: the same mean cost
    assert history.train_cost == pytest.approx([net.cost(p["X"], p["y"])] * epochs, rel=1e-12)


@pytest.mark.parametrize("name", backends.NAMES)
@SETTINGS
@given(p=problems(max_rows=30), spread=st.sampled_from([1.0, 10.0, 100.0]))
def test_outputs_stay_in_range(name: str, p: dict, spread: float) -> None:
    net = Network(**p["net"], backend=require_backend(name).NAME)
    net.theta *= spread  # large weights drive the units into saturation
    A = net.forward(p["X"])
    assert A.shape == (len(p["y"]), net.sizes[-1])
    assert np.isfinite(A).all() and (A >= 0).all() and (A <= 1).all()
    if net.cost_name == "log-likelihood":
        assert np.allclose(A.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.array_equal(net.predict(p["X"]), np.argmax(A, axis=1))
    assert np.isfinite(net.cost(p["X"], p["y"]))


@pytest.mark.parametrize("name", backends.NAMES)
@SETTINGS
@given(p=problems(max_rows=40), batch=st.integers(1, 40), fit_seed=st.integers(0, 2**31))
def test_same_seeds_give_bit_identical_parameters(name: str, p: dict, batch: int, fit_seed: int) -> None:
    runs = []
    for _ in range(2):
        net = Network(**p["net"], backend=require_backend(name).NAME)
        net.fit(p["X"], p["y"], epochs=2, batch_size=min(batch, len(p["y"])), seed=fit_seed)
        runs.append((net.theta.copy(), net.history.train_cost))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


# The worker-thread count of the C++ core is read once per process, so each count runs in its own.
THREADS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import fastgd
    from fastgd import _core
    out = {"threads": _core.build_info()["threads"], "thetas": []}
    for case in json.loads(sys.argv[1]):
        rng = np.random.default_rng(case["seed"])
        X = rng.random((case["n"], case["sizes"][0]))
        y = rng.integers(0, case["sizes"][-1], case["n"])
        net = fastgd.Network(case["sizes"], activation=case["activation"], cost=case["cost"], dtype=case["dtype"],
                             seed=case["seed"], backend="cpp")
        net.fit(X, y, epochs=2, batch_size=case["batch"], optimizer=fastgd.Optimizer(eta=0.5, momentum=0.5, l2=1e-3),
                seed=case["seed"])
        out["thetas"].append(net.theta.astype(np.float64).tobytes().hex())
    print(json.dumps(out))
    """
)


@given(
    cases=st.lists(
        st.fixed_dictionaries(dict(
            sizes=st.lists(st.integers(1, 24), min_size=2, max_size=4).map(lambda s: s[:-1] + [max(s[-1], 2)]),
            activation=st.sampled_from(backends.ACTIVATIONS), cost=st.sampled_from(backends.COSTS),
            dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 10**6),
            n=st.integers(17, 300), batch=st.integers(17, 120),
        )),  # fmt: skip
        min_size=4,
        max_size=4,
    )
)
@settings(max_examples=3, deadline=None)
def test_thread_count_does_not_change_the_parameters(cases: list[dict]) -> None:
    """Mini-batches above 16 rows are summed in slices on worker threads: 1 or 2 threads, the same bits."""
    require_backend("cpp")
    for case in cases:
        case["batch"] = min(case["batch"], case["n"])
    results = {}
    for threads in ("1", "2"):
        run = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, json.dumps(cases)], capture_output=True, text=True,
                             env={**os.environ, "FASTGD_NUM_THREADS": threads}, timeout=120)  # fmt: skip
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["threads"] == int(threads)
        results[threads] = out["thetas"]
    assert results["1"] == results["2"]
