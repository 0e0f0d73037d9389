"""The Network API: parameters and their views, evaluation, fit, and the errors it raises."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from helpers import RTOL64, rel_err

import fastgd
from fastgd import DataError, DivergenceError, Network, backends
from fastgd.optim import DEFAULT, SGD, Optimizer


def toy(n: int = 200, n_in: int = 8, n_classes: int = 3, seed: int = 0):  # noqa: ANN201
    """A linearly separable-ish toy problem: the class is the argmax of a fixed projection."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, n_in))
    P = rng.standard_normal((n_in, n_classes))
    y = np.argmax((X - 0.5) @ P, axis=1)
    return X, y


def test_defaults_and_views() -> None:
    net = Network()
    assert net.sizes == (784, 16, 16, 10)
    assert net.n_params == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 == 13002
    assert net.theta.dtype == np.float32 and net.theta.flags.c_contiguous
    assert [w.shape for w in net.weights] == [(16, 784), (16, 16), (10, 16)]
    assert [b.shape for b in net.biases] == [(16,), (16,), (10,)]
    # views: writing through them changes theta, and the reverse
    net.weights[1][3, 5] = 42.0
    net.biases[2][7] = -1.5
    assert 42.0 in net.theta and -1.5 in net.theta
    net.theta[:] = 0
    assert not net.weights[0].any()


def test_book_choices_and_init_statistics() -> None:
    book = Network([784, 100, 10], activation="sigmoid", cost="quadratic", init="normal", seed=3, dtype="float64")
    w = book.weights[0]
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01  # N(0, 1)
    scaled = Network([784, 100, 10], init="scaled", seed=3, dtype="float64")
    w = scaled.weights[0]
    assert abs(w.std() * np.sqrt(784) - 1.0) < 0.01  # N(0, 1/fan_in)
    assert abs(scaled.biases[0].std() - 1.0) < 0.3  # biases N(0, 1)


@pytest.mark.parametrize("init", ["normal", "scaled"])
def test_same_seed_same_parameters_on_every_backend(backend, init: str) -> None:  # noqa: ANN001
    a = Network([7, 5, 3], init=init, seed=11, backend=backend.NAME, dtype="float64")
    b = Network([7, 5, 3], init=init, seed=11, backend="numpy", dtype="float64")
    c = Network([7, 5, 3], init=init, seed=12, backend=backend.NAME, dtype="float64")
    assert np.array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)
    f32 = Network([7, 5, 3], init=init, seed=11, backend=backend.NAME)
    assert np.array_equal(f32.theta, a.theta.astype(np.float32))


def test_evaluation_methods_agree(backend) -> None:  # noqa: ANN001
    X, y = toy()
    net = Network([8, 6, 3], backend=backend.NAME, dtype="float64", seed=1)
    A = net.forward(X)
    assert A.shape == (200, 3) and A.dtype == np.float64
    assert np.array_equal(net.predict(X), np.argmax(A, axis=1))
    assert net.score(X, y) == pytest.approx(np.mean(np.argmax(A, axis=1) == y))
    ref = Network([8, 6, 3], backend="numpy", dtype="float64", seed=1)
    assert rel_err(A, ref.forward(X)) <= RTOL64
    assert net.cost(X, y) == pytest.approx(ref.cost(X, y), rel=RTOL64)
    dW, db = net.gradient(X, y)
    rW, rb = ref.gradient(X, y)
    assert [w.shape for w in dW] == [(6, 8), (3, 6)] and [b.shape for b in db] == [(6,), (3,)]
    for a, b in zip(dW + db, rW + rb):
        assert rel_err(a, b) <= RTOL64


def test_gradient_views_match_flat_layout() -> None:
    X, y = toy(20)
    net = Network([8, 6, 3], dtype="float64", backend="numpy")
    flat = net.flat_gradient(X, y)
    dW, db = net.gradient(X, y)
    # perturb one weight (j=2, i=5) of layer 0 and compare the finite difference with dW[0][2, 5]
    h = 1e-6
    net.weights[0][2, 5] += h
    up = net.cost(X, y)
    net.weights[0][2, 5] -= 2 * h
    down = net.cost(X, y)
    assert (up - down) / (2 * h) == pytest.approx(dW[0][2, 5], rel=1e-6)
    assert flat.shape == net.theta.shape


def test_fit_learns_and_records_history(backend) -> None:  # noqa: ANN001
    X, y = toy(600)
    net = Network([8, 12, 3], backend=backend.NAME, seed=2)
    before = net.score(X, y)
    hist = net.fit(X[:500], y[:500], epochs=15, batch_size=10, validation_data=(X[500:], y[500:]))
    assert len(hist) == 15 and hist.epoch == list(range(1, 16))
    assert net.score(X[500:], y[500:]) > max(0.8, before + 0.2)
    assert hist.train_cost[-1] < hist.train_cost[0]
    assert all(s > 0 for s in hist.seconds)
    assert hist.val_accuracy[-1] == pytest.approx(net.score(X[500:], y[500:]))
    # a second fit goes on counting epochs in net.history
    net.fit(X[:500], y[:500], epochs=2)
    assert net.history.epoch == list(range(1, 18))
    assert np.isnan(net.history.val_cost[-1])


def test_book_sgd_is_plain_sgd(reference) -> None:  # noqa: ANN001
    """optimizer="sgd": theta -= eta * batch gradient, constant eta, per-epoch permutation from seed."""
    X, y = toy(40)
    net = Network([8, 5, 3], activation="sigmoid", cost="quadratic", init="normal", dtype="float64", backend="numpy")
    theta = net.theta.copy()
    hist = net.fit(X, y, epochs=2, batch_size=8, eta=0.7, optimizer="sgd", seed=5)
    assert hist.eta == [0.7, 0.7]
    rng = np.random.default_rng(5)
    sizes = np.array(net.sizes, dtype=np.int64)
    for _ in range(2):
        order = rng.permutation(40)
        for k in range(0, 40, 8):
            rows = order[k : k + 8]
            g = np.empty_like(theta)
            reference.grad(theta, sizes, 0, 0, X[rows], y[rows].astype(np.int64), g)
            theta -= 0.7 * g
    assert rel_err(net.theta, theta) <= 1e-12
    assert SGD.eta == 3.0 and SGD.momentum == 0 and SGD.l2 == 0 and SGD.schedule == "constant"


def test_fit_is_deterministic_and_backends_agree(backend) -> None:  # noqa: ANN001
    X, y = toy(300)
    runs = []
    for name in (backend.NAME, backend.NAME, "numpy"):
        net = Network([8, 10, 3], dtype="float64", backend=name, seed=4)
        net.fit(X, y, epochs=3, batch_size=7, seed=9)
        runs.append(net.theta.copy())
    assert np.array_equal(runs[0], runs[1])
    assert rel_err(runs[0], runs[2]) <= 1e-9


def test_default_optimizer_schedule() -> None:
    assert DEFAULT.eta_at(0, 30) == pytest.approx(DEFAULT.eta)
    etas = [DEFAULT.eta_at(e, 30) for e in range(30)]
    assert all(a >= b for a, b in zip(etas, etas[1:]))
    with pytest.raises(ValueError, match="momentum"):
        Optimizer(eta=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="schedule"):
        Optimizer(eta=0.1, schedule="exponential")


def test_eta_zero_changes_nothing(backend) -> None:  # noqa: ANN001
    X, y = toy(50)
    net = Network([8, 4, 3], backend=backend.NAME)
    theta = net.theta.copy()
    net.fit(X, y, epochs=2, eta=0.0, optimizer="sgd")
    assert np.array_equal(net.theta, theta)


def test_divergence_is_reported_and_parameters_kept() -> None:
    X, y = toy(100)
    X = X * 50
    net = Network([8, 30, 3], activation="relu", cost="log-likelihood", dtype="float32")
    with pytest.raises(DivergenceError, match="smaller learning rate") as info:
        net.fit(X, y, epochs=20, eta=1e30, optimizer="sgd")
    assert np.isfinite(net.theta).all()
    assert isinstance(info.value, FloatingPointError)


def test_one_network_cannot_be_fitted_from_two_threads() -> None:
    X, y = toy(20000, n_in=50)
    net = Network([50, 64, 3], backend="numpy")
    errors: list[BaseException] = []
    started = threading.Event()

    def cb(net, hist):  # noqa: ANN001, ANN202
        started.set()

    def first() -> None:
        net.fit(X, y, epochs=3, batch_size=50, callback=cb)

    t = threading.Thread(target=first)
    t.start()
    started.wait(60)
    try:
        net.fit(X, y, epochs=1)
    except RuntimeError as exc:
        errors.append(exc)
    t.join()
    assert errors and "another thread" in str(errors[0])


BAD_INPUTS = [
    # (description, call, exception type, message fragment)
    ("X of ints", lambda net, X, y: net.predict((X * 255).astype(np.uint8)), TypeError, "scaled"),
    ("X of float16", lambda net, X, y: net.predict(X.astype(np.float16)), TypeError, "float16"),
    ("X of objects", lambda net, X, y: net.predict(X.astype(object)), TypeError, "object"),
    ("X 1-D", lambda net, X, y: net.predict(X[0]), DataError, "2-dimensional"),
    ("X wrong width", lambda net, X, y: net.predict(X[:, :5]), DataError, "takes 8 inputs"),
    ("X empty", lambda net, X, y: net.predict(X[:0]), DataError, "no rows"),
    ("X with NaN", lambda net, X, y: net.predict(np.where(X > 0.99, np.nan, X)), DataError, "non-finite"),
    ("X with inf", lambda net, X, y: net.cost(np.where(X > 0.99, np.inf, X), y), DataError, "non-finite"),
    ("fit X with NaN", lambda net, X, y: net.fit(np.where(X > 0.99, np.nan, X), y), DataError, "X holds a non-finite"),
    ("fit X with inf", lambda net, X, y: net.fit(np.where(X > 0.99, -np.inf, X), y, optimizer="sgd"), DataError,
     "X holds a non-finite"),
    ("y of floats", lambda net, X, y: net.cost(X, y.astype(float)), TypeError, "integer"),
    ("y of bools", lambda net, X, y: net.cost(X, y > 0), TypeError, "integer"),
    ("y too short", lambda net, X, y: net.cost(X, y[:-1]), DataError, "labels but there are"),
    ("label out of range", lambda net, X, y: net.fit(X, np.where(y == 0, 3, y)), DataError, "not a class label"),
    ("negative label", lambda net, X, y: net.gradient(X, np.where(y == 0, -1, y)), DataError, "not a class label"),
    ("batch size 0", lambda net, X, y: net.fit(X, y, batch_size=0), ValueError, "batch_size"),
    ("batch size > n", lambda net, X, y: net.fit(X, y, batch_size=1000), ValueError, "larger than"),
    ("epochs -1", lambda net, X, y: net.fit(X, y, epochs=-1), ValueError, "epochs"),
    ("eta NaN", lambda net, X, y: net.fit(X, y, eta=float("nan")), ValueError, "eta"),
    ("eta negative", lambda net, X, y: net.fit(X, y, eta=-1.0), ValueError, "eta"),
    ("unknown optimizer", lambda net, X, y: net.fit(X, y, optimizer="adam"), ValueError, "optimizer"),
    ("bad validation", lambda net, X, y: net.fit(X, y, validation_data=X), ValueError, "validation_data"),
    ("validation NaN", lambda net, X, y: net.fit(X, y, validation_data=(X * np.nan, y)), DataError, "validation X"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(backend, case) -> None:  # noqa: ANN001
    _, call, exc_type, fragment = case
    X, y = toy(60)
    net = Network([8, 4, 3], backend=backend.NAME)
    theta = net.theta.copy()
    with pytest.raises(exc_type, match=fragment):
        call(net, X, y)
    assert np.array_equal(net.theta, theta)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sizes": [784]}, "at least 2"),
        ({"sizes": [784, 0, 10]}, "at least 1"),
        ({"sizes": [784, 16.5, 10]}, "integer"),
        ({"sizes": [784, 16, 1]}, "at least 2 units"),
        ({"activation": "softsign"}, "activation"),
        ({"cost": "hinge"}, "cost"),
        ({"init": "xavier"}, "init"),
        ({"dtype": "float16"}, "float32"),
        ({"seed": -1}, "seed"),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, fragment: str) -> None:
    with pytest.raises((ValueError, TypeError), match=fragment):
        Network(**kwargs)


def test_accepts_float64_fortran_and_strided_inputs() -> None:
    X, y = toy(30)
    net = Network([8, 4, 3])
    expected = net.forward(np.ascontiguousarray(X, dtype=np.float32))
    for variant in (X, np.asfortranarray(X), np.repeat(X, 2, axis=1)[:, ::2], X.tolist()):
        assert np.array_equal(net.forward(variant), expected)


def test_copy_is_independent() -> None:
    net = Network([8, 4, 3])
    twin = net.copy()
    twin.theta[:] = 0
    assert net.theta.any()
    assert repr(twin) == repr(net)


def test_backend_attribute_and_export() -> None:
    assert fastgd.BACKEND in fastgd.backends.NAMES
    net = Network([8, 4, 3], backend="numpy")
    assert net.backend == "numpy"
    net.set_backend("auto")
    assert net.backend == fastgd.backends.default_name()


def test_training_accuracy_is_counted_in_the_epoch(backend) -> None:  # noqa: ANN001
    """With eta = 0 the parameters never move, so the epoch's count equals a fresh evaluation."""
    X, y = np.random.default_rng(3).random((120, 12)), np.random.default_rng(4).integers(0, 3, 120)
    net = Network([12, 6, 3], dtype="float64", backend=backend.NAME, seed=2)
    history = net.fit(X, y, epochs=2, batch_size=7, eta=0.0, optimizer="sgd")
    assert history.train_accuracy == [net.score(X, y)] * 2
    history = net.fit(X, y, epochs=3, batch_size=7, eta=0.5, optimizer="sgd")
    assert all(0.0 <= a <= 1.0 for a in history.train_accuracy)
    assert history.train_accuracy[-1] > history.train_accuracy[0]


# --------------------------------------------------------------------------------------------
# Non-finite inputs found by the compiled kernels on the way (no separate pass over X)

COMPILED = ["cpp", "numba"]


@pytest.mark.parametrize("rows", [5, 3000])  # one block, and four slices of blocks on threads
@pytest.mark.parametrize("where", [(0, 0), (-1, 783), (-1, 500)])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_kernels_report_nonfinite_inputs(
    name: str, where: tuple[int, int], value: float, rows: int, dtype: str
) -> None:
    from helpers import require_backend

    require_backend(name)
    kernels = backends.load(name)
    assert kernels.FINDS_NONFINITE_INPUT

    net = Network(seed=1, dtype=dtype, backend=name)
    X = np.random.default_rng(0).random((rows, 784)).astype(dtype)
    X[where] = value
    y = np.zeros(rows, dtype=np.int64)
    args = (net.theta, net._sizes_arr, net._act_code, net._cost_code, X)
    for fn in (kernels.forward, kernels.predict):
        with pytest.raises(DataError, match="first layer is not finite"):
            fn(*args)
    with pytest.raises(DataError, match="first layer is not finite"):
        kernels.cost(*args, y)
    r, c = where[0] % rows, where[1]
    message = rf"X holds a non-finite value \({value}\) at row {r}, column {c}"
    for call in (net.forward, net.predict, lambda X: net.score(X, y), lambda X: net.cost(X, y)):
        with pytest.raises(DataError, match=message):
            call(X)


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_nonfinite_weights_or_overflow_give_the_reference_results(name: str) -> None:
    """With finite X, a non-finite first-layer sum comes from theta or from overflow: the result
    is then the NumPy reference's, as on the other backends."""
    from helpers import require_backend

    require_backend(name)
    X = np.random.default_rng(1).random((40, 784)).astype(np.float32)
    y = np.arange(40) % 10
    net = Network(seed=2, backend=name, activation="sigmoid", cost="quadratic")
    ref = net.copy()
    ref.set_backend("numpy")
    net.theta[5] = np.nan  # a first-layer weight: every row's sum for that unit is NaN
    ref.theta[5] = np.nan
    np.testing.assert_array_equal(net.forward(X), ref.forward(X))
    np.testing.assert_array_equal(net.predict(X), ref.predict(X))
    assert math.isnan(net.cost(X, y)) and math.isnan(ref.cost(X, y))

    big = Network(seed=2, backend=name, activation="sigmoid", cost="quadratic")
    Xbig = np.full((3, 784), 3e38, dtype=np.float32)  # finite, but some first-layer sums overflow
    with pytest.raises(DataError, match="first layer is not finite"):
        backends.load(name).forward(big.theta, big._sizes_arr, big._act_code, big._cost_code, Xbig)
    big_ref = big.copy()
    big_ref.set_backend("numpy")
    np.testing.assert_array_equal(big.predict(Xbig), big_ref.predict(Xbig))
    np.testing.assert_array_equal(big.forward(Xbig), big_ref.forward(Xbig))


def test_cpp_float64_beyond_float32_range_is_named() -> None:
    from helpers import require_backend

    require_backend("cpp")
    net = Network(seed=0, backend="cpp")
    X = np.zeros((4, 784))
    X[2, 9] = 1e300
    with pytest.raises(DataError, match=r"X holds 1e\+300 at row 2, column 9, beyond the range of float32"):
        net.predict(X)
