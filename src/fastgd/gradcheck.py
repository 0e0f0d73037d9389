"""Check backpropagation against finite differences, and show what each costs.

Backpropagation gets the whole gradient from one forward and one backward pass. The finite-
difference estimate needs two cost evaluations per parameter (central differences,
``(C(theta + h e_i) - C(theta - h e_i)) / 2h``): for the 13,002 parameters of 784-16-16-10 that is
26,004 forward passes, which is why nobody trains with it, and why it is a good check.

Two estimates are offered. ``"central"`` is the textbook one above; its error is about
``h^2 C''' / 6`` from truncation plus ``eps |C| / h`` from rounding, so in float64 it agrees with
backprop to about 1e-6 relative at best. ``"five-point"`` combines four evaluations,
``(-C(+2h) + 8 C(+h) - 8 C(-h) + C(-2h)) / 12h``, whose truncation error is ``O(h^4)``; with
``h = 1e-3`` it checks a float64 gradient to about 1e-9. Either is valid only where the cost is
smooth: a ReLU unit whose input is within a few ``h`` of zero has a kink there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validate import check_positive_int, check_rate
from .network import Network

__all__ = ["gradcheck", "GradcheckReport", "LayerError"]


@dataclass
class LayerError:
    """Agreement of backprop and finite differences on one layer's weights or biases."""

    layer: int
    kind: str  # "weights" or "biases"
    count: int  # parameters checked
    max_rel_error: float
    max_abs_error: float
    worst_index: tuple[int, ...]  # (j, i) into the (n_out, n_in) weights, or (j,) into the biases


@dataclass
class GradcheckReport:
    """What :func:`gradcheck` measured.

    Attributes
    ----------
    layers : list of LayerError
        Per layer, weights then biases.
    max_rel_error : float
        Worst relative error over every checked parameter, where the relative error of one
        component is ``|g - f| / max(|g| + |f|, floor)`` for backprop's ``g`` and the finite-
        difference estimate ``f``.
    backprop_seconds, fd_seconds : float
        Wall time of the backprop gradient (the best of 5 calls) and of the finite-difference
        estimate.
    backprop_evaluations, fd_evaluations : int
        Passes over the rows each needed: 1 (a forward and a backward pass) for backprop, 2 (or 4)
        cost evaluations per checked parameter for finite differences.
    """

    layers: list[LayerError] = field(default_factory=list)
    max_rel_error: float = 0.0
    backprop_seconds: float = 0.0
    fd_seconds: float = 0.0
    backprop_evaluations: int = 1
    fd_evaluations: int = 0
    n_params: int = 0
    n_checked: int = 0
    n_rows: int = 0
    method: str = "central"
    h: float = 0.0
    floor: float = 0.0
    dtype: str = "float64"
    backend: str = ""

    def passed(self, tol: float = 1e-7) -> bool:
        """Whether every checked component agrees to ``tol`` relative error."""
        return self.max_rel_error <= tol

    def __str__(self) -> str:
        lines = [
            f"gradient check: {self.n_checked} of {self.n_params} parameters, {self.n_rows} rows, "
            f"{self.dtype}, backend {self.backend}, {self.method} differences with h = {self.h:g}",
            f"{'layer':>5} {'kind':>8} {'checked':>8} {'max rel error':>14} {'max abs error':>14}",
        ]
        for e in self.layers:
            lines.append(
                f"{e.layer:>5} {e.kind:>8} {e.count:>8} {e.max_rel_error:>14.3e} {e.max_abs_error:>14.3e}"
            )
        ratio = self.fd_seconds / self.backprop_seconds if self.backprop_seconds > 0 else float("inf")
        lines += [
            f"worst relative error: {self.max_rel_error:.3e}",
            f"backprop:           {self.backprop_evaluations:>8} pass  {self.backprop_seconds * 1e3:>10.3f} ms",
            f"finite differences: {self.fd_evaluations:>8} cost evaluations  {self.fd_seconds * 1e3:>10.3f} ms"
            f"  ({ratio:,.0f}x slower)",
        ]
        return "\n".join(lines)


# Finite-difference stencils: default h, (weight, offset in steps) pairs, denominator in steps.
METHODS = {
    "central": (1e-5, ((1.0, 1.0), (-1.0, -1.0)), 2.0),
    "five-point": (1e-3, ((-1.0, 2.0), (8.0, 1.0), (-8.0, -1.0), (1.0, -2.0)), 12.0),
}


def gradcheck(
    net: Network,
    X: Any,
    y: Any,
    method: str = "central",
    h: float | None = None,
    floor: float = 1e-5,
    max_params: int | None = None,
    seed: int = 0,
    dtype: str = "float64",
) -> GradcheckReport:
    """Compare ``net``'s backprop gradient with central finite differences.

    The check runs on a copy of the network in ``dtype`` (float64 by default: in float32, finite
    differences are too coarse to check anything to better than about 1e-3), with the same
    backend and parameters.

    Parameters
    ----------
    net : Network
        The network to check; it is not modified.
    X : array_like, shape (n, sizes[0])
        Rows to evaluate the cost on (a mini-batch is plenty).
    y : array_like of int, shape (n,)
        Their labels.
    method : {"central", "five-point"}
        Finite-difference estimate: 2 cost evaluations per parameter, or 4 for a far more
        accurate one (see the module's notes).
    h : float, optional
        Step, relative to ``max(1, |theta_i|)``; 1e-5 for "central", 1e-3 for "five-point".
    floor : float
        Smallest denominator of the relative error, so that components whose gradient is
        (almost) zero are judged by their absolute error instead (divided by ``floor``).
    max_params : int, optional
        Check only this many parameters, drawn at random (with ``seed``) from every layer in
        proportion; all of them by default.
    seed : int
        Seed of that draw.
    dtype : {"float64", "float32"}
        Precision of the check.

    Returns
    -------
    GradcheckReport
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastgd.Network, got {type(net).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    default_h, stencil, denominator = METHODS[method]
    h = default_h if h is None else check_rate("h", h)
    floor = check_rate("floor", floor)
    if h == 0 or floor == 0:
        raise ValueError("h and floor must be positive")
    work = Network(
        net.sizes, activation=net.activation, cost=net.cost_name, init=net.init, seed=net.seed,
        dtype=dtype, backend=net.backend,
    )  # fmt: skip
    work.theta[:] = net.theta
    Xc = work._X(X)
    yc = work._y(y, Xc.shape[0])
    backend = work._backend
    args = (work._sizes_arr, work._act_code, work._cost_code)

    n = work.n_params
    if max_params is None or max_params >= n:
        idx = np.arange(n)
    else:
        k = check_positive_int("max_params", max_params)
        idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))

    g = np.empty_like(work.theta)
    backprop_seconds = float("inf")
    for _ in range(5):  # the best of a few calls: the first one also pays for warming caches
        t0 = time.perf_counter()
        backend.grad(work.theta, *args, Xc, yc, g)
        backprop_seconds = min(backprop_seconds, time.perf_counter() - t0)

    theta = work.theta
    fd = np.empty(idx.shape[0], dtype=np.float64)
    t0 = time.perf_counter()
    for k, i in enumerate(idx):
        old = theta[i]
        step = h * max(1.0, abs(float(old)))
        total = 0.0
        for weight, offset in stencil:
            theta[i] = old + offset * step
            total += weight * backend.cost(theta, *args, Xc, yc)
        theta[i] = old
        fd[k] = total / (denominator * step)
    fd_seconds = time.perf_counter() - t0

    gb = g[idx].astype(np.float64)
    abs_err = np.abs(gb - fd)
    rel_err = abs_err / np.maximum(np.abs(gb) + np.abs(fd), floor)

    report = GradcheckReport(
        max_rel_error=float(rel_err.max()) if rel_err.size else 0.0,
        backprop_seconds=backprop_seconds,
        fd_seconds=fd_seconds,
        fd_evaluations=len(stencil) * int(idx.shape[0]),
        n_params=n,
        n_checked=int(idx.shape[0]),
        n_rows=int(Xc.shape[0]),
        method=method,
        h=h,
        floor=floor,
        dtype=work.dtype.name,
        backend=work.backend,
    )
    for layer, ((ws, bs), _n_in, n_out) in enumerate(zip(work._layer_slices(), net.sizes[:-1], net.sizes[1:])):
        for kind, sl in (("weights", ws), ("biases", bs)):
            sel = (idx >= sl.start) & (idx < sl.stop)
            if not sel.any():
                continue
            worst = int(np.argmax(np.where(sel, rel_err, -1.0)))
            local = int(idx[worst]) - sl.start
            # theta stores W as (n_in, n_out); report the book's (n_out, n_in) index
            where = (local % n_out, local // n_out) if kind == "weights" else (local,)
            report.layers.append(
                LayerError(
                    layer=layer,
                    kind=kind,
                    count=int(sel.sum()),
                    max_rel_error=float(rel_err[sel].max()),
                    max_abs_error=float(abs_err[sel].max()),
                    worst_index=where,
                )
            )
    return report
