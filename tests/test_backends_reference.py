"""The NumPy reference against finite differences, every backend against the reference, and facts
that can be checked by hand.

(a) The reference's backpropagation gradient matches central finite differences of its own cost,
    for several shapes, every activation and every cost.
(b) A backend's forward pass, prediction, cost and gradient match the reference to RTOL64 in
    float64, and one training epoch (same parameters, same example order, a partial last
    mini-batch, with and without momentum and l2) to RTOL64_EPOCH; in float32 they match the
    float64 reference to the float32 tolerances below.
(c) A tiny network with known weights gives the outputs and gradients worked out by hand; eta = 0
    changes nothing; the gradient of a batch is the mean of its rows' gradients; one mini-batch
    holding every row is one gradient step.

Relative errors of arrays are taken against the array's largest entry (``rel_err``), so that
entries that are nearly 0 are judged on the scale of their array.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from helpers import EPOCH_RTOL64 as RTOL64_EPOCH
from helpers import GRADCHECK_RTOL, RTOL32, RTOL32_GRAD, RTOL64, rel_err

from fastgd import backends
from fastgd.backends import _numpy as reference

FD_RTOL = GRADCHECK_RTOL  # reference gradient vs finite differences, worst over every parameter

ACTIVATIONS = list(enumerate(backends.ACTIVATIONS))  # (code, name)
COSTS = list(enumerate(backends.COSTS))
SHAPES = [[7, 5, 4, 3], [5, 3], [6, 8, 8, 8, 4], [20, 19, 17, 10]]  # the last: whole and partial vectors
# Wide enough (256 inputs or more) for the C++ backend to train the first layer in two parts by
# input (inputs 0-159 and 160-299), whose partial weighted inputs are added per row.
WIDE = [300, 9, 7]
ROWS = 11  # mini-batches of 4: 4 + 4 + 3, a partial last one (and a partial group of rows)


def ids(pairs: list[tuple[int, str]]) -> list[str]:
    return [name for _, name in pairs]


def hidden_z(theta: np.ndarray, sizes: np.ndarray, activation: int, X: np.ndarray) -> np.ndarray:
    """Every hidden layer's z, concatenated (the reference's forward pass)."""
    zs, _ = reference._forward(reference._layers(theta, sizes), activation, 0, X)
    return np.concatenate([z.ravel() for z in zs[:-1]]) if len(zs) > 1 else np.full(1, np.inf)


def problem(
    sizes: list[int], activation: int = 0, *, seed: int = 0, rows: int = ROWS, dtype: type = np.float64,
    kink_margin: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A small network and data: theta, sizes, X (with zeros, some in whole blocks), labels y.

    With ``kink_margin`` and relu, redraws until no hidden z is within it of 0 (the kink, where
    finite differences do not estimate the derivative).
    """
    sizes = np.array(sizes, dtype=np.int64)
    for attempt in range(1000):
        rng = np.random.default_rng([seed, attempt])
        parts = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            parts.append(rng.normal(0.0, 1.5 / np.sqrt(n_in), n_in * n_out))
            parts.append(rng.normal(0.0, 0.5, n_out))
        theta = np.concatenate(parts)
        X = rng.normal(0.0, 1.0, (rows, sizes[0]))
        X[rng.random(X.shape) < 0.3] = 0.0
        X[:, : sizes[0] // 2] *= rng.random((rows, 1)) < 0.5  # zero blocks: half the inputs of some rows
        y = rng.integers(0, sizes[-1], rows).astype(np.int64)
        relu = backends.ACTIVATIONS.index("relu")
        if activation != relu or np.min(np.abs(hidden_z(theta, sizes, activation, X))) > kink_margin:
            return theta.astype(dtype), sizes, X.astype(dtype), y
    raise AssertionError("no problem without relu kinks found")


# --------------------------------------------------------------------------------------------
# (a) The reference against finite differences


def finite_difference_gradient(
    theta: np.ndarray, sizes: np.ndarray, activation: int, cost: int, X: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Central differences of the reference's mean cost with steps h, h/2 and h/4, Richardson-
    extrapolated (error O(h^6)), h = 5e-4 * max(1, |theta_k|), evaluated in extended precision
    where the platform has it (x86: 64-bit mantissa): accurate to ~1e-16 absolute.

    Plain float64 central differences with h ~ 1e-6 are accurate to ~1e-10 absolute (the rounding
    of a cost of order 1, divided by h), a relative error above 1e-7 for every gradient entry below
    ~1e-3: they cannot check a worst relative error of 1e-7 over all parameters.
    """
    wide = np.longdouble if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps else np.float64
    t = theta.astype(wide)
    Xw = X.astype(wide)
    Y = reference._one_hot(y, int(sizes[-1]), wide)
    layers = reference._layers(t, sizes)  # views into t: perturbing t perturbs them

    def mean_cost() -> np.floating:
        zs, activations = reference._forward(layers, activation, cost, Xw)
        return np.sum(reference._row_costs(zs[-1], activations[-1], Y, cost)) / Xw.shape[0]

    def central(k: int, h: np.floating) -> np.floating:
        t[k] = theta[k] + h
        up = mean_cost()
        t[k] = theta[k] - h
        down = mean_cost()
        t[k] = theta[k]
        return (up - down) / (2 * h)

    g = np.empty(theta.shape[0], dtype=wide)
    for k in range(theta.shape[0]):
        h = wide(5e-4) * max(wide(1), abs(t[k]))
        d1, d2, d4 = central(k, h), central(k, h / 2), central(k, h / 4)
        r1, r2 = (4 * d2 - d1) / 3, (4 * d4 - d2) / 3  # O(h^4)
        g[k] = (16 * r2 - r1) / 15  # O(h^6)
    return g.astype(np.float64)


@pytest.mark.parametrize("sizes", SHAPES[:3], ids=str)
@pytest.mark.parametrize(("activation", "activation_name"), ACTIVATIONS, ids=ids(ACTIVATIONS))
@pytest.mark.parametrize(("cost", "cost_name"), COSTS, ids=ids(COSTS))
def test_reference_gradient_matches_finite_differences(
    sizes: list[int], activation: int, activation_name: str, cost: int, cost_name: str
) -> None:
    theta, sizes, X, y = problem(sizes, activation, seed=1, kink_margin=1e-2)
    g = np.empty_like(theta)
    reference.grad(theta, sizes, activation, cost, X, y, g)
    g_fd = finite_difference_gradient(theta, sizes, activation, cost, X, y)
    rel = np.abs(g - g_fd) / np.maximum(np.abs(g) + np.abs(g_fd), np.finfo(np.float64).tiny)
    worst = int(np.argmax(rel))
    assert rel[worst] <= FD_RTOL, f"parameter {worst}: backprop {g[worst]!r}, finite differences {g_fd[worst]!r}"


# --------------------------------------------------------------------------------------------
# (b) Every backend against the reference


@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize(("activation", "activation_name"), ACTIVATIONS, ids=ids(ACTIVATIONS))
@pytest.mark.parametrize(("cost", "cost_name"), COSTS, ids=ids(COSTS))
def test_forward_cost_grad_match_reference_float64(
    backend: ModuleType, sizes: list[int], activation: int, activation_name: str, cost: int, cost_name: str
) -> None:
    theta, sizes, X, y = problem(sizes, activation, seed=2)
    A = backend.forward(theta, sizes, activation, cost, X)
    assert A.dtype == np.float64 and A.shape == (ROWS, sizes[-1])
    assert rel_err(A, reference.forward(theta, sizes, activation, cost, X)) <= RTOL64

    labels = backend.predict(theta, sizes, activation, cost, X)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, reference.predict(theta, sizes, activation, cost, X))

    c = backend.cost(theta, sizes, activation, cost, X, y)
    c_ref = reference.cost(theta, sizes, activation, cost, X, y)
    assert type(c) is float and abs(c - c_ref) <= RTOL64 * abs(c_ref)

    g = np.full_like(theta, np.nan)  # must be overwritten everywhere
    c_grad = backend.grad(theta, sizes, activation, cost, X, y, g)
    g_ref = np.empty_like(theta)
    reference.grad(theta, sizes, activation, cost, X, y, g_ref)
    assert rel_err(g, g_ref) <= RTOL64
    assert abs(c_grad - c_ref) <= RTOL64 * abs(c_ref)


@pytest.mark.parametrize("sizes", [SHAPES[0], SHAPES[3]], ids=str)
@pytest.mark.parametrize(("activation", "activation_name"), ACTIVATIONS, ids=ids(ACTIVATIONS))
@pytest.mark.parametrize(("cost", "cost_name"), COSTS, ids=ids(COSTS))
def test_float32_matches_float64_reference(
    backend: ModuleType, sizes: list[int], activation: int, activation_name: str, cost: int, cost_name: str
) -> None:
    theta, sizes, X, y = problem(sizes, activation, seed=3, dtype=np.float32)
    theta64, X64 = theta.astype(np.float64), X.astype(np.float64)
    A = backend.forward(theta, sizes, activation, cost, X)
    assert A.dtype == np.float32
    assert rel_err(A, reference.forward(theta64, sizes, activation, cost, X64)) <= RTOL32
    c_ref = reference.cost(theta64, sizes, activation, cost, X64, y)
    assert abs(backend.cost(theta, sizes, activation, cost, X, y) - c_ref) <= RTOL32 * abs(c_ref)
    g = np.empty_like(theta)
    backend.grad(theta, sizes, activation, cost, X, y, g)
    g_ref = np.empty_like(theta64)
    reference.grad(theta64, sizes, activation, cost, X64, y, g_ref)
    assert rel_err(g, g_ref) <= RTOL32_GRAD


OPTIMISERS = [(0.0, 0.0), (0.9, 0.0), (0.0, 0.05), (0.5, 0.05)]  # (momentum, l2)


@pytest.mark.parametrize("sizes", [SHAPES[0], SHAPES[3], WIDE], ids=str)
@pytest.mark.parametrize(("activation", "activation_name"), ACTIVATIONS, ids=ids(ACTIVATIONS))
@pytest.mark.parametrize(("cost", "cost_name"), COSTS, ids=ids(COSTS))
@pytest.mark.parametrize(("momentum", "l2"), OPTIMISERS, ids=[f"momentum={m}-l2={r}" for m, r in OPTIMISERS])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_train_epoch_matches_reference(
    backend: ModuleType, sizes: list[int], activation: int, activation_name: str, cost: int, cost_name: str,
    momentum: float, l2: float, dtype: type,
) -> None:
    theta, sizes, X, y = problem(sizes, activation, seed=4, dtype=dtype)
    order = np.random.default_rng(5).permutation(ROWS).astype(np.int64)
    velocity = np.random.default_rng(6).normal(0.0, 0.01, theta.shape).astype(dtype)
    eta = 0.5
    t, v = theta.copy(), velocity.copy()
    c, correct = backend.train_epoch(t, sizes, activation, cost, X, y, order, 4, eta, momentum, v, l2)

    # the float64 reference from the same start
    t_ref, v_ref = theta.astype(np.float64), velocity.astype(np.float64)
    X_ref = X.astype(np.float64)
    c_ref, correct_ref = reference.train_epoch(t_ref, sizes, activation, cost, X_ref, y, order, 4, eta, momentum,
                                               v_ref, l2)  # fmt: skip
    rtol, rtol_cost = (RTOL64_EPOCH, RTOL64_EPOCH) if dtype == np.float64 else (RTOL32_GRAD, RTOL32)
    assert t.dtype == dtype
    assert rel_err(t, t_ref) <= rtol
    assert rel_err(t - theta, t_ref - theta.astype(np.float64)) <= 10 * rtol  # the change itself, not only theta
    if momentum:
        assert rel_err(v, v_ref) <= rtol
    else:
        np.testing.assert_array_equal(v, velocity)  # ignored when momentum == 0
    assert type(c) is float and abs(c - c_ref) <= rtol_cost * abs(c_ref)
    # rows classified correctly in the mini-batches' forward passes; float32 may flip a near tie
    assert isinstance(correct, int) and abs(correct - correct_ref) <= (0 if dtype == np.float64 else 1)


@pytest.mark.parametrize("sizes", [SHAPES[3], WIDE], ids=str)
@pytest.mark.parametrize("batch_size", [17, 40, 101, 255, 256, 300, 600])
@pytest.mark.parametrize(("momentum", "l2"), OPTIMISERS, ids=[f"momentum={m}-l2={r}" for m, r in OPTIMISERS])
def test_train_epoch_large_mini_batches(
    backend: ModuleType, sizes: list[int], batch_size: int, momentum: float, l2: float
) -> None:
    """Mini-batches larger than one block are summed in slices of rows or, for a wide first layer below
    256 rows, in rounds of blocks with the first layer in two parts (on threads): still the reference's
    step."""
    theta, sizes, X, y = problem(sizes, 1, seed=13, rows=600)
    order = np.random.default_rng(14).permutation(600).astype(np.int64)
    velocity = np.random.default_rng(15).normal(0.0, 0.01, theta.shape)
    t, v, t_ref, v_ref = theta.copy(), velocity.copy(), theta.copy(), velocity.copy()
    c, correct = backend.train_epoch(t, sizes, 1, 2, X, y, order, batch_size, 0.3, momentum, v, l2)
    c_ref, correct_ref = reference.train_epoch(t_ref, sizes, 1, 2, X, y, order, batch_size, 0.3, momentum, v_ref, l2)
    assert rel_err(t, t_ref) <= RTOL64_EPOCH
    assert rel_err(t - theta, t_ref - theta) <= 10 * RTOL64_EPOCH
    if momentum:
        assert rel_err(v, v_ref) <= RTOL64_EPOCH
    assert abs(c - c_ref) <= RTOL64_EPOCH * abs(c_ref) and correct == correct_ref


@pytest.mark.parametrize("sizes", [SHAPES[3], WIDE], ids=str)
@pytest.mark.parametrize("batch_size", [1, 3, 4, 11, 16])
@pytest.mark.parametrize("order_kind", ["permutation", "subset with repeats"])
def test_train_epoch_batch_sizes_and_orders(
    backend: ModuleType, sizes: list[int], batch_size: int, order_kind: str
) -> None:
    theta, sizes, X, y = problem(sizes, 0, seed=7)
    rng = np.random.default_rng(8)
    order = rng.permutation(ROWS) if order_kind == "permutation" else rng.integers(0, ROWS, 7)
    order = order.astype(np.int64)
    t, t_ref = theta.copy(), theta.copy()
    none = np.empty(0, dtype=np.float64)
    c, correct = backend.train_epoch(t, sizes, 0, 0, X, y, order, batch_size, 3.0, 0.0, none, 0.0)
    c_ref, correct_ref = reference.train_epoch(t_ref, sizes, 0, 0, X, y, order, batch_size, 3.0, 0.0, none, 0.0)
    assert rel_err(t, t_ref) <= RTOL64_EPOCH
    assert abs(c - c_ref) <= RTOL64_EPOCH * abs(c_ref)
    assert correct == correct_ref


def zero_input_problem(rows: int, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """37 inputs (two whole 64-byte chunks of float32 inputs and a partial one; four and a partial one
    of float64) where inputs 0-7, 20, 21, 33 and 35-36 are zero in every row (some -0.0, which is not
    skipped), and inputs 8-15 and 30 are nonzero in one row in eight only, so they are zero in every
    row of some blocks and not of others: the products the C++ kernels and the Numba backend skip
    (inputs zero in every row of a block)."""
    theta, sizes, X, y = problem([37, 9, 4], 0, seed=21, rows=rows, dtype=dtype)
    zero = [*range(8), 20, 21, 33, 35, 36]
    X[:, zero] = 0.0
    X[::3, 2] = -0.0
    X[1::4, 35] = -0.0
    X[np.ix_(np.arange(rows) % 8 != 3, [*range(8, 16), 30])] = 0.0
    return theta, sizes, X, y


ALWAYS_ZERO = [0, 1, 3, 4, 5, 6, 7, 20, 21, 33, 36]  # zero_input_problem's inputs that are +0.0 in every row


@pytest.mark.parametrize("batch_size", [1, 4, 5, 6, 7, 10, 14, 16, 17, 40])
@pytest.mark.parametrize(("momentum", "l2"), OPTIMISERS, ids=[f"momentum={m}-l2={r}" for m, r in OPTIMISERS])
def test_inputs_zero_in_every_row_match_reference(
    backend: ModuleType, batch_size: int, momentum: float, l2: float
) -> None:
    """Inputs that are zero in every row of a block give the reference's forward pass, gradient and
    steps (plain SGD leaves those inputs' weights exactly as they were)."""
    rows = 80
    theta, sizes, X, y = zero_input_problem(rows)
    g, g_ref = np.full_like(theta, np.nan), np.empty_like(theta)
    c = backend.grad(theta, sizes, 0, 0, X, y, g)
    c_ref = reference.grad(theta, sizes, 0, 0, X, y, g_ref)
    assert rel_err(g, g_ref) <= RTOL64 and abs(c - c_ref) <= RTOL64 * abs(c_ref)
    assert np.all(g[: 37 * 9].reshape(37, 9)[ALWAYS_ZERO] == 0.0)
    assert rel_err(backend.forward(theta, sizes, 0, 0, X), reference.forward(theta, sizes, 0, 0, X)) <= RTOL64

    order = np.random.default_rng(22).permutation(rows).astype(np.int64)
    velocity = np.random.default_rng(23).normal(0.0, 0.01, theta.shape)
    t, v, t_ref, v_ref = theta.copy(), velocity.copy(), theta.copy(), velocity.copy()
    c, correct = backend.train_epoch(t, sizes, 0, 0, X, y, order, batch_size, 2.0, momentum, v, l2)
    c_ref, correct_ref = reference.train_epoch(t_ref, sizes, 0, 0, X, y, order, batch_size, 2.0, momentum, v_ref, l2)
    assert rel_err(t, t_ref) <= RTOL64_EPOCH and rel_err(t - theta, t_ref - theta) <= 10 * RTOL64_EPOCH
    assert abs(c - c_ref) <= RTOL64_EPOCH * abs(c_ref) and correct == correct_ref
    if momentum == 0.0 and l2 == 0.0:
        W1, W1_before = t[: 37 * 9].reshape(37, 9), theta[: 37 * 9].reshape(37, 9)
        np.testing.assert_array_equal(W1[ALWAYS_ZERO], W1_before[ALWAYS_ZERO])
        assert np.all(W1[[*range(8, 20), 22, 30, 34]] != W1_before[[*range(8, 20), 22, 30, 34]])


@pytest.mark.parametrize("batch_size", [1, 5, 10, 16, 17, 40])
@pytest.mark.parametrize(("momentum", "l2"), OPTIMISERS, ids=[f"momentum={m}-l2={r}" for m, r in OPTIMISERS])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_wide_first_layer_with_a_part_zero_in_every_row_matches_reference(
    backend: ModuleType, batch_size: int, momentum: float, l2: float, dtype: type
) -> None:
    """A wide first layer (see WIDE) whose rows have every input of one part zero (inputs 0-159 in the
    rows 0 mod 3, 160-299 in the rows 1 mod 3), so that whole mini-batches have one part empty, and
    inputs 150-169 (across the cut) zero in every row: the reference's epoch, and plain SGD leaves the
    weights of inputs zero in every row exactly as they were."""
    rows = 120
    theta, sizes, X, y = problem(WIDE, 0, seed=31, rows=rows, dtype=dtype)
    X[0::3, :160] = 0.0
    X[1::3, 160:] = 0.0
    X[:, 150:170] = 0.0
    # rows sorted so that mini-batches of up to 40 rows hold only rows of one kind, then mixed ones
    order = np.concatenate([np.arange(0, rows, 3), np.arange(1, rows, 3), np.arange(2, rows, 3)]).astype(np.int64)
    velocity = np.random.default_rng(32).normal(0.0, 0.01, theta.shape).astype(dtype)
    t, v = theta.copy(), velocity.copy()
    t_ref, v_ref = theta.astype(np.float64), velocity.astype(np.float64)
    c, correct = backend.train_epoch(t, sizes, 0, 0, X, y, order, batch_size, 2.0, momentum, v, l2)
    c_ref, correct_ref = reference.train_epoch(t_ref, sizes, 0, 0, X.astype(np.float64), y, order, batch_size, 2.0,
                                               momentum, v_ref, l2)  # fmt: skip
    rtol = RTOL64_EPOCH if dtype == np.float64 else RTOL32_GRAD
    assert rel_err(t, t_ref) <= rtol and rel_err(t - theta, t_ref - theta.astype(np.float64)) <= 10 * rtol
    assert abs(c - c_ref) <= rtol * abs(c_ref) and abs(correct - correct_ref) <= (0 if dtype == np.float64 else 1)
    if momentum == 0.0 and l2 == 0.0:
        W1, W1_before = t[: 300 * 9].reshape(300, 9), theta[: 300 * 9].reshape(300, 9)
        np.testing.assert_array_equal(W1[150:170], W1_before[150:170])
        others = np.r_[0:150, 170:300]
        changed = np.any(W1[others] != W1_before[others], axis=1)
        np.testing.assert_array_equal(changed, X[:, others].any(axis=0))  # each weight row with a nonzero input moved


@pytest.mark.parametrize("batch_size", [1, 10, 40])
def test_inputs_zero_in_every_row_float32(backend: ModuleType, batch_size: int) -> None:
    """The same in float32 (16 inputs to a 64-byte chunk instead of 8)."""
    rows = 80
    theta, sizes, X, y = zero_input_problem(rows, np.float32)
    g, g_ref = np.full_like(theta, np.nan), np.empty_like(theta)
    backend.grad(theta, sizes, 0, 0, X, y, g)
    reference.grad(theta, sizes, 0, 0, X, y, g_ref)
    assert rel_err(g, g_ref) <= 1e-5
    assert np.all(g[: 37 * 9].reshape(37, 9)[ALWAYS_ZERO] == 0.0)
    order = np.random.default_rng(22).permutation(rows).astype(np.int64)
    none = np.empty(0, dtype=np.float32)
    t, t_ref = theta.copy(), theta.copy()
    backend.train_epoch(t, sizes, 0, 0, X, y, order, batch_size, 2.0, 0.0, none, 0.0)
    reference.train_epoch(t_ref, sizes, 0, 0, X, y, order, batch_size, 2.0, 0.0, none, 0.0)
    assert rel_err(t - theta, t_ref - theta) <= 1e-4
    W1, W1_before = t[: 37 * 9].reshape(37, 9), theta[: 37 * 9].reshape(37, 9)
    np.testing.assert_array_equal(W1[ALWAYS_ZERO], W1_before[ALWAYS_ZERO])


# --------------------------------------------------------------------------------------------
# (c) Facts that can be checked by hand


def test_hand_computed_sigmoid_network(backend: ModuleType) -> None:
    # [2, 2, 1], sigmoid, quadratic. x = (1, 0): z1 = (1, -1); a1 = (s, 1 - s) with s = sigmoid(1);
    # z2 = a1 . (1, 1) - 1 = 0, a2 = 1/2. Label 0 of one output: y = 1, cost (1/2)(1/2 - 1)^2 = 1/8.
    # delta2 = (a2 - y) a2 (1 - a2) = -1/8; db2 = -1/8, dW2 = a1 * -1/8;
    # delta1 = W2 delta2 * a1 (1 - a1) = -1/8 s (1 - s) (both units); dW1 = x delta1, db1 = delta1.
    W1 = np.array([[1.0, -1.0], [2.0, 0.0]])  # (n_in, n_out), as theta stores it
    theta = np.concatenate([W1.ravel(), [0.0, 0.0], [1.0, 1.0], [-1.0]])
    sizes = np.array([2, 2, 1], dtype=np.int64)
    X = np.array([[1.0, 0.0]])
    y = np.array([0], dtype=np.int64)
    s = 1.0 / (1.0 + np.exp(-1.0))
    np.testing.assert_allclose(backend.forward(theta, sizes, 0, 0, X), [[0.5]], rtol=0, atol=1e-15)
    assert backend.cost(theta, sizes, 0, 0, X, y) == pytest.approx(0.125, rel=1e-14)
    g = np.empty_like(theta)
    backend.grad(theta, sizes, 0, 0, X, y, g)
    d1 = -0.125 * s * (1 - s)
    expected = [d1, d1, 0.0, 0.0, d1, d1, -0.125 * s, -0.125 * (1 - s), -0.125]
    np.testing.assert_allclose(g, expected, rtol=1e-13, atol=1e-16)


def test_hand_computed_relu_softmax_network(backend: ModuleType) -> None:
    # [2, 2, 2], relu, log-likelihood. x = (2, 1): z1 = x W1 + b1 = (2.5, -1), a1 = (2.5, 0);
    # z2 = a1 W2 + b2 = (2, 0); softmax a2 = (1 - q, q) with q = 1 / (1 + e^2); label 1:
    # cost -ln q = ln(1 + e^2). delta2 = a2 - y = (1 - q, -(1 - q)); dW2 = a1^T delta2; db2 = delta2;
    # delta1 = (delta2 W2^T) * relu'(z1) = ((1 - q) 0.8, 0); dW1 = x^T delta1; db1 = delta1.
    W1 = np.array([[1.0, -1.0], [0.5, 2.0]])
    W2 = np.array([[0.4, -0.4], [3.0, 3.0]])
    theta = np.concatenate([W1.ravel(), [0.0, -1.0], W2.ravel(), [1.0, 1.0]])
    sizes = np.array([2, 2, 2], dtype=np.int64)
    X = np.array([[2.0, 1.0]])
    y = np.array([1], dtype=np.int64)
    q = 1.0 / (1.0 + np.exp(2.0))
    relu, log_likelihood = backends.ACTIVATIONS.index("relu"), backends.COSTS.index("log-likelihood")
    np.testing.assert_allclose(backend.forward(theta, sizes, relu, log_likelihood, X), [[1 - q, q]], rtol=1e-14)
    assert backend.predict(theta, sizes, relu, log_likelihood, X).tolist() == [0]
    assert backend.cost(theta, sizes, relu, log_likelihood, X, y) == pytest.approx(np.log1p(np.exp(2.0)), rel=1e-14)
    g = np.empty_like(theta)
    backend.grad(theta, sizes, relu, log_likelihood, X, y, g)
    p = 1 - q
    d1 = 0.8 * p
    expected = [2 * d1, 0.0, d1, 0.0, d1, 0.0, 2.5 * p, -2.5 * p, 0.0, 0.0, p, -p]
    np.testing.assert_allclose(g, expected, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize(("momentum", "l2"), OPTIMISERS, ids=[f"momentum={m}-l2={r}" for m, r in OPTIMISERS])
def test_eta_zero_changes_nothing(backend: ModuleType, momentum: float, l2: float) -> None:
    theta, sizes, X, y = problem(SHAPES[3], 0, seed=9)
    order = np.random.default_rng(10).permutation(ROWS).astype(np.int64)
    t, v = theta.copy(), np.zeros_like(theta)
    c, correct = backend.train_epoch(t, sizes, 0, 0, X, y, order, 4, 0.0, momentum, v, l2)
    np.testing.assert_array_equal(t, theta)
    np.testing.assert_array_equal(v, 0.0)
    # with no step, the epoch's cost and correct count are those of the rows at the starting parameters
    assert c == pytest.approx(backend.cost(theta, sizes, 0, 0, X, y), rel=RTOL64)
    assert correct == np.count_nonzero(backend.predict(theta, sizes, 0, 0, X) == y)


@pytest.mark.parametrize(("cost", "cost_name"), COSTS, ids=ids(COSTS))
def test_batch_gradient_is_mean_of_row_gradients(backend: ModuleType, cost: int, cost_name: str) -> None:
    theta, sizes, X, y = problem(SHAPES[3], 1, seed=11)
    g = np.empty_like(theta)
    backend.grad(theta, sizes, 1, cost, X, y, g)
    rows = np.empty((ROWS, theta.shape[0]))
    for r in range(ROWS):
        backend.grad(theta, sizes, 1, cost, X[r : r + 1], y[r : r + 1], rows[r])
    assert rel_err(g, rows.mean(axis=0)) <= RTOL64


def test_one_batch_of_every_row_is_one_gradient_step(backend: ModuleType) -> None:
    theta, sizes, X, y = problem(SHAPES[3], 2, seed=12)
    order = np.arange(ROWS, dtype=np.int64)
    g = np.empty_like(theta)
    c = backend.grad(theta, sizes, 2, 1, X, y, g)
    t = theta.copy()
    c_epoch, _ = backend.train_epoch(t, sizes, 2, 1, X, y, order, ROWS, 0.7, 0.0, np.empty(0), 0.0)
    assert rel_err(t, theta - 0.7 * g) <= RTOL64
    assert c_epoch == pytest.approx(c, rel=RTOL64)


def numba_results_per_thread_count(tmp_path, case: dict[str, np.ndarray], code: str) -> list[np.ndarray]:  # noqa: ANN001
    """Runs ``code`` (case file in sys.argv[1], saves its array to sys.argv[2]) in a fresh process with
    NUMBA_NUM_THREADS 1, then 2 (Numba reads it once, at import); returns the two arrays."""
    import os
    import subprocess
    import sys

    np.savez(tmp_path / "case.npz", **case)
    prelude = "import sys, numpy as np; from fastgd.backends import _numba as nb; d = np.load(sys.argv[1]);"
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.npy"
        subprocess.run([sys.executable, "-c", prelude + code, str(tmp_path / "case.npz"), str(out)], check=True,
                       env={**os.environ, "NUMBA_NUM_THREADS": threads}, capture_output=True, text=True)  # fmt: skip
        results.append(np.load(out))
    return results


def numba_script_result(tmp_path, case: dict[str, np.ndarray], code: str) -> np.ndarray:  # noqa: ANN001
    """Runs the script ``code`` (case file in sys.argv[1], saves its array to sys.argv[2]) in a fresh process, with a
    timeout (a team of threads that hangs fails the test); returns the array."""
    import subprocess
    import sys

    np.savez(tmp_path / "case.npz", **case)
    out = tmp_path / "out.npy"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "case.npz"), str(out)], check=True, timeout=600,
                   capture_output=True, text=True)  # fmt: skip
    return np.load(out)


def test_numba_large_mini_batches_do_not_depend_on_the_thread_count(tmp_path) -> None:  # noqa: ANN001
    """Numba sums a large mini-batch's slices on its threads in a fixed order: any NUMBA_NUM_THREADS, one result."""
    from helpers import require_backend

    require_backend("numba")
    theta, sizes, X, y = problem(SHAPES[3], 0, seed=16, rows=600)
    code = (
        "t = d['theta'].copy(); order = np.random.default_rng(0).permutation(600);"
        "nb.train_epoch(t, d['sizes'], 0, 0, d['X'], d['y'], order, 300, 0.5, 0.0, None, 0.0); np.save(sys.argv[2], t)"
    )
    results = numba_results_per_thread_count(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    assert np.array_equal(results[0], results[1])


def test_numba_team_finishes_alone_when_its_members_run_one_after_another(tmp_path) -> None:  # noqa: ANN001
    """A team of threads shares an epoch's large mini-batches; a helper thread may start late, or only when the
    leader is done. The leader then does all the work, with the same result as the slices run in order, and the
    late helper finds nothing left to do; no member waits for one that has not started (a hang here fails by the
    subprocess's timeout). Teams of 2 and 4 threads give that result too."""
    from helpers import require_backend

    require_backend("numba")
    theta, sizes, X, y = problem(SHAPES[3], 0, seed=18, rows=600)
    # mini-batches of 257, 257 and 86 rows: four slices, then two
    code = """
import sys, numpy as np
from fastgd.backends import _numba as nb
d = np.load(sys.argv[1])
order = np.random.default_rng(3).permutation(600)
results = []
for members in (0, 1, 2, nb._SLICES):
    t = d['theta'].copy()
    w = nb._SliceScratch(t, d['sizes'], 257)
    shared = (t, d['sizes'], 0, 0, d['X'].reshape(-1), d['y'], order)
    step = (w.G, w.acts, w.deltas, w.identity)
    if members == 0:
        c, k = nb._sliced_batches(*shared, 0, 600, 257, 0.5, 0.0, t[:0], 0.0, *step, 0.0, 0)
    elif members == 1:  # the leader alone, then a helper
        team = np.zeros(nb._TEAM_WORDS, dtype=np.int64)
        costs, hits = np.zeros(nb._SLICES), np.zeros(nb._SLICES, dtype=np.int64)
        eta, zero = t.dtype.type(0.5), t.dtype.type(0.0)
        c, k = nb._team_lead(team, *shared, 0, 600, 257, eta, zero, t[:0], zero, *step, costs, hits, 0.0, 0)
        team[nb._T_OVER] = 1
        nb._team_help(team, *shared, eta, zero, t[:0], zero, *step, costs, hits, 1)
    else:
        c, k = nb._team_batches(*shared, 0, 600, 257, 0.5, 0.0, t[:0], 0.0, *step, members)
    results.append(np.append(t, [c, k]))
np.save(sys.argv[2], np.array(results))
"""
    serial, alone, team2, team_all = numba_script_result(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    assert np.array_equal(alone, serial)
    assert np.array_equal(team2, serial)
    assert np.array_equal(team_all, serial)
    assert not np.array_equal(serial[:-2], theta)  # the epoch took its steps


def test_numba_read_only_data_compiles_nothing_more() -> None:
    """Read-only X and y (a sweep's shared data, ``np.load(..., mmap_mode="r")``) are another type to Numba: the
    backend passes them as writable aliases, so every path (one block, the split first layer, the slices, long
    forward passes, the gradient, train_many) runs the kernels compiled for writable arrays, with the same
    results, and the arrays are left as they were."""
    from helpers import require_backend

    require_backend("numba")
    import numba
    from numba.core.registry import CPUDispatcher

    from fastgd.backends import _numba

    theta, sizes, X, y = problem(WIDE, 0, seed=45, rows=2100)
    X = X.astype(np.float32)
    theta = theta.astype(np.float32)

    def run(X, y) -> list:  # noqa: ANN001
        out = []
        for batch in (3, 10, 100):
            t = theta.copy()
            order = np.random.default_rng(batch).permutation(X.shape[0])
            out.append((t, _numba.train_epoch(t, sizes, 0, 0, X, y, order, batch, 0.5, 0.0, None, 0.0)))
        out.append(_numba.forward(theta, sizes, 0, 0, X))
        out.append(_numba.cost(theta, sizes, 0, 0, X, y))
        g = np.empty_like(theta)
        out.append((g, _numba.grad(theta, sizes, 0, 0, X[:50], y[:50], g)))
        ts = np.stack([theta, theta[::-1].copy()])
        orders = np.stack([np.arange(X.shape[0]), np.arange(X.shape[0])[::-1].copy()])
        out.append((ts, _numba.train_epoch_many(ts, sizes, 0, 0, X, y, orders, 10, [0.5, 1.0], 0.0, None, 0.0,
                                                np.array([True, True]), None, None, 0)))  # fmt: skip
        return out

    def compiled() -> int:
        return sum(len(f.signatures) for f in vars(_numba).values() if isinstance(f, CPUDispatcher))

    def leaves(x) -> list[np.ndarray]:  # noqa: ANN001
        return [leaf for e in x for leaf in leaves(e)] if isinstance(x, (tuple, list)) else [np.asarray(x)]

    writable = run(X, y)
    # and on one thread: the serial kernels, which a team's leader also runs when it works alone (see
    # _numba._TeamChoice), compiled for writable arrays too
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert all(np.array_equal(u, v, equal_nan=True) for u, v in zip(leaves(run(X, y)), leaves(writable)))
    finally:
        numba.set_num_threads(threads)
    before = compiled()
    Xr, yr = X.copy(), y.copy()
    Xr.setflags(write=False)
    yr.setflags(write=False)
    read_only = run(Xr, yr)
    assert compiled() == before

    a, b = leaves(writable), leaves(read_only)
    assert len(a) == len(b) and all(np.array_equal(u, v, equal_nan=True) for u, v in zip(a, b))
    assert not Xr.flags.writeable and np.array_equal(Xr, X) and np.array_equal(yr, y)


def test_numba_team_raises_a_helpers_error() -> None:
    """A team's helper threads run kernels; an exception in one reaches the caller once the leader is done, and
    the next team works."""
    from helpers import require_backend

    require_backend("numba")
    from fastgd.backends import _numba

    def helper() -> None:
        raise ValueError("the helper failed")

    led = []
    with pytest.raises(ValueError, match="the helper failed"):
        _numba._with_helpers(2, helper, lambda: led.append(1))
    assert led == [1]
    assert _numba._with_helpers(3, lambda: None, lambda: 7) == 7


def test_numba_team_waits_for_its_helpers_through_a_second_ctrl_c() -> None:
    """Ctrl-C pressed again while a team waits for its helpers to finish their task (the first stopped the
    leader) is raised only once they are done: a helper still writing to the parameters after the team raised
    would change them after fit restored them."""
    import os
    import signal
    import threading
    import time

    from helpers import require_backend

    require_backend("numba")
    from fastgd.backends import _numba

    started, done = threading.Event(), threading.Event()

    def helper() -> None:
        started.set()
        time.sleep(0.3)  # the helper's task, still running when the second Ctrl-C comes
        done.set()

    def lead() -> None:
        assert started.wait(10)
        raise KeyboardInterrupt  # the first Ctrl-C, seen by the leader

    second = threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        second.start()
        with pytest.raises(KeyboardInterrupt):
            _numba._with_helpers(2, helper, lead)
        assert done.is_set()
    finally:
        second.cancel()
        second.join()
        signal.signal(signal.SIGINT, previous)


def test_numba_teams_work_in_a_forked_child(tmp_path) -> None:  # noqa: ANN001
    """The teams' helper threads are kept between teams; a process forked after a team has none of them, and makes
    its own: its epochs (split first layer, large mini-batches) and long forward passes still finish, with the
    parent's result (a hang here fails by the subprocess's timeout)."""
    from helpers import require_backend

    require_backend("numba")
    theta, sizes, X, y = problem(WIDE, 0, seed=44, rows=2100)
    code = """
import os, sys
os.environ["NUMBA_NUM_THREADS"] = "2"  # teams of two on any machine
import numpy as np
from fastgd.backends import _numba as nb
d = np.load(sys.argv[1])
def run():
    out = []
    for batch in (10, 100):
        t = d['theta'].copy(); order = np.random.default_rng(batch).permutation(d['X'].shape[0])
        nb.train_epoch(t, d['sizes'], 0, 0, d['X'], d['y'], order, batch, 0.5, 0.0, None, 0.0)
        out.append(t)
    out.append(nb.forward(d['theta'], d['sizes'], 0, 0, d['X']).ravel())
    return np.concatenate(out)
parent = run()
pid = os.fork()
if pid == 0:
    np.save(sys.argv[2] + ".child.npy", run())
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
np.save(sys.argv[2], np.stack([parent, np.load(sys.argv[2] + ".child.npy")]))
"""
    parent, child = numba_script_result(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    assert np.array_equal(child, parent)
    assert not np.array_equal(parent[: theta.size], theta)  # the epoch took its steps


def test_numba_wide_first_layer_does_not_depend_on_the_thread_count(tmp_path) -> None:  # noqa: ANN001
    """Numba trains a wide first layer (see WIDE) in two parts by input, on two threads for mini-batches of 6-63
    rows: the same bits with NUMBA_NUM_THREADS 1 (the parts one after the other) and 2, for plain SGD, momentum
    and l2, with a partial last mini-batch."""
    from helpers import require_backend

    require_backend("numba")
    theta, sizes, X, y = problem(WIDE, 1, seed=41, rows=250)
    code = """
out = []
for batch in (6, 10, 17, 63):
    for momentum, l2 in ((0.0, 0.0), (0.9, 0.0), (0.0, 0.05)):
        t = d['theta'].copy(); v = np.full_like(t, 0.01)
        order = np.random.default_rng(batch).permutation(250)
        c, k = nb.train_epoch(t, d['sizes'], 1, 2, d['X'], d['y'], order, batch, 0.5, momentum, v, l2)
        out.append(np.concatenate([t, v, [c, k]]))
np.save(sys.argv[2], np.array(out))
"""
    results = numba_results_per_thread_count(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    assert np.array_equal(results[0], results[1])
    assert all(not np.array_equal(r[: theta.size], theta) for r in results[0])  # every epoch took its steps


def test_numba_split_team_finishes_alone_when_its_members_run_one_after_another(tmp_path) -> None:  # noqa: ANN001
    """The two threads of a split first layer are a team as well: with the helper started only when the leader is
    done, the leader does both parts' tasks, with the parts' result in order, and the helper finds nothing left;
    no member waits for one that has not started (a hang here fails by the subprocess's timeout)."""
    from helpers import require_backend

    require_backend("numba")
    theta, sizes, X, y = problem(WIDE, 0, seed=42, rows=250)
    code = """
import sys, numpy as np
from fastgd.backends import _numba as nb
d = np.load(sys.argv[1])
order = np.random.default_rng(4).permutation(250)
results = []
for mode, momentum in ((nb._STEP_SGD, 0.0), (nb._STEP_GENERAL, 0.9)):
    for members in (0, 1, 2):
        t = d['theta'].copy(); v = np.full_like(t, 0.01)
        G = t[:0] if mode == nb._STEP_SGD else np.empty_like(t)
        w = nb._SplitScratch(t, d['sizes'], 10)
        args = (t, d['sizes'], 0, 0, d['X'].reshape(-1), d['y'], order, 0, 250, 10, mode, 0.5, momentum, v, 0.0, G,
                *w.args())
        if members == 0:
            c, k = nb._split_batches(*args, 0.0, 0)
        elif members == 1:  # the leader alone, then a helper
            team = np.zeros(nb._TEAM_WORDS, dtype=np.int64)
            eta, mom, l2 = t.dtype.type(0.5), t.dtype.type(momentum), t.dtype.type(0.0)
            c, k = nb._split_lead(team, t, d['sizes'], 0, 0, d['X'].reshape(-1), d['y'], order, 0, 250, 250, 10, mode,
                                  eta, mom, v, l2, G, *w.args(), True, 0.0, 0)
            team[nb._T_OVER] = 1
            nb._parts_help(team, t, d['sizes'], d['X'].reshape(-1), d['y'], order, 250, 10, mode, eta, mom, v, l2, G,
                           w.z, w.nzi, w.n_nz, w.bias, w.deltas, 1)
        else:
            c, k = nb._split_team_batches(*args, members)
        results.append(np.concatenate([t, v, [c, k]]))
np.save(sys.argv[2], np.array(results))
"""
    results = numba_script_result(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    sgd_serial, sgd_alone, sgd_team, momentum_serial, momentum_alone, momentum_team = results
    assert np.array_equal(sgd_alone, sgd_serial)
    assert np.array_equal(sgd_team, sgd_serial)
    assert np.array_equal(momentum_alone, momentum_serial)
    assert np.array_equal(momentum_team, momentum_serial)
    assert not np.array_equal(sgd_serial[: theta.size], theta)  # the epoch took its steps


def test_numba_team_kept_over_chunks_gives_one_calls_result(tmp_path) -> None:  # noqa: ANN001
    """train_epoch keeps one team for the epoch, its leader back in Python after each chunk of rows while the helper
    waits: the leader's phases go on from one call to the next (the split's forward passes of the next chunk's
    first mini-batch are the last phase of the call before), with the result of serial calls over the same chunks,
    whether the helper runs along or starts only after the leader's last call, and with calls in which the leader
    works alone (as it does on a busy host) between calls with the team, while the helper naps in between (a hang
    fails by the subprocess's timeout)."""
    from helpers import require_backend

    require_backend("numba")
    theta, sizes, X, y = problem(WIDE, 0, seed=43, rows=250)
    code = """
import sys, time, numpy as np
from fastgd.backends import _numba as nb
d = np.load(sys.argv[1])
order = np.random.default_rng(5).permutation(250)
X = d['X'].reshape(-1)
results = []
for batch in (10, 70):  # the split first layer; slices
    for way in ('serial', 'team', 'alone', 'mixed'):
        t = d['theta'].copy()
        if batch == 10:
            w = nb._SplitScratch(t, d['sizes'], batch)
            args = (t, d['sizes'], 0, 0, X, d['y'], order, 0, 250, batch, nb._STEP_SGD, 0.5, 0.0, t[:0], 0.0, t[:0],
                    *w.args())
        else:
            w = nb._SliceScratch(t, d['sizes'], batch)
            args = (t, d['sizes'], 0, 0, X, d['y'], order, 0, 250, batch, 0.5, 0.0, t[:0], 0.0, w.G, w.acts, w.deltas,
                    w.identity)
        if way == 'serial':  # over the same chunks, their costs summed in order (as train_epoch on one thread)
            c = k = 0
            for lo in range(0, 250, 3 * batch):
                serial = nb._split_batches if batch == 10 else nb._sliced_batches
                ck = serial(*args[:7], lo, min(lo + 3 * batch, 250), *args[9:], 0.0, 0)
                c, k = c + ck[0], k + ck[1]
        elif way == 'team':
            c, k = (nb._split_team_batches if batch == 10 else nb._team_batches)(*args, 2, 3 * batch)
        elif way == 'mixed':  # windows of a mini-batch, alone and with the team in turn, the helper napping between
            nb._WORK_PER_WINDOW = 1
            class Turns:
                alone, span = True, 1
                def record(self, rows, seconds, cpu, held_up):
                    self.alone = not self.alone
                    time.sleep(0.002)  # the helper's naps: longer than its tries before one
            original = nb._team_choice
            nb._team_choice = lambda key: Turns()
            try:
                c, k = (nb._split_team_batches if batch == 10 else nb._team_batches)(*args, 2, 3 * batch)
            finally:
                nb._team_choice = original
        else:  # the leader's calls alone, then a helper
            team = np.zeros(nb._TEAM_WORDS, dtype=np.int64)
            eta, zero = t.dtype.type(0.5), t.dtype.type(0.0)
            c = k = 0
            for lo in range(0, 250, 3 * batch):
                hi = min(lo + 3 * batch, 250)
                if batch == 10:
                    ck = nb._split_lead(team, t, d['sizes'], 0, 0, X, d['y'], order, lo, hi, 250, batch, nb._STEP_SGD,
                                        eta, zero, t[:0], zero, t[:0], *w.args(), lo == 0, 0.0, 0)
                else:
                    ck = nb._team_lead(team, t, d['sizes'], 0, 0, X, d['y'], order, lo, hi, batch, eta, zero, t[:0],
                                       zero, w.G, w.acts, w.deltas, w.identity, np.zeros(nb._SLICES),
                                       np.zeros(nb._SLICES, dtype=np.int64), 0.0, 0)
                c, k = c + ck[0], k + ck[1]
            team[nb._T_OVER] = 1
            if batch == 10:
                nb._parts_help(team, t, d['sizes'], X, d['y'], order, 250, batch, nb._STEP_SGD, eta, zero, t[:0], zero,
                               t[:0], w.z, w.nzi, w.n_nz, w.bias, w.deltas, 1)
            else:
                nb._team_help(team, t, d['sizes'], 0, 0, X, d['y'], order, eta, zero, t[:0], zero, w.G, w.acts,
                              w.deltas, w.identity, np.zeros(nb._SLICES), np.zeros(nb._SLICES, dtype=np.int64), 1)
        results.append(np.append(t, [c, k]))
np.save(sys.argv[2], np.array(results))
"""
    results = numba_script_result(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    split_serial, split_team, split_alone, split_mixed, sliced_serial, sliced_team, sliced_alone, sliced_mixed = results
    assert np.array_equal(split_team, split_serial)
    assert np.array_equal(split_alone, split_serial)
    assert np.array_equal(split_mixed, split_serial)
    assert np.array_equal(sliced_team, sliced_serial)
    assert np.array_equal(sliced_alone, sliced_serial)
    assert np.array_equal(sliced_mixed, sliced_serial)
    assert not np.array_equal(split_serial[: theta.size], theta)  # the epoch took its steps
    assert not np.array_equal(sliced_serial[: theta.size], theta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("n_out", [5, 10, 20])
def test_numba_output_counts_the_first_largest_output(dtype: type, n_out: int) -> None:
    """The rows classified correctly: a row's answer is its first largest output (one vector per row: 5 and 10
    float32 outputs, 5 float64; lane by lane otherwise); a NaN output is never the largest, and a NaN first
    output stays the answer."""
    from helpers import require_backend

    require_backend("numba")
    from fastgd.backends import _numba

    rng = np.random.default_rng(43)
    rows = []
    for case in range(8):
        z = rng.permutation(np.linspace(-2.0, 2.0, n_out))  # distinct, and distinct after the sigmoid
        if case == 1:
            z[[1, n_out - 2]] = 3.0  # a tie: the first wins
        elif case == 2:
            z[0] = np.nan
        elif case == 3:
            z[n_out // 2] = np.nan
        elif case == 4:
            z[:] = np.nan
        elif case == 5:
            z[n_out - 1] = 3.0
        elif case == 6:
            z[0] = 3.0
        rows.append(z)
    Z = np.array(rows, dtype=dtype)
    A = 1.0 / (1.0 + np.exp(-Z.astype(np.float64)))

    def first_largest(row: np.ndarray) -> int:
        best = 0
        for j in range(1, row.size):
            if row[j] > row[best]:
                best = j
        return best

    answers = np.array([first_largest(row) for row in A], dtype=np.int64)
    assert list(answers[[1, 2, 4, 5, 6]]) == [1, 0, 0, n_out - 1, 0]
    m = len(rows)
    identity = np.arange(m, dtype=np.int64)
    for labels, want in ((answers, m), ((answers + 1) % n_out, 0)):
        a = Z.ravel().copy()
        _, correct = _numba._output(a, 0, m, n_out, 0, labels, identity, 0, True)
        assert correct == want, labels


def test_numba_long_forward_passes_do_not_depend_on_the_thread_count(tmp_path) -> None:  # noqa: ANN001
    """Numba runs forward passes over 2,048 rows or more in four fixed runs on its threads: the reference's
    outputs and cost, and one result for any NUMBA_NUM_THREADS."""
    from helpers import require_backend

    require_backend("numba")
    from fastgd.backends import _numba

    theta, sizes, X, y = problem(SHAPES[3], 0, seed=17, rows=3001)
    A = _numba.forward(theta, sizes, 0, 0, X)
    assert rel_err(A, reference.forward(theta, sizes, 0, 0, X)) <= RTOL64
    c, c_ref = _numba.cost(theta, sizes, 0, 0, X, y), reference.cost(theta, sizes, 0, 0, X, y)
    assert abs(c - c_ref) <= RTOL64 * abs(c_ref)
    np.testing.assert_array_equal(_numba.predict(theta, sizes, 0, 0, X), reference.predict(theta, sizes, 0, 0, X))
    code = (
        "a = nb.forward(d['theta'], d['sizes'], 0, 0, d['X']);"
        "c = nb.cost(d['theta'], d['sizes'], 0, 0, d['X'], d['y']);"
        "np.save(sys.argv[2], np.append(a.ravel(), c))"
    )
    results = numba_results_per_thread_count(tmp_path, dict(theta=theta, sizes=sizes, X=X, y=y), code)
    assert np.array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0][:-1].reshape(A.shape), A)
