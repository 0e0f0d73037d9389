"""Real results on real MNIST (from $FASTGD_DATA): what the README claims, measured."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import require_backend

from fastgd import Network


@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_short_default_run_clears_the_bar(mnist, name: str) -> None:  # noqa: ANN001
    """Three epochs of the default 784-16-16-10 already reach 92% of unseen test digits."""
    require_backend(name)
    (X, y), (Xt, yt) = mnist["train"], mnist["test"]
    net = Network(backend=name, seed=0)
    hist = net.fit(X, y, epochs=3, validation_data=(Xt, yt))
    assert hist.val_accuracy[-1] >= 0.92
    assert hist.train_cost[-1] < hist.train_cost[0]


def test_reference_backend_learns_real_digits(mnist) -> None:  # noqa: ANN001
    (X, y), (Xt, yt) = mnist["train"], mnist["test"]
    net = Network(backend="numpy", seed=0)
    net.fit(X[:10000], y[:10000], epochs=1, batch_size=20)
    assert net.score(Xt, yt) >= 0.85


def _median_accuracy(mnist, seeds, network_kwargs, fit_kwargs) -> tuple[float, list[float]]:  # noqa: ANN001
    (X, y), (Xt, yt) = mnist["train"], mnist["test"]
    accs = []
    for seed in seeds:
        net = Network(seed=seed, backend="cpp", **network_kwargs)
        net.fit(X, y, epochs=30, batch_size=10, seed=seed, **fit_kwargs)
        accs.append(net.score(Xt, yt))
    return float(np.median(accs)), accs


@pytest.mark.slow
def test_defaults_reach_96_percent_in_30_epochs(mnist) -> None:  # noqa: ANN001
    """The video's figure: Network([784, 16, 16, 10]).fit(X, y), every argument at its default."""
    require_backend("cpp")
    median, accs = _median_accuracy(mnist, [0, 1, 2], {}, {})
    assert median >= 0.960, accs


@pytest.mark.slow
def test_book_settings_land_where_the_book_does(mnist) -> None:  # noqa: ANN001
    """sigmoid, quadratic cost, N(0,1) init, plain SGD, batch 10, eta 3.0, 30 epochs: 93.5-94.5%."""
    require_backend("cpp")
    median, accs = _median_accuracy(
        mnist, [0, 1, 2], dict(activation="sigmoid", cost="quadratic", init="normal"), dict(eta=3.0, optimizer="sgd")
    )
    assert 0.930 <= median <= 0.950, accs
