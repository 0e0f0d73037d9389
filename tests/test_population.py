"""fastgd.train_many: K networks at once, each bit-identical to its own Network.fit."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import default_sigint, require_backend

import fastgd
from fastgd import Network, Population, train_many

SIZES = [12, 5, 4, 3]


def _data(n: int = 57, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n)
    return X, y


def _separate(
    seeds: Sequence[int],
    etas: Sequence[float | None],
    X: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    optimizer: str | fastgd.Optimizer,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    **opts: Any,
) -> list[Network]:
    nets = []
    for s, e in zip(seeds, etas):
        net = Network(SIZES, seed=s, **opts)
        net.fit(X, y, eta=e, seed=s, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                validation_data=validation_data)  # fmt: skip
        nets.append(net)
    return nets


MOMENTUM = fastgd.Optimizer(eta=0.05, momentum=0.9, l2=1e-3, schedule="cosine", final=0.1, name="momentum")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("optimizer", "batch_size"), [("sgd", 1), ("default", 10), ("sgd", 13), ("sgd", 57), (MOMENTUM, 20)]
)
def test_bit_identical_to_separate_fits(
    backend: ModuleType, dtype: str, optimizer: str | fastgd.Optimizer, batch_size: int
) -> None:
    X, y = _data()
    Xv, yv = _data(20, seed=9)
    seeds = [0, 5, 7]
    etas = [0.5, 1.0, 0.05]
    pop = train_many(SIZES, X, y, seeds, etas=etas, epochs=3, batch_size=batch_size, optimizer=optimizer,
                     validation_data=(Xv, yv), dtype=dtype, backend=backend.NAME)  # fmt: skip
    ref = _separate(seeds, etas, X, y, 3, batch_size, optimizer, (Xv, yv), dtype=dtype, backend=backend.NAME)
    assert isinstance(pop, Population) and len(pop) == 3
    for k, (net, want) in enumerate(zip(pop, ref)):
        assert net.theta.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(net.theta, want.theta, err_msg=f"network {k}")
        for name in ("train_cost", "train_accuracy", "val_cost", "val_accuracy", "eta", "epoch"):
            assert getattr(net.history, name) == getattr(want.history, name), (k, name)
    assert pop.train_cost.shape == (3, 3)
    np.testing.assert_array_equal(pop.final_val_accuracy, [w.history.val_accuracy[-1] for w in ref])
    np.testing.assert_array_equal(pop.etas, etas)
    assert not pop.diverged.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", MOMENTUM])
def test_bit_identical_to_separate_fits_with_large_mini_batches(
    backend: ModuleType, dtype: str, optimizer: str | fastgd.Optimizer
) -> None:
    """Large mini-batches (Numba: 64 rows and more; C++: above 16) are summed in slices, on threads in fit:
    the same."""
    X, y = _data(n=700, seed=5)
    seeds, etas = [3, 4, 5], [0.2, 0.5, 1.0]
    pop = train_many(SIZES, X, y, seeds, etas=etas, epochs=2, batch_size=300, optimizer=optimizer, dtype=dtype,
                     backend=backend.NAME)  # fmt: skip
    ref = _separate(seeds, etas, X, y, 2, 300, optimizer, None, dtype=dtype, backend=backend.NAME)
    for net, want in zip(pop, ref):
        np.testing.assert_array_equal(net.theta, want.theta)
        assert net.history.train_cost == want.history.train_cost


@pytest.mark.parametrize(("optimizer", "batch_size"), [("sgd", 10), (MOMENTUM, 20), ("sgd", 1)])
def test_bit_identical_to_separate_fits_with_a_wide_first_layer(
    backend: ModuleType, optimizer: str | fastgd.Optimizer, batch_size: int
) -> None:
    """A first layer of 256 inputs or more is trained in two parts by input, on two threads in fit and one part
    after the other in train_many (small mini-batches; batch 1 stays whole): the same."""
    sizes = [300, 6, 4]
    rng = np.random.default_rng(8)
    X = rng.random((97, 300)) * (rng.random((97, 300)) < 0.3)
    y = rng.integers(0, 4, 97)
    seeds, etas = [1, 2, 3], [0.3, 1.0, 0.1]
    pop = train_many(sizes, X, y, seeds, etas=etas, epochs=2, batch_size=batch_size, optimizer=optimizer,
                     dtype="float32", backend=backend.NAME)  # fmt: skip
    for k, (s, e) in enumerate(zip(seeds, etas)):
        net = Network(sizes, seed=s, dtype="float32", backend=backend.NAME)
        net.fit(X, y, eta=e, seed=s, epochs=2, batch_size=batch_size, optimizer=optimizer)
        np.testing.assert_array_equal(pop[k].theta, net.theta, err_msg=f"network {k}")
        assert pop[k].history.train_cost == net.history.train_cost


@pytest.mark.parametrize("K", [1, 5])
def test_thread_count_does_not_change_results(backend: ModuleType, K: int) -> None:
    X, y = _data()
    seeds = list(range(10, 10 + K))
    pops = [train_many(SIZES, X, y, seeds, etas=0.3, epochs=2, batch_size=b, optimizer="sgd", n_threads=t,
                       backend=backend.NAME) for t in (1, 2, 3) for b in (4, 40)]  # fmt: skip
    for b in range(2):
        for other in (pops[2 + b], pops[4 + b]):
            for net, want in zip(other, pops[b]):
                np.testing.assert_array_equal(net.theta, want.theta)
                assert net.history.train_cost == want.history.train_cost
    ref = _separate(seeds, [0.3] * K, X, y, 2, 40, "sgd", backend=backend.NAME)
    for net, want in zip(pops[1], ref):
        np.testing.assert_array_equal(net.theta, want.theta)


def test_default_etas_and_a_single_eta() -> None:
    X, y = _data()
    pop = train_many(SIZES, X, y, [1, 2], epochs=2)
    assert list(pop.etas) == [fastgd.optim.DEFAULT.eta] * 2
    ref = _separate([1, 2], [None, None], X, y, 2, 10, "default")
    for net, want in zip(pop, ref):
        np.testing.assert_array_equal(net.theta, want.theta)
    pop = train_many(SIZES, X, y, [4], etas=2.0, epochs=1, optimizer="sgd")
    assert len(pop) == 1 and list(pop.etas) == [2.0]


def test_a_diverging_network_does_not_stop_the_others(backend: ModuleType) -> None:
    X, y = _data()
    opts = {"activation": "relu", "cost": "quadratic", "dtype": "float32", "backend": backend.NAME}
    seeds, etas = [0, 1, 2], [0.1, 1e30, 0.2]
    pop = train_many(SIZES, X, y, seeds, etas=etas, epochs=3, optimizer="sgd", **opts)
    assert list(pop.diverged) == [False, True, False]
    assert "diverged in epoch 1" in pop.messages[1] and pop.messages[0] is None
    assert [len(h) for h in pop.histories] == [3, 0, 3]
    for k, (net, s, e) in enumerate(zip(pop, seeds, etas)):
        want = Network(SIZES, seed=s, **opts)
        try:
            want.fit(X, y, epochs=3, eta=e, optimizer="sgd", seed=s)
        except fastgd.DivergenceError:
            assert pop.diverged[k]
        np.testing.assert_array_equal(net.theta, want.theta)  # a diverged one: as before the failing epoch
        assert net.history.train_cost == want.history.train_cost


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seeds": []}, ValueError, "seeds"),
        ({"seeds": 3}, TypeError, "seeds"),
        ({"seeds": [1, -1]}, ValueError, r"seeds\[1\]"),
        ({"seeds": [1, 2], "etas": [0.1]}, ValueError, "etas"),
        ({"seeds": [1, 2], "etas": [0.1, -1.0]}, ValueError, r"etas\[1\]"),
        ({"seeds": [1], "etas": "big"}, TypeError, "etas"),
        ({"seeds": [1], "n_threads": 0}, ValueError, "n_threads"),
        ({"seeds": [1], "seed": 3}, TypeError, "seeds="),
        ({"seeds": [1], "colour": "red"}, TypeError, "colour"),
        ({"seeds": [1], "batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    X, y = _data()
    with pytest.raises(error, match=match):
        train_many(SIZES, X, y, epochs=1, **kwargs)


def test_bad_data_is_refused() -> None:
    X, y = _data()
    with pytest.raises(fastgd.DataError, match="X"):
        train_many(SIZES, X[:, :5], y, [0], epochs=1)
    X[3, 2] = np.nan
    with pytest.raises(fastgd.DataError, match="non-finite"):
        train_many(SIZES, X, y, [0], epochs=1)


def test_ctrl_c_stops_population_training() -> None:
    """SIGINT while the compiled trainer's threads run raises KeyboardInterrupt promptly."""
    require_backend("cpp")
    code = textwrap.dedent(
        """
        import time, numpy as np, fastgd
        rng = np.random.default_rng(0)
        X = rng.random((20_000, 784), dtype=np.float32); y = rng.integers(0, 10, 20_000)
        print("ready", flush=True)
        t0 = time.perf_counter()
        try:
            fastgd.train_many([784, 16, 16, 10], X, y, [0, 1, 2, 3], epochs=10_000, n_threads=2, backend="cpp")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("after", time.perf_counter() - t0, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()
    time.sleep(1.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "interrupted" in out, out + err
    assert time.perf_counter() - sent < 5


def _core_args(K: int = 2, dtype: str = "float32") -> dict:
    X, y = _data()
    sizes = np.asarray(SIZES, dtype=np.int64)
    thetas = np.stack([Network(SIZES, seed=k, dtype=dtype).theta for k in range(K)])
    return {"thetas": thetas, "sizes": sizes, "activation": 1, "cost": 2, "X": X.astype(dtype), "y": y.astype(np.int64),
                "orders": np.stack([np.arange(X.shape[0])] * K).astype(np.int64), "batch_size": 10,
                "etas": np.full(K, 0.1), "momentum": 0.0, "velocities": None, "l2": 0.0,
                "active": np.ones(K, dtype=np.uint8), "Xv": None, "yv": None, "n_threads": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.update(thetas=a["thetas"][:, :-1].copy()), "thetas has shape"),
        (lambda a: a.update(thetas=a["thetas"][0].copy()), "thetas must be 2-dimensional"),
        (lambda a: a.update(thetas=a["thetas"].astype(np.float16)), "float32 or float64"),
        (lambda a: a.update(X=a["X"].astype(np.float64)), "X must have dtype float32"),
        (lambda a: a["orders"].__setitem__((1, 3), 57), r"orders\[1, 3\] = 57"),
        (lambda a: a.update(orders=a["orders"][:1].copy()), "orders has shape"),
        (lambda a: a.update(etas=np.array([0.1, np.inf])), r"etas\[1\] must be finite"),
        (lambda a: a.update(etas=np.array([0.1])), "etas has 1 entries"),
        (lambda a: a.update(momentum=0.9), "velocities is required"),
        (lambda a: a.update(momentum=0.9, velocities=a["thetas"]), "velocities must not share memory"),
        (lambda a: a.update(active=np.ones(3, dtype=np.uint8)), "active has 3 entries"),
        (lambda a: a.update(Xv=a["X"]), "Xv and yv must both be given"),
        (lambda a: a["y"].__setitem__(0, 3), r"y\[0\] = 3"),
        (lambda a: a.update(batch_size=0), "batch_size"),
        (lambda a: a.update(n_threads=-1), "n_threads"),
    ],
)
def test_compiled_trainer_checks_every_array(change: Callable[[dict[str, Any]], Any], match: str) -> None:
    require_backend("cpp")
    from fastgd import _core

    args = _core_args()
    change(args)
    with pytest.raises(ValueError, match=match):
        _core.train_epoch_many(**args)


def test_compiled_trainer_leaves_inactive_networks_alone(backend: ModuleType) -> None:
    args = _core_args(K=3, dtype="float64")
    args["active"][1] = 0
    args["Xv"], args["yv"] = args["X"][:20], args["y"][:20]
    before = args["thetas"].copy()
    costs, correct, val_costs, val_correct = backend.train_epoch_many(**args)
    np.testing.assert_array_equal(args["thetas"][1], before[1])
    assert (args["thetas"][[0, 2]] != before[[0, 2]]).any(axis=1).all()
    assert np.isnan(costs[1]) and np.isnan(val_costs[1]) and correct[1] == 0 and val_correct[1] == 0
    assert np.isfinite(costs[[0, 2]]).all() and np.isfinite(val_costs[[0, 2]]).all()
    theta = before[2].copy()
    want = backend.train_epoch(theta, args["sizes"], 1, 2, args["X"], args["y"], args["orders"][2], 10, 0.1, 0.0,
                               None, 0.0)  # fmt: skip
    np.testing.assert_array_equal(args["thetas"][2], theta)
    assert (costs[2], correct[2]) == (want[0], want[1])
    assert val_costs[2] == backend.cost(theta, args["sizes"], 1, 2, args["Xv"], args["yv"])
