"""Optimizers: how :meth:`fastgd.Network.fit` turns gradients into steps.

All of them are mini-batch gradient descent on the backprop gradient, differing only in the
learning rate's schedule over the epochs, momentum and L2 weight decay:

* ``"sgd"``: the book's algorithm, nothing added. ``theta -= eta * g`` with constant ``eta``
  (3.0 unless given).
* ``"default"``: fastgd's tuned recipe (README, "Defaults"), chosen on a validation split:
  the same steps with ``eta`` falling linearly from 0.1 towards 0 over the epochs and L2 weight
  decay 1e-3.

With momentum ``mu`` a step is ``v = mu * v - eta * (g + l2 * W); theta += v`` (``l2`` on
weights only, never biases); the velocity starts at zero in each ``fit`` call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._validate import check_rate

__all__ = ["Optimizer", "SGD", "DEFAULT", "SCHEDULES", "resolve_optimizer"]

SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Optimizer:
    """Settings of mini-batch gradient descent.

    Parameters
    ----------
    eta : float
        Learning rate (the peak rate, for a schedule).
    momentum : float
        Momentum coefficient in ``[0, 1)``; 0 for plain gradient descent.
    l2 : float
        L2 weight decay: ``l2 * W`` is added to each step's weight gradient.
    schedule : {"constant", "linear", "cosine"}
        How the rate of epoch ``e`` (0-based) of ``E`` falls from ``eta``: ``"linear"``:
        ``eta * (final + (1 - final) * (1 - e / E))``; ``"cosine"``:
        ``eta * (final + (1 - final) * (1 + cos(pi * e / E)) / 2)``.
    final : float
        For the decaying schedules: the fraction of ``eta`` they decay towards.
    name : str
        A label for reports.
    """

    eta: float
    momentum: float = 0.0
    l2: float = 0.0
    schedule: str = "constant"
    final: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        check_rate("eta", self.eta)
        check_rate("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_rate("l2", self.l2)
        check_rate("final", self.final, 0.0, 1.0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {self.schedule!r}")

    def eta_at(self, epoch: int, epochs: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based) of ``epochs``."""
        if self.schedule == "constant" or epochs <= 0:
            return float(self.eta)
        if self.schedule == "linear":
            shape = 1.0 - epoch / epochs
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        return float(self.eta * (self.final + (1.0 - self.final) * shape))

    def start(self, theta: np.ndarray) -> np.ndarray | None:
        """The optimizer's state for a new ``fit`` call: the velocity, or None without momentum."""
        return np.zeros_like(theta) if self.momentum else None


SGD = Optimizer(eta=3.0, name="sgd")
# Chosen on a validation split (the last 10,000 training images), never the test set: README,
# "Defaults". Plain SGD, eta falling linearly from 0.1 towards 0 over the epochs, L2 1e-3.
DEFAULT = Optimizer(eta=0.1, l2=1e-3, schedule="linear", name="default")

_NAMED = {"sgd": SGD, "default": DEFAULT}


def resolve_optimizer(optimizer: str | Optimizer, eta: Any = None) -> Optimizer:
    """The :class:`Optimizer` for a name or instance, with ``eta`` overriding its rate when given."""
    if isinstance(optimizer, Optimizer):
        opt = optimizer
    elif isinstance(optimizer, str) and optimizer.lower() in _NAMED:
        opt = _NAMED[optimizer.lower()]
    else:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, _NAMED))} or an Optimizer; got {optimizer!r}")
    if eta is not None:
        opt = replace(opt, eta=check_rate("eta", eta))
    return opt
