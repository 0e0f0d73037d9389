"""Population training: many networks of one shape trained on the same data, :func:`train_many`.

The questions of the video (which learning rate, which initialisation, how different are the
minima that training finds) are answered by training many small networks, not one.
:func:`train_many` trains K independent networks of the same shape on the same data, each with its
own seed (initial parameters and example order) and learning rate, and returns them as a
:class:`Population`.

Network ``k`` of the result is exactly (bit for bit) what ::

    net = Network(sizes, seed=seeds[k], **network_options)
    net.fit(X, y, eta=etas[k], seed=seeds[k], epochs=epochs, batch_size=batch_size,
            optimizer=optimizer, validation_data=validation_data)

gives, except that a network that diverges does not stop the others (see :func:`train_many`).

How it runs. Each epoch is one call of the backend's ``train_epoch_many`` for all K networks (the
C++ and Numba backends spread the networks over threads with the GIL released, NumPy
loops); each network inside it is trained by exactly the kernel :meth:`Network.fit` calls, which is
why the results are identical whatever the thread count. Python keeps what ``fit`` does between
epochs, per network: the epoch's learning rate, its example order from its own
``default_rng(seed).permutation`` (the orders of all epochs at once would take K x epochs x n x 8
bytes, 1.4 GB for 100 networks and 30 MNIST epochs), the check for non-finite results and the
history. Epochs are the outer loop and networks the inner one: a network's parameters (52 KB in
float32) are reloaded once per epoch, nothing next to streaming X (188 MB) through it.

Why the examples are not streamed through all K networks while in cache: the networks have
different example orders (their own seeds), so no two of them want the same row at the same time.
The gain could not be large anyway: one C++ epoch of 784-16-16-10 at batch 10 took 29-30 ms with the
rows in random order over all 60,000 images and 24-25 ms with every row drawn from 100 or 1,000
images already in cache (one thread, the backend's ``train_epoch``, best of 9), so memory traffic is
at most about a fifth of the time.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, overload

import numpy as np

from ._validate import as_features, check_all_finite, check_positive_int, check_rate, check_seed
from .network import History, Network
from .optim import Optimizer, resolve_optimizer

__all__ = ["Population", "train_many"]

_NETWORK_OPTIONS = ("activation", "cost", "init", "dtype", "backend")


class Population(Sequence[Network]):
    """K trained networks of one shape, with their seeds, learning rates and histories.

    A ``Population`` is a sequence of :class:`~fastgd.Network` (``pop[k]``, ``len(pop)``,
    iteration); the per-network figures are NumPy arrays indexed like it.

    Attributes
    ----------
    networks : list of Network
        The trained networks, in the order of ``seeds``.
    seeds : ndarray of int64, shape (K,)
        Seed of each network (its initial parameters and its example order).
    etas : ndarray of float64, shape (K,)
        Learning rate each network was trained with (the peak rate, for a decaying schedule).
    diverged : ndarray of bool, shape (K,)
        Networks whose training diverged (non-finite cost or parameters). Such a network keeps the
        parameters it had before the failing epoch, its history ends with the last good epoch,
        and it was not trained further; the others were trained to the end.
    messages : list of str or None
        For each diverged network, what happened (the message :meth:`Network.fit` would raise).
    seconds : float
        Wall time of the whole training call.
    """

    def __init__(
        self,
        networks: Sequence[Network],
        seeds: Sequence[int],
        etas: Sequence[float],
        messages: Sequence[str | None],
        seconds: float,
    ) -> None:
        self.networks = list(networks)
        self.seeds = np.asarray(seeds, dtype=np.int64)
        self.etas = np.asarray(etas, dtype=np.float64)
        self.messages = list(messages)
        self.diverged = np.array([m is not None for m in self.messages], dtype=bool)
        self.seconds = float(seconds)

    # Sequence protocol -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.networks)

    @overload
    def __getitem__(self, index: int) -> Network: ...

    @overload
    def __getitem__(self, index: slice) -> list[Network]: ...

    def __getitem__(self, index: int | slice) -> Network | list[Network]:
        return self.networks[index]

    def __iter__(self) -> Iterator[Network]:
        return iter(self.networks)

    # Figures -----------------------------------------------------------------------------------

    @property
    def histories(self) -> list[History]:
        """Each network's :class:`~fastgd.History` (``pop.histories[k] is pop[k].history``)."""
        return [net.history for net in self.networks]

    def _matrix(self, name: str) -> np.ndarray:
        rows = [getattr(h, name, []) for h in self.histories]
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), np.nan)
        for k, r in enumerate(rows):
            out[k, : len(r)] = r
        return out

    @property
    def train_cost(self) -> np.ndarray:
        """Mean training cost per network and epoch, shape (K, epochs); NaN after a divergence."""
        return self._matrix("train_cost")

    @property
    def val_cost(self) -> np.ndarray:
        """Validation cost per network and epoch, shape (K, epochs); NaN without validation data."""
        return self._matrix("val_cost")

    @property
    def val_accuracy(self) -> np.ndarray:
        """Validation accuracy per network and epoch, shape (K, epochs); NaN without validation data."""
        return self._matrix("val_accuracy")

    def _final(self, name: str) -> np.ndarray:
        return np.array([getattr(h, name)[-1] if len(h) else math.nan for h in self.histories], dtype=np.float64)

    @property
    def final_train_cost(self) -> np.ndarray:
        """Each network's training cost in its last recorded epoch, shape (K,)."""
        return self._final("train_cost")

    @property
    def final_val_cost(self) -> np.ndarray:
        """Each network's validation cost after its last recorded epoch, shape (K,)."""
        return self._final("val_cost")

    @property
    def final_val_accuracy(self) -> np.ndarray:
        """Each network's validation accuracy after its last recorded epoch, shape (K,)."""
        return self._final("val_accuracy")

    def score(self, X: Any, y: Any) -> np.ndarray:
        """Accuracy of every network on ``(X, y)``, shape (K,)."""
        return np.array([net.score(X, y) for net in self.networks], dtype=np.float64)

    def cost(self, X: Any, y: Any) -> np.ndarray:
        """Mean cost of every network on ``(X, y)``, shape (K,)."""
        return np.array([net.cost(X, y) for net in self.networks], dtype=np.float64)

    def __repr__(self) -> str:
        shape = list(self.networks[0].sizes) if self.networks else []
        return (
            f"Population({len(self)} networks of {shape}, {int(self.diverged.sum())} diverged, "
            f"{self.seconds:.3g} s)"
        )

    def __str__(self) -> str:
        lines = [f"{'k':>4} {'seed':>8} {'eta':>8} {'epochs':>6} {'train cost':>11} {'val cost':>9} {'val acc':>8}"]
        cost, vcost, vacc = self.final_train_cost, self.final_val_cost, self.final_val_accuracy
        for k, h in enumerate(self.histories):
            mark = "  diverged" if self.diverged[k] else ""
            lines.append(
                f"{k:>4} {self.seeds[k]:>8} {self.etas[k]:>8.4g} {len(h):>6} {cost[k]:>11.5f} "
                f"{vcost[k]:>9.5f} {vacc[k]:>8.4f}{mark}"
            )
        return "\n".join(lines)


def _check_seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise TypeError(f"seeds must be a sequence of non-negative integers, got {type(seeds).__name__}")
    out = []
    for k, s in enumerate(seeds):
        out.append(check_seed(s, f"seeds[{k}]"))
    if not out:
        raise ValueError("seeds must hold at least one seed (one per network)")
    return out


def _check_etas(etas: Any, k: int, opt: Optimizer) -> list[float]:
    if etas is None:
        return [float(opt.eta)] * k
    if isinstance(etas, (int, float, np.integer, np.floating)) and not isinstance(etas, (bool, np.bool_)):
        return [check_rate("etas", etas)] * k
    if isinstance(etas, (str, bytes)) or not isinstance(etas, (Sequence, np.ndarray)):
        raise TypeError(f"etas must be None, a number or a sequence of {k} numbers, got {type(etas).__name__}")
    values = list(etas)
    if len(values) != k:
        raise ValueError(f"etas holds {len(values)} learning rates but seeds holds {k}: give one per network")
    return [check_rate(f"etas[{i}]", e) for i, e in enumerate(values)]


def train_many(
    sizes: Sequence[int],
    X: Any,
    y: Any,
    seeds: Sequence[int],
    etas: float | Sequence[float] | None = None,
    epochs: int = 30,
    batch_size: int = 10,
    optimizer: str | Optimizer = "default",
    validation_data: tuple[Any, Any] | None = None,
    n_threads: int | None = None,
    **network_options: Any,
) -> Population:
    """Train K networks of the same shape on the same data, each with its own seed and learning rate.

    Network ``k`` is bit for bit ``Network(sizes, seed=seeds[k], **network_options)`` after
    ``.fit(X, y, eta=etas[k], seed=seeds[k], epochs=epochs, batch_size=batch_size,
    optimizer=optimizer, validation_data=validation_data)``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, inputs first (as for :class:`~fastgd.Network`).
    X : array_like, shape (n, sizes[0])
        Training inputs, float32 or float64.
    y : array_like of int, shape (n,)
        Training labels in ``[0, sizes[-1])``.
    seeds : sequence of int
        One non-negative seed per network: its initial parameters and its example order.
    etas : float or sequence of float, optional
        Learning rate of every network (a number) or of each (one per seed); the optimizer's own
        when not given.
    epochs, batch_size, optimizer, validation_data
        As for :meth:`Network.fit`, the same for every network.
    n_threads : int, optional
        Worker threads the networks are spread over (the default: ``$FASTGD_NUM_THREADS``, else
        the number of CPUs the process may use, its affinity mask). The results do not depend on it.
    **network_options
        ``activation``, ``cost``, ``init``, ``dtype``, ``backend``: as for :class:`~fastgd.Network`.

    Returns
    -------
    Population
        The K trained networks, their histories and final figures.

    Notes
    -----
    Divergence: a network whose cost or parameters become non-finite in an epoch gets back the
    parameters it had before that epoch, is marked in ``Population.diverged`` (the reason in
    ``Population.messages``) and is not trained further; the other networks are unaffected.
    Only when ``X`` itself holds NaN or infinity does the call raise (:class:`~fastgd.DataError`).

    Each history's ``seconds`` is the wall time of the whole population's epoch (the networks
    train together). Ctrl-C stops every network after its mini-batch in progress and raises
    ``KeyboardInterrupt``; the networks are then left untrained.
    """
    for name in network_options:
        if name == "seed":
            raise TypeError("train_many takes the networks' seeds as seeds=[...], not seed=")
        if name not in _NETWORK_OPTIONS:
            raise TypeError(f"train_many got an unexpected keyword argument {name!r}")
    seed_list = _check_seeds(seeds)
    opt = resolve_optimizer(optimizer)
    eta_list = _check_etas(etas, len(seed_list), opt)
    if n_threads is not None:
        n_threads = check_positive_int("n_threads", n_threads)
    epochs = check_positive_int("epochs", epochs, allow_zero=True)
    batch_size = check_positive_int("batch_size", batch_size)

    t0 = time.perf_counter()
    networks = [Network(sizes, seed=s, **network_options) for s in seed_list]
    first = networks[0]
    # X is searched for NaN and infinity only if a network diverges (as in Network.fit).
    Xc = as_features(X, first.sizes[0], first.dtype, "X", check_finite=False)
    yc = first._y(y, Xc.shape[0])
    n = Xc.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) is larger than the number of training rows ({n})")
    Xv = yv = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X, y)")
        Xv = first._X(validation_data[0], "validation X")
        yv = first._y(validation_data[1], Xv.shape[0], "validation y")
    messages = _train(networks, seed_list, [replace(opt, eta=e) for e in eta_list], Xc, yc, epochs, batch_size,
                      Xv, yv, n_threads or 0)  # fmt: skip
    return Population(networks, seed_list, eta_list, messages, time.perf_counter() - t0)


def _train(
    networks: list[Network],
    seeds: list[int],
    opts: list[Optimizer],
    X: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    Xv: np.ndarray | None,
    yv: np.ndarray | None,
    n_threads: int,
) -> list[str | None]:
    """Train the networks in place, one compiled call per epoch for all of them; the divergence messages.

    Everything :meth:`Network.fit` does in Python is done here the same way, per network: the
    epoch's learning rate from the network's optimizer, its example order from its own generator
    (one ``permutation`` per epoch), the check for non-finite results and the history rows.
    """
    first = networks[0]
    backend = first._backend
    K, n = len(networks), X.shape[0]
    thetas = np.stack([net.theta for net in networks])  # (K, n_params), C-contiguous
    momentum, l2 = opts[0].momentum, opts[0].l2
    velocities = np.zeros_like(thetas) if momentum else None
    rngs = [np.random.default_rng(s) for s in seeds]
    active = np.ones(K, dtype=np.uint8)
    messages: list[str | None] = [None] * K
    # Each epoch's example orders are drawn while the previous epoch trains (the compiled call
    # releases the GIL): 100 permutations of 60,000 rows take a good part of a second.
    orders = np.empty((K, n), dtype=np.int64)
    spare = np.empty((K, n), dtype=np.int64) if epochs > 1 else orders
    if epochs:
        _draw_orders(rngs, np.arange(K), n, orders)
    drawer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fastgd-orders") if epochs > 1 else None
    try:
        for e in range(epochs):
            live = np.flatnonzero(active)
            if live.size == 0:
                break
            etas = np.array([opt.eta_at(e, epochs) for opt in opts], dtype=np.float64)
            before = thetas[live]
            # The next epoch's orders, for the networks still training (one that diverges now
            # has drawn one order too many from its own generator, which is never used again).
            upcoming = drawer.submit(_draw_orders, rngs, live, n, spare) if drawer and e + 1 < epochs else None
            t0 = time.perf_counter()
            try:
                costs, correct, val_costs, val_correct = backend.train_epoch_many(
                    thetas, first._sizes_arr, first._act_code, first._cost_code, X, y, orders, batch_size, etas,
                    momentum, velocities, l2, active, Xv, yv, n_threads,
                )  # fmt: skip
            finally:
                seconds = time.perf_counter() - t0
                if upcoming is not None:
                    upcoming.result()
            orders, spare = spare, orders
            finite = np.isfinite(costs[live]) & np.isfinite(thetas[live]).all(axis=1)
            for j, k in enumerate(live):
                net = networks[k]
                epoch = len(net.history) + 1
                if not finite[j]:
                    thetas[k] = before[j]
                    active[k] = 0
                    messages[k] = (
                        f"training diverged in epoch {epoch}: the cost became {costs[k]} with eta={etas[k]:g}; "
                        "the parameters are left as they were before that epoch"
                    )
                    continue
                net.history.append(
                    epoch=epoch, train_cost=float(costs[k]), train_accuracy=int(correct[k]) / n,
                    val_cost=float(val_costs[k]) if Xv is not None else math.nan,
                    val_accuracy=int(val_correct[k]) / Xv.shape[0] if Xv is not None else math.nan,
                    eta=float(etas[k]), seconds=seconds,
                )  # fmt: skip
            if not finite.all():
                check_all_finite(X, "X")
    finally:
        if drawer is not None:
            drawer.shutdown()
    for net, theta in zip(networks, thetas):
        net.theta[:] = theta
    return messages


def _draw_orders(rngs: list[np.random.Generator], which: np.ndarray, n: int, out: np.ndarray) -> None:
    """``out[k] = rngs[k].permutation(n)`` for each ``k`` in ``which``, as :meth:`Network.fit` draws them."""
    for k in which:
        out[k] = rngs[k].permutation(n)
