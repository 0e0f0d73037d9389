"""fastgd.train_many: K networks at once, each bit-identical to its own Network.fit."""

from __future__ import annotations

import numpy as np
import pytest

import fastgd
from fastgd import Network, Population, train_many

SIZES = [12, 5, 4, 3]


def _data(n: int = 57, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n)
    return X, y


def _separate(seeds, etas, X, y, epochs, batch_size, optimizer, validation_data=None, **opts):  # noqa: ANN001, ANN202
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
def test_bit_identical_to_separate_fits(backend, dtype: str, optimizer, batch_size: int) -> None:
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


@pytest.mark.parametrize("K", [1, 5])
def test_thread_count_does_not_change_results(backend, K: int) -> None:
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


def test_a_diverging_network_does_not_stop_the_others(backend) -> None:
    X, y = _data()
    opts = dict(activation="relu", cost="quadratic", dtype="float32", backend=backend.NAME)
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
        (dict(seeds=[]), ValueError, "seeds"),
        (dict(seeds=3), TypeError, "seeds"),
        (dict(seeds=[1, -1]), ValueError, r"seeds\[1\]"),
        (dict(seeds=[1, 2], etas=[0.1]), ValueError, "etas"),
        (dict(seeds=[1, 2], etas=[0.1, -1.0]), ValueError, r"etas\[1\]"),
        (dict(seeds=[1], etas="big"), TypeError, "etas"),
        (dict(seeds=[1], n_threads=0), ValueError, "n_threads"),
        (dict(seeds=[1], seed=3), TypeError, "seeds="),
        (dict(seeds=[1], colour="red"), TypeError, "colour"),
        (dict(seeds=[1], batch_size=0), ValueError, "batch_size"),
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
