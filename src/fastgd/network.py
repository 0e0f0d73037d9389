"""The :class:`Network`: a fully connected network held as one flat parameter vector.

The parameters live in one C-contiguous vector, ``net.theta``; ``net.weights`` and ``net.biases``
are views into it with the book's shapes, ``(n_out, n_in)`` and ``(n_out,)``. Every computation
goes through a backend (see :mod:`fastgd.backends`): the compiled ``cpp`` core, ``numba`` or
the ``numpy`` reference, which all take the same arguments and agree to rounding.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np

from . import backends
from ._validate import as_features, as_labels, check_all_finite, check_positive_int, check_seed
from .errors import DataError, DivergenceError
from .optim import Optimizer, resolve_optimizer

__all__ = ["Network", "History", "TrainingState", "DEFAULT_SIZES", "INITS"]

DEFAULT_SIZES = (784, 16, 16, 10)
INITS = ("normal", "scaled")

# fastgd's defaults for a new Network, chosen by experiment on a validation split (README,
# "Defaults"). The book's choices are activation="sigmoid", cost="quadratic", init="normal".
DEFAULT_ACTIVATION = "tanh"
DEFAULT_COST = "log-likelihood"
DEFAULT_INIT = "scaled"


@dataclass
class History:
    """What :meth:`Network.fit` recorded, one entry per epoch.

    Attributes
    ----------
    epoch : list of int
        Epoch numbers, counted from 1 over the network's whole life (a second ``fit`` goes on
        counting).
    train_cost : list of float
        Mean cost over the epoch's training rows, each row's cost taken in its own mini-batch's
        forward pass (before that mini-batch's step), so it costs no extra pass over the data.
    train_accuracy : list of float
        Fraction of the epoch's training rows classified correctly, counted in the same forward
        passes (the parameters move during the epoch, so this trails a fresh evaluation a little).
    val_cost, val_accuracy : list of float
        Cost and accuracy on ``validation_data`` after the epoch (NaN when none was given).
    eta : list of float
        Learning rate used in the epoch.
    seconds : list of float
        Wall time of the epoch's training, excluding validation.
    """

    epoch: list[int] = field(default_factory=list)
    train_cost: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_cost: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    eta: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epoch)

    def append(self, **row: float) -> None:
        for name, value in row.items():
            getattr(self, name).append(value)

    def extend(self, other: History) -> None:
        for name in self.as_dict():
            getattr(self, name).extend(getattr(other, name))

    def as_dict(self) -> dict[str, list[Any]]:
        """The record as plain lists (JSON-ready)."""
        return {
            "epoch": list(self.epoch),
            "train_cost": list(self.train_cost),
            "train_accuracy": list(self.train_accuracy),
            "val_cost": list(self.val_cost),
            "val_accuracy": list(self.val_accuracy),
            "eta": list(self.eta),
            "seconds": list(self.seconds),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[Any]]) -> History:
        h = cls()
        for name in h.as_dict():
            getattr(h, name).extend(d.get(name, ()))
        return h

    def __str__(self) -> str:
        lines = [f"{'epoch':>5} {'train cost':>11} {'train acc':>9} {'val cost':>9} {'val acc':>8} {'eta':>8} "
                 f"{'seconds':>8}"]  # fmt: skip
        for k in range(len(self)):
            lines.append(
                f"{self.epoch[k]:>5} {self.train_cost[k]:>11.5f} {self.train_accuracy[k]:>9.4f} "
                f"{self.val_cost[k]:>9.5f} {self.val_accuracy[k]:>8.4f} {self.eta[k]:>8.4g} {self.seconds[k]:>8.3f}"
            )
        return "\n".join(lines)


@dataclass
class TrainingState:
    """Where a :meth:`Network.fit` call stands between two epochs: enough to continue it bit-exactly.

    Attributes
    ----------
    epochs : int
        Epochs the call was asked for.
    done : int
        Epochs of the call finished (``done == epochs`` when it completed).
    batch_size : int
        Rows per mini-batch.
    n_rows : int
        Number of training rows.
    seed : int
        Seed of the shuffling.
    optimizer : Optimizer
        The optimizer, with its learning rate.
    rng_state : dict
        ``bit_generator.state`` of the shuffling generator (PCG64) at the start of epoch ``done``.
    velocity : ndarray or None
        The momentum buffer at that point (None without momentum).
    data : dict
        A description of the training data, as given to :meth:`Network.save` (may be empty).
    """

    epochs: int
    done: int
    batch_size: int
    n_rows: int
    seed: int
    optimizer: Optimizer
    rng_state: dict[str, Any]
    velocity: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether every requested epoch has run."""
        return self.done >= self.epochs

    def copy(self) -> TrainingState:
        """An independent copy."""
        return replace(self, rng_state=copy.deepcopy(self.rng_state), data=dict(self.data),
                       velocity=None if self.velocity is None else self.velocity.copy())  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The state as JSON-ready values (without the velocity array)."""
        return {
            "epochs": self.epochs,
            "done": self.done,
            "batch_size": self.batch_size,
            "n_rows": self.n_rows,
            "seed": self.seed,
            "optimizer": {k: getattr(self.optimizer, k)
                          for k in ("eta", "momentum", "l2", "schedule", "final", "name")},  # fmt: skip
            "rng": copy.deepcopy(self.rng_state),
            "data": dict(self.data),
        }


def _param_count(sizes: Sequence[int]) -> int:
    return sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))


class Network:
    """A fully connected feed-forward network trained by mini-batch gradient descent.

    Parameters
    ----------
    sizes : sequence of int, default ``(784, 16, 16, 10)``
        Layer widths, inputs first; at least two.
    activation : {"sigmoid", "tanh", "relu"}
        Activation of the hidden layers.
    cost : {"quadratic", "cross-entropy", "log-likelihood"}
        Cost function; it fixes the output layer: sigmoid outputs for ``"quadratic"``
        (``C = 1/(2n) sum ||a - y||^2``, the book's and the video's) and ``"cross-entropy"``,
        softmax outputs for ``"log-likelihood"``.
    init : {"normal", "scaled"}
        ``"normal"``: every weight and bias drawn from N(0, 1) (the book's first choice).
        ``"scaled"``: weights from N(0, 1/fan_in), biases from N(0, 1).
    seed : int
        Seed of the initialisation (NumPy ``default_rng``); the same seed gives the same
        parameters on every backend.
    dtype : {"float32", "float64"}
        Floating-point type of the parameters and of all computation.
    backend : {"auto", "cpp", "numba", "numpy"}
        Where the computation runs. ``"auto"`` honours ``$FASTGD_BACKEND``, else takes the first
        available of cpp, numba, numpy.

    Notes
    -----
    ``Network([784, 16, 16, 10], activation="sigmoid", cost="quadratic", init="normal")`` with
    ``fit(..., optimizer="sgd")`` is exactly the book's network and algorithm. The defaults are
    fastgd's own, chosen by experiment (see the README).

    After :meth:`fit`, ``net.training_state`` (a :class:`TrainingState`) records where the call
    stands; :meth:`save` stores it and :meth:`resume_fit` continues it.

    A network must not be trained from two threads at once: :meth:`fit` raises
    ``RuntimeError`` if it is already running in another thread. Different networks train in
    parallel threads freely (the compiled kernels release the GIL).
    """

    def __init__(
        self,
        sizes: Sequence[int] = DEFAULT_SIZES,
        activation: str = DEFAULT_ACTIVATION,
        cost: str = DEFAULT_COST,
        init: str = DEFAULT_INIT,
        seed: int = 0,
        dtype: str | np.dtype[Any] | type = "float32",
        backend: str = "auto",
    ) -> None:
        self.sizes = _check_sizes(sizes)
        self.activation = _check_choice("activation", activation, backends.ACTIVATIONS)
        self.cost_name = _check_choice("cost", cost, backends.COSTS)
        self.init = _check_choice("init", init, INITS)
        self.seed = check_seed(seed)
        self.dtype = _check_dtype(dtype)
        self._backend_request = backend
        self._backend: ModuleType = backends.resolve(backend)
        self._sizes_arr = np.asarray(self.sizes, dtype=np.int64)
        self._act_code = backends.ACTIVATIONS.index(self.activation)
        self._cost_code = backends.COSTS.index(self.cost_name)
        self.theta = self._initial_parameters()
        self.history = History()
        self.training_state: TrainingState | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------
    # Parameters

    def _initial_parameters(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        parts = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            scale = 1.0 if self.init == "normal" else 1.0 / math.sqrt(n_in)
            W = rng.standard_normal((n_out, n_in)) * scale  # the book's (n_out, n_in) matrix
            b = rng.standard_normal(n_out)
            parts += [W.T.ravel(), b]
        return np.ascontiguousarray(np.concatenate(parts), dtype=self.dtype)

    @property
    def n_params(self) -> int:
        """Number of parameters (weights and biases)."""
        return int(self.theta.shape[0])

    def _layer_slices(self) -> list[tuple[slice, slice]]:
        out = []
        offset = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            w = slice(offset, offset + n_in * n_out)
            offset += n_in * n_out
            b = slice(offset, offset + n_out)
            offset += n_out
            out.append((w, b))
        return out

    def _split(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Views of a flat parameter-shaped vector as ((n_out, n_in) weights, (n_out,) biases)."""
        weights, biases = [], []
        for (w, b), n_in, n_out in zip(self._layer_slices(), self.sizes[:-1], self.sizes[1:]):
            weights.append(flat[w].reshape(n_in, n_out).T)
            biases.append(flat[b])
        return weights, biases

    @property
    def weights(self) -> list[np.ndarray]:
        """Weight matrices, shape ``(n_out, n_in)`` each: views into :attr:`theta` (writable)."""
        return self._split(self.theta)[0]

    @property
    def biases(self) -> list[np.ndarray]:
        """Bias vectors, shape ``(n_out,)`` each: views into :attr:`theta` (writable)."""
        return self._split(self.theta)[1]

    @property
    def backend(self) -> str:
        """Name of the backend this network computes with."""
        return str(self._backend.NAME)

    def set_backend(self, backend: str) -> None:
        """Compute with another backend from now on (parameters are unchanged)."""
        self._backend = backends.resolve(backend)
        self._backend_request = backend

    def copy(self) -> Network:
        """An independent copy (parameters and history)."""
        new = Network.__new__(Network)
        new.__dict__.update(self.__dict__)
        new.theta = self.theta.copy()
        new.history = History.from_dict(self.history.as_dict())
        new.training_state = None if self.training_state is None else self.training_state.copy()
        new._lock = threading.Lock()
        return new

    def __repr__(self) -> str:
        return (
            f"Network({list(self.sizes)}, activation={self.activation!r}, cost={self.cost_name!r}, "
            f"init={self.init!r}, seed={self.seed}, dtype={self.dtype.name!r}, backend={self.backend!r})"
        )

    # ----------------------------------------------------------------------------------------
    # Evaluation

    def _X(self, X: Any, name: str = "X", check_finite: bool = True) -> np.ndarray:  # noqa: N802  # the book's X
        return as_features(X, self.sizes[0], self.dtype, name, check_finite=check_finite)

    def _y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        return as_labels(y, n, self.sizes[-1], name)

    def _X_for_kernel(self, X: Any, name: str = "X") -> np.ndarray:  # noqa: N802
        """``X`` converted for a forward pass: backends that find NaN and infinity on the way
        (``FINDS_NONFINITE_INPUT``: the C++ and Numba kernels) save the separate pass over it."""
        return self._X(X, name, check_finite=not getattr(self._backend, "FINDS_NONFINITE_INPUT", False))

    def _forward_kernel(self, fn: str, Xc: np.ndarray, X: Any, *labels: np.ndarray, name: str = "X") -> Any:
        """``backend.<fn>`` (forward, predict or cost) on ``Xc`` (from :meth:`_X_for_kernel` of ``X``).

        When the backend reports a non-finite weighted input (``DataError``), the entry of ``X``
        responsible is named; if ``X`` has none (``theta`` holds NaN or infinity, or a sum
        overflowed), the NumPy reference computes the result, as the other backends would.
        """
        args = (self.theta, self._sizes_arr, self._act_code, self._cost_code, Xc, *labels)
        try:
            return getattr(self._backend, fn)(*args)
        except DataError:
            if not getattr(self._backend, "FINDS_NONFINITE_INPUT", False):
                raise
            original = np.asarray(X)
            check_all_finite(Xc, name, original=original if original.shape == Xc.shape else None)
            return getattr(backends.resolve("numpy"), fn)(*args)

    def forward(self, X: Any) -> np.ndarray:
        """Output activations for the rows of ``X``.

        Parameters
        ----------
        X : array_like, shape (n, sizes[0])
            Inputs, float32 or float64 (converted to the network's dtype).

        Returns
        -------
        ndarray, shape (n, sizes[-1]), the network's dtype
        """
        return self._forward_kernel("forward", self._X_for_kernel(X), X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class of each row of ``X``: the index of the largest output, int64 ``(n,)``."""
        return self._forward_kernel("predict", self._X_for_kernel(X), X)

    def score(self, X: Any, y: Any) -> float:
        """Fraction of the rows of ``X`` whose predicted class is ``y``."""
        Xc = self._X_for_kernel(X)
        yc = self._y(y, Xc.shape[0])
        return float(np.mean(self._forward_kernel("predict", Xc, X) == yc))

    def cost(self, X: Any, y: Any) -> float:
        """Mean cost over the rows of ``X`` with integer labels ``y`` (no regularisation term)."""
        Xc = self._X_for_kernel(X)
        yc = self._y(y, Xc.shape[0])
        return float(self._forward_kernel("cost", Xc, X, yc))

    def gradient(self, X: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Gradient of the mean cost over the rows of ``X``, by backpropagation.

        Returns
        -------
        dW : list of ndarray, shapes ``(n_out, n_in)``
        db : list of ndarray, shapes ``(n_out,)``
        """
        g = self.flat_gradient(X, y)
        dW, db = self._split(g)
        return [np.ascontiguousarray(w) for w in dW], db

    def flat_gradient(self, X: Any, y: Any) -> np.ndarray:
        """The gradient as one vector laid out like :attr:`theta`."""
        Xc = self._X(X)
        yc = self._y(y, Xc.shape[0])
        g = np.empty_like(self.theta)
        self._backend.grad(self.theta, self._sizes_arr, self._act_code, self._cost_code, Xc, yc, g)
        return g

    # ----------------------------------------------------------------------------------------
    # Training

    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 30,
        batch_size: int = 10,
        eta: float | None = None,
        optimizer: str | Optimizer = "default",
        validation_data: tuple[Any, Any] | None = None,
        seed: int | None = None,
        callback: Callable[[Network, History], Any] | None = None,
        *,
        progress: Callable[[int, int], Any] | None = None,
    ) -> History:
        """Train by mini-batch stochastic gradient descent with backpropagation.

        Each epoch shuffles the rows with NumPy's ``default_rng(seed)`` (one generator for the
        whole call), cuts them into mini-batches of ``batch_size`` (the last may be shorter) and
        takes one step per mini-batch.

        Parameters
        ----------
        X : array_like, shape (n, sizes[0])
            Training inputs, float32 or float64.
        y : array_like of int, shape (n,)
            Training labels in ``[0, sizes[-1])``.
        epochs : int
            Passes over the data.
        batch_size : int
            Rows per mini-batch, ``1 <= batch_size <= n``.
        eta : float, optional
            Learning rate; the optimizer's own when not given.
        optimizer : str or Optimizer
            ``"sgd"``: the book's plain SGD, ``theta -= eta * gradient`` with a constant eta and
            nothing added (eta 3.0 unless given). ``"default"``: fastgd's tuned recipe (see
            :mod:`fastgd.optim`). Or an :class:`~fastgd.optim.Optimizer` instance.
        validation_data : (X, y), optional
            Evaluated after every epoch (cost and accuracy recorded in the history).
        seed : int, optional
            Seed of the shuffling; the network's ``seed`` when not given.
        callback : callable, optional
            Called as ``callback(net, history)`` after every epoch (e.g. progress, checkpoints);
            :attr:`training_state` then describes the end of that epoch.
        progress : callable, optional
            Called as ``progress(rows_done, rows)`` several times during each epoch (about every
            5,000 rows, on mini-batch boundaries), for progress bars. The parameters are the same
            with or without it.

        Returns
        -------
        History
            This call's epochs (also appended to ``net.history``).

        Raises
        ------
        DivergenceError
            If the cost or the parameters become NaN or infinite; the parameters are then left as
            they were before the failing epoch.
        KeyboardInterrupt
            Re-raised after putting the parameters back as they were at the start of the
            interrupted epoch: :attr:`training_state` then describes that point, and
            :meth:`resume_fit` (or a checkpoint saved now) continues bit-exactly.
        """
        opt = resolve_optimizer(optimizer, eta)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable as callback(net, history), got {callback!r}")
        if not self.theta.flags.writeable:
            raise DataError("theta is read-only, but training updates it in place (net.theta = net.theta.copy() "
                            "gives the network a writable copy)")  # fmt: skip
        # X is searched for NaN and infinity only if an epoch ends non-finite (a NaN input always
        # makes the cost or the parameters NaN): a pass over a large X costs as much as an epoch.
        Xc = as_features(X, self.sizes[0], self.dtype, "X", check_finite=False)
        yc = self._y(y, Xc.shape[0])
        n = Xc.shape[0]
        epochs = check_positive_int("epochs", epochs, allow_zero=True)
        batch_size = check_positive_int("batch_size", batch_size)
        if batch_size > n:
            raise ValueError(f"batch_size ({batch_size}) is larger than the number of training rows ({n})")
        if seed is None:
            seed = self.seed
        else:
            seed = check_seed(seed)
        rng = np.random.default_rng(seed)
        velocity = opt.start(self.theta)
        state = TrainingState(epochs=epochs, done=0, batch_size=batch_size, n_rows=n, seed=int(seed), optimizer=opt,
                              rng_state=dict(rng.bit_generator.state), velocity=velocity)  # fmt: skip
        return self._train(Xc, yc, state, validation_data, callback, progress)

    def resume_fit(
        self,
        X: Any,
        y: Any,
        validation_data: tuple[Any, Any] | None = None,
        callback: Callable[[Network, History], Any] | None = None,
        *,
        progress: Callable[[int, int], Any] | None = None,
    ) -> History:
        """Continue the ``fit`` call that :attr:`training_state` describes, to its last epoch.

        The call must have been interrupted (``KeyboardInterrupt``) or saved as a checkpoint and
        loaded with :func:`fastgd.load`. Given the same ``X`` and ``y``, the parameters reached
        are bit-for-bit those of the uninterrupted call (same backend and build).

        Parameters
        ----------
        X, y : array_like
            The training data of the interrupted call (its number of rows is checked).
        validation_data, callback, progress
            As in :meth:`fit`.

        Returns
        -------
        History
            The epochs run by this call (none if the state was already finished).
        """
        state = self.training_state
        if state is None:
            raise ValueError("this network has no training state to resume (train it with fit, or load a checkpoint)")
        Xc = as_features(X, self.sizes[0], self.dtype, "X", check_finite=False)
        yc = self._y(y, Xc.shape[0])
        if Xc.shape[0] != state.n_rows:
            raise DataError(f"X has {Xc.shape[0]} rows but the training being resumed used {state.n_rows}")
        return self._train(Xc, yc, state.copy(), validation_data, callback, progress)

    def _train(
        self,
        Xc: np.ndarray,
        yc: np.ndarray,
        state: TrainingState,
        validation_data: tuple[Any, Any] | None,
        callback: Callable[[Network, History], Any] | None,
        progress: Callable[[int, int], Any] | None,
    ) -> History:
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X, y)")
            Xv = self._X(validation_data[0], "validation X")
            yv = self._y(validation_data[1], Xv.shape[0], "validation y")
        n, batch_size, opt, epochs = state.n_rows, state.batch_size, state.optimizer, state.epochs
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = state.rng_state
        velocity = None if state.velocity is None else state.velocity.copy()
        if opt.momentum and (velocity is None or velocity.shape != self.theta.shape):
            raise ValueError("the training state's velocity does not match the network")
        # A progress hook makes the epoch run as slices of its row order, each a whole number of
        # mini-batches: the same steps in the same order, so the same parameters.
        chunk = n
        if progress is not None:
            # Each call into the backend costs a little (packing, checks): about 5,000 rows per
            # slice keeps that to a few percent of an epoch.
            n_batches = -(-n // batch_size)
            slices = min(100, max(1, -(-n // 5000)))
            chunk = batch_size * max(1, -(-n_batches // slices))
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this Network is already being trained in another thread")
        try:
            self.training_state = state
            history = History()
            first = len(self.history) + 1
            start = state.done
            for e in range(start, epochs):
                eta_e = opt.eta_at(e, epochs)
                before = self.theta.copy()
                try:
                    order = rng.permutation(n).astype(np.int64)
                    t0 = time.perf_counter()
                    if chunk >= n:
                        train_cost, n_correct = self._backend.train_epoch(
                            self.theta, self._sizes_arr, self._act_code, self._cost_code, Xc, yc, order,
                            batch_size, eta_e, opt.momentum, velocity, opt.l2,
                        )  # fmt: skip
                        if progress is not None:
                            progress(n, n)
                    else:
                        total = 0.0
                        n_correct = 0
                        for k in range(0, n, chunk):
                            part = order[k : k + chunk]
                            part_cost, part_correct = self._backend.train_epoch(
                                self.theta, self._sizes_arr, self._act_code, self._cost_code, Xc, yc, part,
                                batch_size, eta_e, opt.momentum, velocity, opt.l2,
                            )  # fmt: skip
                            total += part.shape[0] * part_cost
                            n_correct += part_correct
                            if progress is not None:
                                progress(min(k + chunk, n), n)
                        train_cost = total / n
                    seconds = time.perf_counter() - t0
                    if not (math.isfinite(train_cost) and np.isfinite(self.theta).all()):
                        self.theta[:] = before
                        check_all_finite(Xc, "X")
                        raise DivergenceError(
                            f"training diverged in epoch {first + e - start}: the cost became {train_cost} "
                            f"with eta={eta_e:g}; the parameters are left as they were before that epoch. "
                            "Try a smaller learning rate."
                        )
                    val_cost = val_acc = math.nan
                    if validation_data is not None:
                        val_cost = float(
                            self._backend.cost(self.theta, self._sizes_arr, self._act_code, self._cost_code, Xv, yv)
                        )
                        val_acc = float(np.mean(self._backend.predict(
                            self.theta, self._sizes_arr, self._act_code, self._cost_code, Xv) == yv))  # fmt: skip
                except KeyboardInterrupt:
                    self.theta[:] = before  # back to the start of the epoch, which training_state describes
                    raise
                row = dict(epoch=first + e - start, train_cost=float(train_cost),
                           train_accuracy=n_correct / n, val_cost=val_cost,
                           val_accuracy=val_acc, eta=float(eta_e), seconds=seconds)  # fmt: skip
                history.append(**row)
                self.history.append(**row)
                state = replace(state, done=e + 1, rng_state=rng.bit_generator.state,
                                velocity=None if velocity is None else velocity.copy())  # fmt: skip
                self.training_state = state
                if callback is not None:
                    callback(self, history)
            return history
        finally:
            self._lock.release()

    def save(self, path: str | os.PathLike[str], *, data: Mapping[str, Any] | None = None) -> None:
        """Save the network to a ``.npz`` model file, atomically; read it back with :func:`fastgd.load`.

        The file holds the parameters (bit-exact), the architecture, dtype, seed, the history and,
        when the network has been trained, :attr:`training_state` (so an interrupted or saved
        ``fit`` can be resumed). It is written to a temporary file in the same folder, flushed to
        disk and renamed over ``path``: a failed save leaves any previous file intact.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write (conventionally ending in ``.npz``).
        data : mapping, optional
            A description of the training data (names to str, int, float, bool or None, e.g.
            ``{"dataset": "mnist", "limit": 2000}``), stored with the training state.

        Raises
        ------
        OSError
            If the file cannot be written (missing or read-only folder, full disk), naming ``path``.
        """
        from ._model_file import save

        save(self, path, data)


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of layer widths, got {type(sizes).__name__}") from None
    if len(out) < 2:
        raise ValueError(f"sizes must list at least 2 layer widths (inputs and outputs), got {list(out)}")
    for k, s in enumerate(out):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"sizes[{k}] must be an integer, got {s!r}")
        if s < 1:
            raise ValueError(f"sizes[{k}] must be at least 1, got {s}")
    if out[-1] < 2:
        raise ValueError("the output layer needs at least 2 units (one per class)")
    if _param_count([int(s) for s in out]) > 2**31:
        raise ValueError(f"a network of sizes {list(out)} has too many parameters")
    return tuple(int(s) for s in out)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value.lower()


def _check_dtype(dtype: Any) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DataError(f"dtype must be 'float32' or 'float64', got {dt.name!r}")
    return dt
