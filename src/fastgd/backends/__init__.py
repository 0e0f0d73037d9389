"""Compute backends: ``cpp`` (compiled C++ core), ``numba`` (JIT fallback) and ``numpy`` (reference).

Every backend is a module exposing the same five flat functions. All arrays crossing this
boundary are C-contiguous NumPy arrays; ``theta``, ``X`` and ``velocity`` share one float dtype
(float32 or float64); ``sizes``, ``y`` and ``order`` are int64. Callers (``fastgd.network``)
validate arguments; backends assume valid input, except the C++ bindings, which re-check
shapes, dtypes and contiguity because they are reachable from Python directly.

Parameter layout (``theta``, one flat vector): for each layer ``l = 0 .. L-2`` in order, the
weight matrix of shape ``(sizes[l], sizes[l+1])`` stored row-major (that is, the transpose of the
book's ``(n_out, n_in)`` matrix, so that a batch of rows is ``Z = X @ W + b``), followed by the bias
vector of length ``sizes[l+1]``.

Codes: ``activation`` of the hidden layers is one of ``ACTIVATIONS`` (index = code); ``cost``
is one of ``COSTS`` and fixes the output layer: sigmoid outputs for ``quadratic`` and
``cross-entropy``, softmax outputs for ``log-likelihood``.

Functions
---------
forward(theta, sizes, activation, cost, X) -> A
    Output activations, shape ``(n, sizes[-1])``, theta's dtype.
predict(theta, sizes, activation, cost, X) -> labels
    ``argmax`` of the output activations (first maximum on ties), int64 ``(n,)``.
cost(theta, sizes, activation, cost, X, y) -> float
    Mean cost over the ``n`` rows (no regularisation term), as a Python float.
grad(theta, sizes, activation, cost, X, y, out) -> float
    Overwrites ``out`` (theta's shape and dtype) with the gradient of the mean cost over the
    rows, computed by backpropagation; returns the mean cost.
train_epoch(theta, sizes, activation, cost, X, y, order, batch_size, eta, momentum, velocity, l2) -> (float, int)
    One epoch of mini-batch gradient descent, in place. Mini-batches are consecutive slices
    of ``order`` (row indices into X), each ``batch_size`` long except possibly the last. For each
    mini-batch of ``m`` rows, ``g`` is the gradient of the mean cost over those rows computed at
    the parameters before the step, plus ``l2 * W`` on weights (never biases). The step is
    ``theta -= eta * g`` when ``momentum == 0`` (``velocity`` is then ignored), otherwise
    ``velocity = momentum * velocity - eta * g; theta += velocity``. Returns the mean over all
    rows of ``order`` of each row's cost, as computed in its mini-batch's own forward pass
    (before that mini-batch's step), and the number of those rows whose largest output (the
    first on ties) is their label.
train_epoch_many(thetas, sizes, activation, cost, X, y, orders, batch_size, etas, momentum, velocities, l2,
                 active, Xv, yv, n_threads) -> (costs, correct, val_costs, val_correct)
    One epoch of each of K networks of one shape on the same data (population training), in
    place: for every ``k`` with ``active[k]`` true (uint8 or bool ``(K,)``), exactly
    ``train_epoch(thetas[k], ..., orders[k], batch_size, etas[k], momentum, velocities[k], l2)``;
    ``thetas`` and ``velocities`` are ``(K, n_params)`` (``velocities`` None when ``momentum ==
    0``), ``orders`` int64 ``(K, n_order)``, ``etas`` float64 ``(K,)``. When ``Xv`` and ``yv``
    are given (else both None), each trained network is then evaluated on them. Returns four
    ``(K,)`` arrays: each network's mean cost and correct count as ``train_epoch`` returns them,
    ``cost(thetas[k], ..., Xv, yv)`` and the number of rows of ``Xv`` that ``predict`` gets
    right (NaN and 0 for inactive networks and without validation data). The networks may be
    spread over up to ``n_threads`` threads (0: the backend's default); results never depend on
    it.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

from ..errors import BackendUnavailableError

ACTIVATIONS = ("sigmoid", "tanh", "relu")
COSTS = ("quadratic", "cross-entropy", "log-likelihood")
NAMES = ("cpp", "numba", "numpy")

_MODULES = {"cpp": "._cpp", "numba": "._numba", "numpy": "._numpy"}
_loaded: dict[str, ModuleType] = {}
_errors: dict[str, str] = {}
_fallback_noticed = False


def load(name: str) -> ModuleType:
    """Import and return backend ``name``, raising :class:`BackendUnavailableError` if it can't be used."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(NAMES)} or 'auto'")
    if name in _loaded:
        return _loaded[name]
    try:
        module = importlib.import_module(_MODULES[name], __name__)
    except ImportError as exc:
        _errors[name] = f"{type(exc).__name__}: {exc}"
        hint = ""
        if name == "cpp":
            hint = (
                " (the compiled extension fastgd._core is missing or failed to load: was fastgd "
                "installed with `pip install .` from a checkout with a working C++ compiler?)"
            )
        raise BackendUnavailableError(f"fastgd backend {name!r} is not available: {exc}{hint}") from exc
    _loaded[name] = module
    return module


def available(name: str) -> tuple[bool, str]:
    """Whether backend ``name`` can be used, and the reason when it can't (imports it to find out)."""
    try:
        load(name)
    except BackendUnavailableError:
        return False, _errors.get(name, "unknown error")
    return True, ""


def resolve(name: str | None = "auto") -> ModuleType:
    """The backend module for ``name``: a backend name, or ``"auto"``/``None`` for the default.

    The default is ``$FASTGD_BACKEND`` when set (which must then be usable: no silent fallback),
    otherwise the first usable of cpp, numba, numpy.
    """
    if name is None or name == "auto":
        forced = os.environ.get("FASTGD_BACKEND", "").strip().lower()
        if forced and forced != "auto":
            if forced not in _MODULES:
                raise BackendUnavailableError(
                    f"FASTGD_BACKEND={forced!r} is not a fastgd backend: expected one of {', '.join(NAMES)}"
                )
            return load(forced)
        for candidate in NAMES:
            try:
                module = load(candidate)
            except BackendUnavailableError:
                continue
            if candidate != NAMES[0]:
                _notice_fallback(candidate)
            return module
        raise BackendUnavailableError("no fastgd backend could be loaded")  # numpy always loads
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    return load(name.lower())


def _notice_fallback(name: str) -> None:
    """Warn, once per process, that the compiled backend is missing and ``name`` runs instead."""
    global _fallback_noticed
    if _fallback_noticed:
        return
    _fallback_noticed = True
    warnings.warn(
        f"fastgd: the compiled extension fastgd._core is not available ({_errors.get('cpp', 'unknown error')}), "
        f"so fastgd runs on its {name!r} backend, about half as fast. To get the 'cpp' backend, reinstall fastgd "
        "where a C++17 compiler works (pip install --no-cache-dir --force-reinstall fastgd); to choose "
        f"{name!r} without this message, set FASTGD_BACKEND={name}.",
        RuntimeWarning,
        stacklevel=4,  # the first call comes from `import fastgd` (fastgd/__init__.py)
    )


def default_name() -> str:
    """Name of the backend ``"auto"`` resolves to."""
    return str(resolve("auto").NAME)
