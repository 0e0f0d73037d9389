"""The video's experiments, each a function returning an :class:`ExperimentResult` (a table and a figure).

* :func:`learning_rate`: the same network and seed trained at several learning rates: too small
  crawls, too large oscillates or diverges.
* :func:`init_seeds`: many random initialisations of one network: the spread of the final cost and
  accuracy (training finds different minima).
* :func:`random_labels`: the same network on correctly labelled images and on the same images with
  shuffled labels (Zhang et al. 2017): it memorises the shuffled labels while its test accuracy
  stays at chance.
* :func:`noise`: what a trained network answers for images of random noise, against real digits.

From the terminal: ``fastgd experiment NAME --help``. Every experiment is seeded (the same numbers on
every run) and takes options to run small (a subset of the data, fewer epochs, seeds or rates).
The figures need matplotlib (``pip install "fastgd[plot]"``); pass ``plot=False`` to skip them.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._validate import check_positive_int, check_rate, check_seed
from .network import DEFAULT_SIZES, Network, _param_count

__all__ = ["EXPERIMENTS", "ExperimentResult", "init_seeds", "learning_rate", "noise", "random_labels", "run"]

DATASETS = ("mnist", "fashion-mnist")


@dataclass
class ExperimentResult:
    """What an experiment found: a table, a few sentences saying what it shows, and a figure.

    Attributes
    ----------
    name : str
        The experiment's name (as for ``fastgd experiment NAME``).
    columns : list of str
        Column names of the table.
    rows : list of dict
        One dict per row, keyed by the column names (numbers stay numbers).
    notes : list of str
        What the table shows, in words.
    figure : matplotlib.figure.Figure or None
        The experiment's figure (None when run with ``plot=False``).
    data : dict
        Everything else measured (per-epoch curves, arrays), for further analysis.
    """

    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    figure: Any = None
    data: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> list[Any]:
        """The values of one column, in row order."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the columns are {self.columns}")
        return [row[name] for row in self.rows]

    def table(self) -> str:
        """The table as aligned text."""
        cells = [[_cell(row[c]) for c in self.columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)

    def save_figure(self, path: str | os.PathLike[str]) -> None:
        """Save the figure as a PNG (atomically)."""
        if self.figure is None:
            raise ValueError(f"the {self.name} experiment was run with plot=False: there is no figure to save")
        from .plot import save_figure

        save_figure(self.figure, path)

    def __str__(self) -> str:
        return "\n".join([f"experiment {self.name}", self.table(), *self.notes])


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "-"
        return f"{v:.4g}" if (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)) else f"{v:.4f}"
    return str(value)


# ------------------------------------------------------------------------------------------------
# Data


def _check_pair(pair: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name} must be a pair (X, y)")
    return np.asarray(pair[0]), np.asarray(pair[1])


def _subset(X: np.ndarray, y: np.ndarray, size: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    if size is None:
        return X, y
    size = check_positive_int(name, size)
    if size > X.shape[0]:
        raise ValueError(f"{name} ({size}) is larger than the {X.shape[0]} rows available")
    return X[:size], y[:size]


def _load_pair(
    dataset: str, data_dir: str | os.PathLike[str] | None, given: Any, split: Literal["train", "test"], size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The given (X, y) pair, else the dataset's ``split``; its first ``size`` rows when ``size`` is given."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}; got {dataset!r}")
    if given is not None:
        X, y = _check_pair(given, split)
    else:
        from .data import load_fashion_mnist, load_mnist

        loader = load_mnist if dataset == "mnist" else load_fashion_mnist
        X, y = loader(split, data_dir=data_dir)
    return _subset(X, y, size, f"{split}_size")


def _data(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    train: Any,
    test: Any,
    train_size: int | None,
    test_size: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, Xt, yt): the training and test pairs (given, else loaded), cut to their sizes."""
    X, y = _load_pair(dataset, data_dir, train, "train", train_size)
    Xt, yt = _load_pair(dataset, data_dir, test, "test", test_size)
    return X, y, Xt, yt


def _train_many(*args: Any, **kwargs: Any) -> Any:
    from . import train_many

    return train_many(*args, **kwargs)


# ------------------------------------------------------------------------------------------------
# learning-rate

VERDICTS = ("crawls", "converges", "oscillates", "stuck", "diverged")


def _verdict(initial: float, costs: np.ndarray, diverged: bool, best_final: float, accuracy: float,
             n_classes: int) -> str:  # fmt: skip
    """crawls / converges / oscillates / stuck / diverged, from one run's per-epoch training cost and
    its last epoch's training accuracy."""
    if diverged or len(costs) == 0 or not np.all(np.isfinite(costs)) or costs[-1] >= initial:
        return "diverged"
    flat = len(costs) >= 2 and abs(costs[-1] - costs[-2]) <= 0.01 * costs[-2]
    if flat and accuracy < 2.0 / n_classes and costs[-1] > 2.0 * best_final:
        return "stuck"  # saturated units: the cost went down a little, then the gradient vanished
    if np.any(costs[1:] > costs[:-1] * 1.01):
        return "oscillates"
    if costs[-1] > 2.0 * best_final:
        return "crawls"
    return "converges"


def learning_rate(
    etas: Sequence[float] = (0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0),
    sizes: Sequence[int] = DEFAULT_SIZES,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 10,
    optimizer: str = "sgd",
    train_size: int | None = None,
    test_size: int | None = None,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    train: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    plot: bool = True,
    **network_options: Any,
) -> ExperimentResult:
    """The same network and seed trained at several learning rates.

    Each rate gets a verdict from its per-epoch training cost: ``diverged`` (the cost became NaN
    or infinite, or ended above the untrained network's), ``oscillates`` (the cost rose from one
    epoch to the next by more than 1%), ``stuck`` (the cost no longer falling, above twice the best
    rate's, and training accuracy below twice chance: with a rate this large the units saturate and
    their gradients vanish, as in the book's sigmoid network), ``crawls`` (still falling, but ending above twice the
    best rate's final cost) or ``converges``.

    Parameters
    ----------
    etas : sequence of float
        The learning rates.
    sizes : sequence of int
        Layer widths.
    seed : int
        Seed of the initialisation and of the example order, the same for every rate.
    epochs, batch_size : int
        As for :meth:`Network.fit`.
    optimizer : str
        ``"sgd"`` (the default: the rate stays constant, nothing added) or ``"default"`` (fastgd's
        recipe, in which ``eta`` is the starting rate of a linear decay).
    train_size, test_size : int, optional
        Use only the first rows of the training and test splits.
    dataset : {"mnist", "fashion-mnist"}
        Loaded with :func:`fastgd.load_mnist` (or ``load_fashion_mnist``), which honours ``$FASTGD_DATA``.
    data_dir : str, optional
        Folder holding the dataset's files.
    train, test : (X, y), optional
        Arrays to use instead of the dataset's splits.
    plot : bool
        Draw the figure (needs matplotlib).
    **network_options
        ``activation``, ``cost``, ``init``, ``dtype``, ``backend`` (fastgd's defaults otherwise).

    Returns
    -------
    ExperimentResult
        Columns ``eta``, ``train cost``, ``test cost``, ``test accuracy``, ``verdict``; figure: the
        training cost per epoch, one curve per rate, on a log scale.
    """
    seed = check_seed(seed)
    if isinstance(etas, (str, bytes)) or not isinstance(etas, (Sequence, np.ndarray)) or len(etas) == 0:
        raise ValueError(f"etas must be a non-empty sequence of learning rates, got {etas!r}")
    eta_list = [check_rate(f"etas[{k}]", e) for k, e in enumerate(etas)]
    if min(eta_list) <= 0:
        raise ValueError(f"etas must be positive, got {eta_list}")
    X, y, Xt, yt = _data(dataset, data_dir, train, test, train_size, test_size)
    initial = Network(sizes, seed=seed, **network_options)
    initial_cost = initial.cost(X, y)
    pop = _train_many(sizes, X, y, seeds=[seed] * len(eta_list), etas=eta_list, epochs=epochs,
                      batch_size=batch_size, optimizer=optimizer, **network_options)  # fmt: skip
    curves = [np.asarray(net.history.train_cost, dtype=np.float64) for net in pop]
    diverged = [bool(d) for d in pop.diverged]
    finals = [c[-1] if len(c) and not d else math.nan for c, d in zip(curves, diverged)]
    best = np.nanmin(finals) if not np.all(np.isnan(finals)) else math.nan
    rows = []
    for k, (eta, net, costs) in enumerate(zip(eta_list, pop, curves)):
        accuracy = net.history.train_accuracy[-1] if len(net.history) else math.nan
        verdict = _verdict(initial_cost, costs, diverged[k], best, accuracy, net.sizes[-1])
        rows.append({
            "eta": eta,
            "epochs run": len(costs),
            "train cost": finals[k] if not diverged[k] else (costs[-1] if len(costs) else math.nan),
            "test cost": net.cost(Xt, yt),
            "test accuracy": net.score(Xt, yt),
            "verdict": verdict,
        })  # fmt: skip
    good = [r["eta"] for r in rows if r["verdict"] == "converges"]
    notes = [
        (f"{list(initial.sizes)} ({initial.activation}, {initial.cost_name}), seed {seed}, optimizer {optimizer!r}, "
         f"{epochs} epochs at batch {batch_size} on {X.shape[0]:,} images; test on {Xt.shape[0]:,}."),
        (f"untrained cost {initial_cost:.4f}. Verdicts from the training cost per epoch: diverged = non-finite or "
         "ended above the untrained cost; stuck = flat, with training accuracy below twice chance (saturated units); "
         "oscillates = rose by >1% between epochs; crawls = still falling but "
         "ending above twice the best final cost; converges = otherwise."),
    ]  # fmt: skip
    if good:
        notes.append(f"converging rates: {', '.join(f'{e:g}' for e in good)}")
    for k, msg in enumerate(pop.messages):
        if msg:
            notes.append(f"eta {eta_list[k]:g}: {msg}")
    result = ExperimentResult(
        "learning-rate", ["eta", "epochs run", "train cost", "test cost", "test accuracy", "verdict"], rows, notes,
        data={"initial_cost": initial_cost, "train_cost": curves, "diverged": diverged,
              "val_accuracy": [np.asarray(net.history.val_accuracy) for net in pop]},
    )  # fmt: skip
    if plot:
        from .plot import _figure

        fig = _figure(8, 5)
        ax = fig.subplots()
        for eta, costs, row in zip(eta_list, curves, rows):
            xs = np.arange(len(costs) + 1)
            ax.plot(xs, np.concatenate([[initial_cost], costs]), marker="o", markersize=3,
                    label=f"eta {eta:g}: {row['verdict']}")  # fmt: skip
        ax.set_yscale("log")
        ax.set(xlabel="epoch (0: untrained)", ylabel="training cost (log scale)",
               title=f"Learning rate: same network, same seed ({optimizer})")  # fmt: skip
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        result.figure = fig
    return result


# ------------------------------------------------------------------------------------------------
# init-seeds


def init_seeds(
    n_seeds: int = 30,
    sizes: Sequence[int] = DEFAULT_SIZES,
    first_seed: int = 0,
    eta: float | None = None,
    epochs: int = 10,
    batch_size: int = 10,
    optimizer: str = "default",
    train_size: int | None = None,
    test_size: int | None = None,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    train: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    plot: bool = True,
    **network_options: Any,
) -> ExperimentResult:
    """Many random initialisations of one network, trained alike: the spread of where they end.

    Parameters
    ----------
    n_seeds : int
        Number of networks; seeds ``first_seed, first_seed + 1, ...`` (each seeds a network's
        initial parameters and its example order).
    sizes : sequence of int
        Layer widths.
    first_seed : int
        The first seed.
    eta : float, optional
        Learning rate (the optimizer's own when not given).
    epochs, batch_size, optimizer
        As for :meth:`Network.fit`.
    train_size, test_size, dataset, data_dir, train, test, plot, **network_options
        As for :func:`learning_rate`.

    Returns
    -------
    ExperimentResult
        One row per seed (``train cost``, ``test cost``, ``test accuracy``) followed by summary rows
        (min, median, max, std); ``data["theta"]`` holds every network's final parameters. Figure:
        histograms of the final test accuracy and cost.
    """
    n_seeds = check_positive_int("n_seeds", n_seeds)
    first_seed = check_seed(first_seed, "first_seed")
    X, y, Xt, yt = _data(dataset, data_dir, train, test, train_size, test_size)
    seeds = list(range(first_seed, first_seed + n_seeds))
    pop = _train_many(sizes, X, y, seeds=seeds, etas=None if eta is None else [eta] * n_seeds, epochs=epochs,
                      batch_size=batch_size, optimizer=optimizer, **network_options)  # fmt: skip
    train_cost = np.array([net.cost(X, y) for net in pop])
    test_cost = pop.cost(Xt, yt)
    test_acc = pop.score(Xt, yt)
    rows: list[dict[str, Any]] = [
        {"seed": s, "train cost": train_cost[k], "test cost": test_cost[k], "test accuracy": test_acc[k],
         "diverged": bool(pop.diverged[k])}
        for k, s in enumerate(seeds)
    ]  # fmt: skip
    for label, fn in (("min", np.min), ("median", np.median), ("max", np.max), ("std", np.std)):
        rows.append({"seed": label, "train cost": fn(train_cost), "test cost": fn(test_cost),
                     "test accuracy": fn(test_acc), "diverged": ""})  # fmt: skip
    theta = np.stack([np.asarray(net.theta, dtype=np.float64) for net in pop])
    distinct = len({t.tobytes() for t in theta})
    # How far apart the minima are: mean distance between two networks' parameter vectors, against
    # the typical length of one.
    diffs = [np.linalg.norm(theta[i] - theta[j]) for i in range(len(theta)) for j in range(i + 1, len(theta))]
    mean_dist = float(np.mean(diffs)) if diffs else 0.0
    mean_norm = float(np.mean(np.linalg.norm(theta, axis=1)))
    first = pop[0]
    spread = test_acc.max() - test_acc.min()
    notes = [
        (f"{n_seeds} networks {list(first.sizes)} ({first.activation}, {first.cost_name}), seeds {seeds[0]}.."
         f"{seeds[-1]}, optimizer {optimizer!r}, {epochs} epochs at batch {batch_size} on {X.shape[0]:,} images; "
         f"test on {Xt.shape[0]:,}; {pop.seconds:.2f} s of training."),
        (f"test accuracy from {test_acc.min():.2%} to {test_acc.max():.2%} (spread {spread:.2%}, std "
         f"{test_acc.std():.2%}); training cost from {train_cost.min():.4f} to {train_cost.max():.4f}."),
        (f"{distinct} distinct final parameter vectors; two of them are on average {mean_dist:.3g} apart, their "
         f"length is {mean_norm:.3g}: each initialisation ends at a different point, with its own cost."),
    ]  # fmt: skip
    result = ExperimentResult(
        "init-seeds", ["seed", "train cost", "test cost", "test accuracy", "diverged"], rows, notes,
        data={"seeds": np.asarray(seeds), "train_cost": train_cost, "test_cost": test_cost,
              "test_accuracy": test_acc, "theta": theta, "mean_distance": mean_dist},
    )  # fmt: skip
    if plot:
        from .plot import _figure

        fig = _figure(10, 4)
        ax_acc, ax_cost = fig.subplots(1, 2)
        bins = min(20, max(5, n_seeds // 2))
        ax_acc.hist(100 * test_acc, bins=bins, color="tab:blue", edgecolor="white")
        ax_acc.set(xlabel="test accuracy (%)", ylabel="networks", title=f"Final test accuracy, {n_seeds} seeds")
        ax_cost.hist(train_cost, bins=bins, color="tab:orange", edgecolor="white")
        ax_cost.set(xlabel="training cost", ylabel="networks", title="Final training cost")
        for ax in (ax_acc, ax_cost):
            ax.grid(alpha=0.3)
            ax.yaxis.get_major_locator().set_params(integer=True)
        result.figure = fig
    return result


# ------------------------------------------------------------------------------------------------
# random-labels


def random_labels(
    sizes: Sequence[int] = DEFAULT_SIZES,
    train_size: int = 1000,
    epochs: int = 100,
    eta: float = 0.1,
    batch_size: int = 10,
    optimizer: str = "sgd",
    seed: int = 0,
    test_size: int | None = None,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    train: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    plot: bool = True,
    **network_options: Any,
) -> ExperimentResult:
    """The same network on correctly labelled images and on the same images with shuffled labels.

    With shuffled labels there is nothing to learn, only to memorise: the training accuracy still
    climbs (slowly, towards memorisation) while the test accuracy stays at chance (Zhang et al.
    2017, "Understanding deep learning requires rethinking generalization"). Memorising needs
    enough parameters per image: 784-16-16-10 has 13,002, fewer than MNIST's 60,000 training
    images, hence the small training subset (or pass wider ``sizes``).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths.
    train_size : int
        Number of training images (the first rows of the training split).
    epochs, eta, batch_size, optimizer
        As for :meth:`Network.fit`; plain SGD without weight decay by default, as in the paper.
    seed : int
        Seed of the networks (the same initialisation for both runs), their example order and the
        label shuffle.
    test_size, dataset, data_dir, train, test, plot, **network_options
        As for :func:`learning_rate`.

    Returns
    -------
    ExperimentResult
        Rows ``true labels`` and ``shuffled labels``: training accuracy (on the labels trained on),
        test accuracy, training cost. ``data`` holds both runs' accuracies per epoch. Figure: the
        training and test accuracy per epoch of both runs.
    """
    seed = check_seed(seed)
    X, y, Xt, yt = _data(dataset, data_dir, train, test, train_size, test_size)
    shuffled = np.random.default_rng(seed).permutation(np.asarray(y))
    curves: dict[str, dict[str, list[float]]] = {}
    rows: list[dict[str, Any]] = []
    nets = {}
    for label, labels in (("true labels", np.asarray(y)), ("shuffled labels", shuffled)):
        net = Network(sizes, seed=seed, **network_options)
        curve: dict[str, list[float]] = {"train_accuracy": [], "test_accuracy": []}

        def record(net: Network, history: Any, labels: np.ndarray = labels, curve: dict = curve) -> None:
            curve["train_accuracy"].append(net.score(X, labels))
            curve["test_accuracy"].append(net.score(Xt, yt))

        net.fit(X, labels, epochs=epochs, batch_size=batch_size, eta=eta, optimizer=optimizer, seed=seed,
                callback=record)  # fmt: skip
        curves[label] = curve
        nets[label] = net
        rows.append({
            "labels": label,
            "train accuracy": curve["train_accuracy"][-1] if curve["train_accuracy"] else net.score(X, labels),
            "test accuracy": curve["test_accuracy"][-1] if curve["test_accuracy"] else net.score(Xt, yt),
            "train cost": net.cost(X, labels),
        })  # fmt: skip
    n_params = _param_count(nets["true labels"].sizes)
    chance = 1.0 / nets["true labels"].sizes[-1]
    shuffled_row = rows[1]
    mnist_rows = 60_000
    why = (
        f" That is fewer parameters than MNIST's {mnist_rows:,} training images: a subset this small (or wider "
        "layers) is what lets it memorise."
        if n_params < mnist_rows
        else ""
    )
    how_far = (
        "it memorised the training images"
        if shuffled_row["train accuracy"] >= 0.9
        else "it is memorising the training images (more epochs go further)"
    )
    notes = [
        (f"{list(nets['true labels'].sizes)} has {n_params:,} parameters, trained on {X.shape[0]:,} images "
         f"({n_params / X.shape[0]:.1f} parameters per image).{why} "
         f"{epochs} epochs, eta {eta:g}, optimizer {optimizer!r}, batch {batch_size}; test on {Xt.shape[0]:,} images."),
        (f"shuffled labels: training accuracy {shuffled_row['train accuracy']:.1%} (chance {chance:.0%}) while test "
         f"accuracy stays at {shuffled_row['test accuracy']:.1%}, near chance: {how_far}, and learned nothing that "
         f"generalises. With the true labels: {rows[0]['test accuracy']:.1%} on the test images."),
    ]  # fmt: skip
    result = ExperimentResult("random-labels", ["labels", "train accuracy", "test accuracy", "train cost"], rows,
                              notes, data={"curves": curves, "chance": chance, "n_params": n_params})  # fmt: skip
    if plot:
        from .plot import _figure

        fig = _figure(8, 5)
        ax = fig.subplots()
        for (label, curve), color in zip(curves.items(), ("tab:blue", "tab:red")):
            xs = np.arange(1, len(curve["train_accuracy"]) + 1)
            ax.plot(xs, 100 * np.asarray(curve["train_accuracy"]), color=color, label=f"{label}: training")
            ax.plot(xs, 100 * np.asarray(curve["test_accuracy"]), color=color, linestyle="--", label=f"{label}: test")
        ax.axhline(100 * chance, color="gray", linewidth=1, linestyle=":", label="chance")
        ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 101),
               title=f"Random labels: {X.shape[0]:,} images, {n_params:,} parameters")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        result.figure = fig
    return result


# ------------------------------------------------------------------------------------------------
# noise


def noise(
    net: Network | None = None,
    n_images: int = 1000,
    threshold: float = 0.5,
    seed: int = 0,
    epochs: int = 5,
    train_size: int | None = None,
    test_size: int | None = None,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    train: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    plot: bool = True,
    **network_options: Any,
) -> ExperimentResult:
    """What a trained network answers for images of uniform random noise, against real digits.

    Parameters
    ----------
    net : Network, optional
        The network to question; when not given, one is trained (``Network(seed=seed,
        **network_options)``, ``epochs`` epochs with fastgd's defaults).
    n_images : int
        Number of noise images (pixels uniform in [0, 1)) and of test digits compared.
    threshold : float
        An answer counts as confident when its largest output is at least this.
    seed : int
        Seed of the noise (and of the network trained when ``net`` is not given).
    epochs : int
        Epochs of the network trained when ``net`` is not given.
    train_size, test_size, dataset, data_dir, train, test, plot, **network_options
        As for :func:`learning_rate`.

    Returns
    -------
    ExperimentResult
        Rows ``noise`` and ``digits``: mean largest output, share of confident answers, most common
        answer and its share, accuracy (digits only). Figure: the distribution of the largest output
        for both, and how often the network gives each answer to noise.
    """
    seed = check_seed(seed)
    n_images = check_positive_int("n_images", n_images)
    threshold = check_rate("threshold", threshold)
    need_train = net is None
    if net is not None and not isinstance(net, Network):
        raise TypeError(f"net must be a fastgd.Network or None, got {type(net).__name__}")
    if net is None:
        X, y = _load_pair(dataset, data_dir, train, "train", train_size)
        net = Network(seed=seed, **network_options)
        net.fit(X, y, epochs=epochs, seed=seed)
    Xt, yt = _load_pair(dataset, data_dir, test, "test", test_size)
    digits_X, digits_y = Xt[:n_images], yt[:n_images]
    noise_X = np.random.default_rng(seed).random((n_images, net.sizes[0])).astype(net.dtype)
    k = net.sizes[-1]
    rows: list[dict[str, Any]] = []
    outputs = {}
    for label, A in (("noise", noise_X), ("digits", digits_X)):
        out = np.asarray(net.forward(A), dtype=np.float64)
        top = out.max(axis=1)
        answers = np.bincount(out.argmax(axis=1), minlength=k)
        outputs[label] = (top, answers)
        rows.append({
            "input": label,
            "images": A.shape[0],
            "mean max output": float(top.mean()),
            f"max output >= {threshold:g}": float(np.mean(top >= threshold)),
            "most common answer": int(answers.argmax()),
            "its share": float(answers.max() / A.shape[0]),
            "accuracy": math.nan if label == "noise" else net.score(A, digits_y),
        })  # fmt: skip
    nz, dg = rows
    conf_col = f"max output >= {threshold:g}"
    notes = [
        f"{net!r}, {'trained for ' + str(epochs) + ' epochs' if need_train else 'as given'}.",
        (f"On uniform noise the network still answers every time (there is no 'not a digit' output): mean largest "
         f"output {nz['mean max output']:.3f} against {dg['mean max output']:.3f} on real digits; "
         f"{nz[conf_col]:.1%} of the noise images get an output >= {threshold:g}, and it answers "
         f"{nz['most common answer']} for {nz['its share']:.1%} of them."),
    ]  # fmt: skip
    result = ExperimentResult("noise", list(rows[0]), rows, notes,
                              data={label: {"max_output": top, "answers": answers}
                                    for label, (top, answers) in outputs.items()})  # fmt: skip
    if plot:
        from .plot import _figure

        fig = _figure(10, 4)
        ax_hist, ax_ans = fig.subplots(1, 2)
        hi = max(1.0, max(float(t.max()) for t, _ in outputs.values()))
        bins = np.linspace(min(0.0, min(float(t.min()) for t, _ in outputs.values())), hi, 31)
        for (label, (top, _)), color in zip(outputs.items(), ("tab:red", "tab:blue")):
            ax_hist.hist(top, bins=bins, alpha=0.6, color=color, label=label)
        ax_hist.axvline(threshold, color="gray", linestyle=":", label=f"threshold {threshold:g}")
        ax_hist.set(xlabel="largest output", ylabel="images", title="How sure the network is")
        ax_hist.legend()
        ax_ans.bar(range(k), 100 * outputs["noise"][1] / n_images, color="tab:red")
        ax_ans.set_xticks(range(k))
        ax_ans.set(xlabel="answer", ylabel="% of noise images", title="What it answers for noise")
        for ax in (ax_hist, ax_ans):
            ax.grid(alpha=0.3)
        result.figure = fig
    return result


EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    "learning-rate": learning_rate,
    "init-seeds": init_seeds,
    "random-labels": random_labels,
    "noise": noise,
}
"""The experiments by their command-line name."""


def run(name: str, **options: Any) -> ExperimentResult:
    """Run the experiment called ``name`` (a key of :data:`EXPERIMENTS`) with ``options``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"name must be one of {', '.join(map(repr, EXPERIMENTS))}; got {name!r}")
    return EXPERIMENTS[name](**options)


# ------------------------------------------------------------------------------------------------
# Command line: ``fastgd experiment NAME``


def _floats(text: str) -> list[float]:
    try:
        values = [float(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.01,0.1,1, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _add_common(p: argparse.ArgumentParser, name: str, train_size: int | None) -> None:
    from .cli import _add_network_options

    _add_network_options(p, seed=False)  # each experiment has its own --seed (or seeds)
    p.add_argument("--train-size", type=int, default=train_size,
                   help=f"train on the first N training images (default: {train_size or 'all'})")  # fmt: skip
    p.add_argument("--test-size", type=int, default=None, help="test on the first N test images (default: all)")
    p.add_argument("--out", default=f"{name}.png", help=f"where the figure is saved as PNG (default: {name}.png)")
    p.add_argument("--no-figure", action="store_true", help="print the table only (needs no matplotlib)")
    p.set_defaults(func=_run_command, experiment=name)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``fastgd experiment NAME`` (one sub-command per experiment) to the sub-parsers ``sub``."""
    p = sub.add_parser("experiment", help="rerun the video's experiments: learning-rate, init-seeds, random-labels, "
                       "noise", description="Run one of the video's experiments: print its table and save its "
                       "figure (PNG, needs matplotlib: pip install \"fastgd[plot]\").")  # fmt: skip
    names = p.add_subparsers(dest="experiment", required=True, metavar="NAME")

    q = names.add_parser("learning-rate", help="the same network and seed at several learning rates",
                         description=_first_paragraph(learning_rate))  # fmt: skip
    q.add_argument("--etas", type=_floats, default=[0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0],
                   help="learning rates (default: 0.001,0.01,0.1,0.3,1,3,10,100)")  # fmt: skip
    q.add_argument("--epochs", type=int, default=10, help="(default: 10)")
    q.add_argument("--batch-size", type=int, default=10, help="(default: 10)")
    q.add_argument("--seed", type=int, default=0, help="seed of the network and the example order (default: 0)")
    q.add_argument("--optimizer", choices=("sgd", "default"), default="sgd",
                   help="'sgd': constant eta (default); 'default': fastgd's recipe, eta decaying linearly")  # fmt: skip
    _add_common(q, "learning-rate", None)

    q = names.add_parser("init-seeds", help="many random initialisations: the spread of final cost and accuracy",
                         description=_first_paragraph(init_seeds))  # fmt: skip
    q.add_argument("--seeds", type=int, default=30, dest="n_seeds", help="number of networks (default: 30)")
    q.add_argument("--first-seed", type=int, default=0, help="(default: 0)")
    q.add_argument("--eta", type=float, default=None, help="learning rate (default: the optimizer's)")
    q.add_argument("--epochs", type=int, default=10, help="(default: 10)")
    q.add_argument("--batch-size", type=int, default=10, help="(default: 10)")
    q.add_argument("--optimizer", choices=("default", "sgd"), default="default", help="(default: default)")
    _add_common(q, "init-seeds", None)

    q = names.add_parser("random-labels", help="true vs shuffled labels: memorisation without generalisation",
                         description=_first_paragraph(random_labels))  # fmt: skip
    q.add_argument("--epochs", type=int, default=100, help="(default: 100)")
    q.add_argument("--eta", type=float, default=0.1, help="(default: 0.1)")
    q.add_argument("--batch-size", type=int, default=10, help="(default: 10)")
    q.add_argument("--optimizer", choices=("sgd", "default"), default="sgd", help="(default: sgd, no weight decay)")
    q.add_argument("--seed", type=int, default=0, help="seed of the network, example order and shuffle (default: 0)")
    _add_common(q, "random-labels", 1000)

    q = names.add_parser("noise", help="what a trained network answers for random noise, against real digits",
                         description=_first_paragraph(noise))  # fmt: skip
    q.add_argument("--model", default=None,
                   help="a saved model (.npz; the network options are then ignored); default: train one")  # fmt: skip
    q.add_argument("--images", type=int, default=1000, dest="n_images", metavar="N",
                   help="noise images and digits (default: 1000)")  # fmt: skip
    q.add_argument("--threshold", type=float, default=0.5, help="a confident answer's largest output (default: 0.5)")
    q.add_argument("--seed", type=int, default=0, help="seed of the noise and the trained network (default: 0)")
    q.add_argument("--epochs", type=int, default=5, help="epochs of the network trained without --model (default: 5)")
    _add_common(q, "noise", None)
    return p


def _first_paragraph(fn: Any) -> str:
    return (fn.__doc__ or "").strip().split("\n\n")[0]


def _run_command(args: argparse.Namespace) -> int:
    name = args.experiment
    if not args.no_figure:  # a figure that cannot be saved should fail before the experiment runs, not after
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--out {args.out!r}: the folder {folder!r} does not exist")
    options: dict[str, Any] = {
        "dataset": args.dataset, "data_dir": args.data_dir, "train_size": args.train_size,
        "test_size": args.test_size, "plot": not args.no_figure,
    }  # fmt: skip
    network_keys = ("sizes", "activation", "cost", "init", "dtype", "backend")
    options.update({k: getattr(args, k) for k in network_keys})
    if name == "learning-rate":
        options.update(etas=args.etas, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       optimizer=args.optimizer)  # fmt: skip
    elif name == "init-seeds":
        options.update(n_seeds=args.n_seeds, first_seed=args.first_seed, eta=args.eta, epochs=args.epochs,
                       batch_size=args.batch_size, optimizer=args.optimizer)  # fmt: skip
    elif name == "random-labels":
        options.update(epochs=args.epochs, eta=args.eta, batch_size=args.batch_size, optimizer=args.optimizer,
                       seed=args.seed)  # fmt: skip
    else:
        options.update(n_images=args.n_images, threshold=args.threshold, seed=args.seed, epochs=args.epochs)
        if args.model is not None:
            from ._model_file import load

            options["net"] = load(args.model)
            for k in network_keys:
                options.pop(k)
    result = run(name, **options)
    print(result, flush=True)
    if result.figure is not None:
        result.save_figure(args.out)
        print(f"figure saved to {args.out}")
    return 0
