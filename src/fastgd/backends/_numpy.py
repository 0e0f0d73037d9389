"""The NumPy reference backend: vectorised, written for clarity, the oracle for every test.

It implements the contract in :mod:`fastgd.backends` (parameter layout, codes, signatures).
A mini-batch of ``m`` rows goes through the network as matrix products, ``Z = A_prev @ W + b``,
and comes back by backpropagation, layer by layer, with the names ``z``, ``a`` and ``delta``
used the same way in every function. All arithmetic is done in theta's dtype (any NumPy float
type: the tests evaluate the cost in extended precision for finite differences); only the sum of
the per-row costs is accumulated in float64 before it is returned as a Python float.

Numerical care, so that nothing overflows or takes ``log(0)`` for any finite input:

* sigmoid uses ``exp(-|z|)``, which is at most 1;
* the cross-entropy cost is computed from ``z`` with softplus, ``-ln a = softplus(-z)`` and
  ``-ln(1 - a) = softplus(z)``, where ``softplus(t) = max(t, 0) + log1p(exp(-|t|))``;
* softmax and the log-likelihood cost subtract the row maximum first (log-sum-exp).

Output-layer ``delta`` (derivative of a row's cost with respect to ``z``): quadratic
``(a - y) * a * (1 - a)``; cross-entropy with sigmoid outputs ``a - y``; log-likelihood with
softmax outputs ``a - y``. Hidden layers: ``delta = (delta_next @ W_next.T) * f'(z)``, with
``f'`` computed from ``a`` (sigmoid ``a (1 - a)``, tanh ``1 - a**2``, relu ``1 if a > 0``, which
is the same as ``z > 0``).
"""

from __future__ import annotations

import numpy as np

NAME = "numpy"

SIGMOID, TANH, RELU = 0, 1, 2
QUADRATIC, CROSS_ENTROPY, LOG_LIKELIHOOD = 0, 1, 2


# --------------------------------------------------------------------------------------------
# Parameter layout


def _layers(theta: np.ndarray, sizes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views ``(W, b)`` into the flat vector, one pair per layer: W ``(n_in, n_out)``, b ``(n_out,)``."""
    layers = []
    offset = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        n_in, n_out = int(n_in), int(n_out)
        W = theta[offset : offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        b = theta[offset : offset + n_out]
        offset += n_out
        layers.append((W, b))
    return layers


def _one_hot(y: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
    Y = np.zeros((y.shape[0], n_classes), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y


# --------------------------------------------------------------------------------------------
# Activations, their derivatives, the output layer and its cost


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(z: np.ndarray) -> np.ndarray:
    """``ln(1 + e^z)`` without overflow for large ``z`` or loss of precision for very negative ``z``."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _activate(z: np.ndarray, activation: int) -> np.ndarray:
    if activation == SIGMOID:
        return _sigmoid(z)
    if activation == TANH:
        return np.tanh(z)
    if activation == RELU:
        return np.maximum(z, 0)
    raise ValueError(f"unknown activation code {activation!r}")


def _activate_prime(a: np.ndarray, activation: int) -> np.ndarray:
    """``f'(z)`` of a hidden layer, from its output ``a = f(z)``."""
    if activation == SIGMOID:
        return a * (1 - a)
    if activation == TANH:
        return 1 - a * a
    if activation == RELU:
        return (a > 0).astype(a.dtype)
    raise ValueError(f"unknown activation code {activation!r}")


def _output(z: np.ndarray, cost: int) -> np.ndarray:
    """Output activations: sigmoid for quadratic and cross-entropy, softmax for log-likelihood."""
    if cost in (QUADRATIC, CROSS_ENTROPY):
        return _sigmoid(z)
    if cost == LOG_LIKELIHOOD:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown cost code {cost!r}")


def _row_costs(z: np.ndarray, a: np.ndarray, Y: np.ndarray, cost: int) -> np.ndarray:
    """Cost of each row, shape ``(m,)``, from the output layer's ``z`` and ``a`` and one-hot ``Y``."""
    if cost == QUADRATIC:
        return 0.5 * np.sum((a - Y) ** 2, axis=1)
    if cost == CROSS_ENTROPY:
        # -[y ln a + (1 - y) ln(1 - a)] with ln a = -softplus(-z) and ln(1 - a) = -softplus(z)
        return np.sum(Y * _softplus(-z) + (1 - Y) * _softplus(z), axis=1)
    if cost == LOG_LIKELIHOOD:
        # -ln softmax(z)[label] = logsumexp(z) - z[label]
        z_max = z.max(axis=1, keepdims=True)
        log_sum_exp = z_max[:, 0] + np.log(np.sum(np.exp(z - z_max), axis=1))
        return log_sum_exp - np.sum(Y * z, axis=1)
    raise ValueError(f"unknown cost code {cost!r}")


def _output_delta(a: np.ndarray, Y: np.ndarray, cost: int) -> np.ndarray:
    """Derivative of each row's cost with respect to the output layer's ``z``."""
    if cost == QUADRATIC:
        return (a - Y) * a * (1 - a)
    if cost in (CROSS_ENTROPY, LOG_LIKELIHOOD):
        return a - Y
    raise ValueError(f"unknown cost code {cost!r}")


# --------------------------------------------------------------------------------------------
# Forward pass and backpropagation of one batch


def _forward(
    layers: list[tuple[np.ndarray, np.ndarray]], activation: int, cost: int, X: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``zs[l]`` and ``activations[l + 1]`` of every layer ``l``; ``activations[0]`` is ``X``."""
    zs = []
    activations = [X]
    a = X
    for l, (W, b) in enumerate(layers):
        z = a @ W + b
        a = _output(z, cost) if l == len(layers) - 1 else _activate(z, activation)
        zs.append(z)
        activations.append(a)
    return zs, activations


def _backprop(
    theta: np.ndarray, sizes: np.ndarray, activation: int, cost: int, X: np.ndarray, y: np.ndarray, out: np.ndarray
) -> tuple[float, int]:
    """Write the gradient of the mean cost over the rows of ``X`` into ``out``; return the summed cost
    and the number of rows whose largest output (the first on ties) is their label."""
    layers = _layers(theta, sizes)
    grads = _layers(out, sizes)
    m = X.shape[0]
    zs, activations = _forward(layers, activation, cost, X)
    Y = _one_hot(y, int(sizes[-1]), theta.dtype)
    total = float(np.sum(_row_costs(zs[-1], activations[-1], Y, cost), dtype=np.float64))
    correct = int(np.count_nonzero(np.argmax(activations[-1], axis=1) == y))

    delta = _output_delta(activations[-1], Y, cost)
    for l in reversed(range(len(layers))):
        W, _ = layers[l]
        dW, db = grads[l]
        a_prev = activations[l]
        dW[...] = (a_prev.T @ delta) / m
        db[...] = delta.sum(axis=0) / m
        if l > 0:
            delta = (delta @ W.T) * _activate_prime(a_prev, activation)
    return total, correct


# --------------------------------------------------------------------------------------------
# The five functions of the backend contract


# Like the compiled backends, the reference computes quietly with non-finite values (a diverging
# run, a NaN input) and leaves them in its results, which its callers check.
_quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")


@_quiet
def forward(theta: np.ndarray, sizes: np.ndarray, activation: int, cost: int, X: np.ndarray) -> np.ndarray:
    """Output activations ``(n, sizes[-1])`` in theta's dtype."""
    zs, activations = _forward(_layers(theta, sizes), int(activation), int(cost), X)
    return activations[-1]


@_quiet
def predict(theta: np.ndarray, sizes: np.ndarray, activation: int, cost: int, X: np.ndarray) -> np.ndarray:
    """Index of the largest output activation of each row (first on ties), int64 ``(n,)``."""
    return np.argmax(forward(theta, sizes, activation, cost, X), axis=1).astype(np.int64)


@_quiet
def cost(theta: np.ndarray, sizes: np.ndarray, activation: int, cost: int, X: np.ndarray, y: np.ndarray) -> float:
    """Mean cost over the rows (no regularisation term), as a Python float."""
    n = X.shape[0]
    zs, activations = _forward(_layers(theta, sizes), int(activation), int(cost), X)
    Y = _one_hot(y, int(sizes[-1]), theta.dtype)
    return float(np.sum(_row_costs(zs[-1], activations[-1], Y, int(cost)), dtype=np.float64)) / max(n, 1)


@_quiet
def grad(
    theta: np.ndarray, sizes: np.ndarray, activation: int, cost: int, X: np.ndarray, y: np.ndarray, out: np.ndarray
) -> float:
    """Overwrite ``out`` with the gradient of the mean cost over the rows; return the mean cost."""
    n = X.shape[0]
    return _backprop(theta, sizes, int(activation), int(cost), X, y, out)[0] / max(n, 1)


@_quiet
def train_epoch(
    theta: np.ndarray,
    sizes: np.ndarray,
    activation: int,
    cost: int,
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    eta: float,
    momentum: float,
    velocity: np.ndarray | None,
    l2: float,
) -> tuple[float, int]:
    """One epoch of mini-batch gradient descent over ``order``, in place; return the mean row cost and
    the number of rows classified correctly in their mini-batch's forward pass (before its step)."""
    activation, cost, batch_size = int(activation), int(cost), int(batch_size)
    eta, momentum, l2 = float(eta), float(momentum), float(l2)
    g = np.empty_like(theta)
    weight_views = [(W, dW) for (W, _), (dW, _) in zip(_layers(theta, sizes), _layers(g, sizes))]
    total = 0.0
    correct = 0
    for start in range(0, order.shape[0], batch_size):
        rows = order[start : start + batch_size]
        batch_cost, batch_correct = _backprop(theta, sizes, activation, cost, X[rows], y[rows], g)
        total += batch_cost
        correct += batch_correct
        if l2 != 0.0:
            for W, dW in weight_views:
                dW += l2 * W
        if momentum == 0.0:
            theta -= eta * g
        else:
            assert velocity is not None  # the contract: given whenever momentum is not 0
            velocity *= momentum
            velocity -= eta * g
            theta += velocity
    return total / max(order.shape[0], 1), correct


_mean_cost = cost  # the function, under a name train_epoch_many's ``cost`` argument does not hide


def train_epoch_many(
    thetas: np.ndarray,
    sizes: np.ndarray,
    activation: int,
    cost: int,
    X: np.ndarray,
    y: np.ndarray,
    orders: np.ndarray,
    batch_size: int,
    etas: np.ndarray,
    momentum: float,
    velocities: np.ndarray | None,
    l2: float,
    active: np.ndarray,
    Xv: np.ndarray | None,
    yv: np.ndarray | None,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One epoch of each active network (row of ``thetas``), in place, one after another: the backend
    contract's ``train_epoch_many`` (``n_threads`` is ignored)."""
    K = thetas.shape[0]
    costs = np.full(K, np.nan)
    correct = np.zeros(K, dtype=np.int64)
    val_costs = np.full(K, np.nan)
    val_correct = np.zeros(K, dtype=np.int64)
    for k in np.flatnonzero(active):
        velocity = None
        if momentum != 0:
            assert velocities is not None  # the contract: given whenever momentum is not 0
            velocity = velocities[k]
        costs[k], correct[k] = train_epoch(thetas[k], sizes, activation, cost, X, y, orders[k], batch_size, etas[k],
                                           momentum, velocity, l2)  # fmt: skip
        if Xv is not None:
            assert yv is not None  # the contract: Xv and yv are given together
            val_costs[k] = _mean_cost(thetas[k], sizes, activation, cost, Xv, yv)
            val_correct[k] = int(np.count_nonzero(predict(thetas[k], sizes, activation, cost, Xv) == yv))
    return costs, correct, val_costs, val_correct
