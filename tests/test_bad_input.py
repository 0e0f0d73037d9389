"""Bad input never crashes or corrupts: every public function and every binding, table-driven.

Each case lists the exception type and a regular expression its message must match; the
expressions name the argument. The public API converts what is merely in another layout
(Fortran order, a strided view, the other float type, a list) and rejects anything that would
need a guess; the compiled bindings (``fastgd._core``) convert nothing and reject all of it. After
every rejected call the network's parameters must be unchanged.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import param_count, require_backend

import fastgd
from fastgd import DataError, IDXFormatError, Network
from fastgd.optim import Optimizer

SIZES = [8, 4, 3]
N = 60


def KNOWN_BUG(reason: str) -> pytest.MarkDecorator:  # noqa: N802
    """A case fastgd gets wrong today: it must fail (strict), and passes once fixed, to be unmarked."""
    return pytest.mark.xfail(strict=True, reason=reason)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((N, 8)), rng.integers(0, 3, N)


def with_value(X: np.ndarray, value: float, row: int = 7, col: int = 3) -> np.ndarray:
    X = X.copy()
    X[row, col] = value
    return X


def label_at(y: np.ndarray, value: int, k: int = 5, dtype: Any = None) -> np.ndarray:
    y = y.astype(dtype or y.dtype)
    y[k] = value
    return y


def readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


# ------------------------------------------------------------------------------------------------
# The public functions taking X (and y). "{X}" and "{y}" in a pattern stand for the argument's
# name in the message ("validation X" when it came in validation_data).

X_CALLS: dict[str, tuple[Callable[..., Any], str, str]] = {
    # name: (call(net, X, y), name of X in messages, name of y)
    "forward": (lambda net, X, y: net.forward(X), "X", "y"),
    "predict": (lambda net, X, y: net.predict(X), "X", "y"),
    "score": (lambda net, X, y: net.score(X, y), "X", "y"),
    "cost": (lambda net, X, y: net.cost(X, y), "X", "y"),
    "gradient": (lambda net, X, y: net.gradient(X, y), "X", "y"),
    "flat_gradient": (lambda net, X, y: net.flat_gradient(X, y), "X", "y"),
    "fit": (lambda net, X, y: net.fit(X, y, epochs=1, batch_size=1), "X", "y"),
    "fit validation_data": (lambda net, X, y: net.fit(*data(), epochs=1, validation_data=(X, y)),
                            "validation X", "validation y"),  # fmt: skip
    "gradcheck": (lambda net, X, y: fastgd.gradcheck(net, X, y, max_params=3), "X", "y"),
}
Y_CALLS = {k: v for k, v in X_CALLS.items() if k not in ("forward", "predict")}

BAD_X: list[tuple[str, Callable[[np.ndarray], Any], type[Exception], str]] = [
    ("int64", lambda X: (X * 255).astype(np.int64), TypeError,
     r"{X} must hold float32 or float64 values, got dtype int64 \(integer pixels must be scaled"),
    ("uint8", lambda X: (X * 255).astype(np.uint8), TypeError, r"{X} must hold float32 or float64 .* dtype uint8"),
    ("float16", lambda X: X.astype(np.float16), TypeError, r"{X} must hold float32 or float64 .* dtype float16"),
    ("longdouble", lambda X: X.astype(np.longdouble), TypeError, r"{X} must hold float32 or float64 values"),
    ("object", lambda X: X.astype(object), TypeError, r"{X} must hold float32 or float64 values, got dtype object"),
    ("complex", lambda X: X.astype(complex), TypeError, r"{X} must hold float32 or float64 .* dtype complex128"),
    ("bool", lambda X: X > 0.5, TypeError, r"{X} must hold float32 or float64 values, got dtype bool"),
    ("strings", lambda X: X.astype(str), TypeError, r"{X} must hold float32 or float64 values, got dtype <U"),
    ("None", lambda X: None, TypeError, r"{X} must hold float32 or float64 values, got dtype object"),
    ("ragged list", lambda X: [[0.5] * 8, [0.5] * 7], DataError, r"{X} cannot be read as an array"),
    ("scalar", lambda X: 0.5, DataError, r"{X} must be a 2-dimensional array \(rows, 8\), got shape \(\)"),
    ("1-D", lambda X: X[0], DataError, r"{X} must be a 2-dimensional array \(rows, 8\), got shape \(8,\)"),
    ("3-D", lambda X: X.reshape(N, 2, 4), DataError, r"{X} must be a 2-dimensional array .* got shape \(60, 2, 4\)"),
    ("too narrow", lambda X: X[:, :5], DataError, r"{X} has shape \(60, 5\) but the network takes 8 inputs per row"),
    ("too wide", lambda X: np.hstack([X, X]), DataError, r"{X} has shape \(60, 16\) but the network takes 8 inputs"),
    ("no rows", lambda X: X[:0], DataError, r"{X} has no rows"),
    ("no columns", lambda X: X[:, :0], DataError, r"{X} has shape \(60, 0\)"),
    ("NaN", lambda X: with_value(X, np.nan), DataError, r"{X} holds a non-finite value \(nan\) at row 7, column 3"),
    ("+inf", lambda X: with_value(X, np.inf), DataError, r"{X} holds a non-finite value \(inf\) at row 7, column 3"),
    ("-inf float32", lambda X: with_value(X.astype(np.float32), -np.inf, 59, 0), DataError,
     r"{X} holds a non-finite value \(-inf\) at row 59, column 0"),
]  # fmt: skip

BAD_Y: list[tuple[str, Callable[[np.ndarray], Any], type[Exception], str]] = [
    ("float", lambda y: y.astype(np.float64), TypeError, r"{y} must hold integer class labels, got dtype float64"),
    ("float32 NaN", lambda y: np.full(N, np.nan, np.float32), TypeError, r"{y} must hold integer .* dtype float32"),
    ("bool", lambda y: y > 0, TypeError, r"{y} must hold integer class labels, got dtype bool"),
    ("object", lambda y: y.astype(object), TypeError, r"{y} must hold integer class labels, got dtype object"),
    ("complex", lambda y: y.astype(complex), TypeError, r"{y} must hold integer class labels, got dtype complex128"),
    ("strings", lambda y: y.astype(str), TypeError, r"{y} must hold integer class labels, got dtype <U"),
    ("None", lambda y: None, TypeError, r"{y} must hold integer class labels, got dtype object"),
    ("ragged list", lambda y: [[0, 1], [2]], DataError, r"{y} cannot be read as an array"),
    ("scalar", lambda y: 1, DataError, r"{y} must be 1-dimensional, got shape \(\)"),
    ("2-D", lambda y: y.reshape(N, 1), DataError, r"{y} must be 1-dimensional, got shape \(60, 1\)"),
    ("one-hot", lambda y: np.eye(3, dtype=np.int64)[y], DataError, r"{y} must be 1-dimensional, got shape \(60, 3\)"),
    ("too short", lambda y: y[:-1], DataError, r"{y} has 59 labels but there are 60 rows"),
    ("too long", lambda y: np.append(y, 0), DataError, r"{y} has 61 labels but there are 60 rows"),
    ("empty", lambda y: y[:0], DataError, r"{y} has 0 labels but there are 60 rows"),
    ("label = classes", lambda y: label_at(y, 3), DataError, r"{y}\[5\] = 3 is not a class label in \[0, 3\)"),
    ("negative label", lambda y: label_at(y, -1), DataError, r"{y}\[5\] = -1 is not a class label in \[0, 3\)"),
    ("negative int8", lambda y: label_at(y, -128, 0, np.int8), DataError, r"{y}\[0\] = -128 is not a class label"),
    ("huge uint64", lambda y: label_at(y, 2**64 - 1, 59, np.uint64), DataError,
     r"{y}\[59\] = 18446744073709551615 is not a class label"),
]  # fmt: skip


def check_rejected(net: Network, call: Callable[[], Any], exc: type[Exception], pattern: str) -> None:
    theta = net.theta.copy()
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert isinstance(info.value, (fastgd.FastgdError, ValueError, TypeError)), type(info.value)
    assert np.array_equal(net.theta, theta), "a rejected call changed the parameters"
    assert len(net.history) == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", BAD_X, ids=[c[0] for c in BAD_X])
@pytest.mark.parametrize("fn", X_CALLS)
def test_bad_x(backend, fn: str, case, dtype: str) -> None:  # noqa: ANN001
    call, xname, _ = X_CALLS[fn]
    _, make, exc, pattern = case
    X, y = data()
    net = Network(SIZES, backend=backend.NAME, dtype=dtype)
    check_rejected(net, lambda: call(net, make(X), y), exc, pattern.format(X=re.escape(xname)))


@pytest.mark.parametrize("fn", [k for k in X_CALLS if k != "gradcheck"])
def test_float64_beyond_float32_range(backend, fn: str) -> None:  # noqa: ANN001
    """A float32 network refuses float64 inputs that overflow float32; a float64 one takes them."""
    call, xname, _ = X_CALLS[fn]
    X, y = data()
    X = with_value(X, -1e300, 2, 2)
    net = Network(SIZES, backend=backend.NAME)
    pattern = rf"{re.escape(xname)} holds (-1e\+300 at row 2, column 2, beyond the range of float32|a non-finite value)"
    check_rejected(net, lambda: call(net, X, y), DataError, pattern)
    wide = Network(SIZES, backend=backend.NAME, dtype="float64", activation="tanh")
    if fn in ("forward", "predict"):
        assert call(wide, X, y).shape[0] == N


@pytest.mark.parametrize("case", BAD_Y, ids=[c[0] for c in BAD_Y])
@pytest.mark.parametrize("fn", Y_CALLS)
def test_bad_y(backend, fn: str, case) -> None:  # noqa: ANN001
    call, _, yname = Y_CALLS[fn]
    _, make, exc, pattern = case
    X, y = data()
    net = Network(SIZES, backend=backend.NAME)
    check_rejected(net, lambda: call(net, X, make(y)), exc, pattern.format(y=re.escape(yname)))


# ------------------------------------------------------------------------------------------------
# Other arguments of fit, gradcheck, the constructors and the data functions

FIT_ARGS: list[Any] = [
    ("batch_size 0", {"batch_size": 0}, ValueError, r"batch_size must be at least 1, got 0"),
    ("batch_size -3", {"batch_size": -3}, ValueError, r"batch_size must be at least 1, got -3"),
    ("batch_size > n", {"batch_size": N + 1}, ValueError,
     r"batch_size \(61\) is larger than the number of training rows \(60\)"),
    ("batch_size float", {"batch_size": 2.5}, TypeError, r"batch_size must be an integer, got 2.5"),
    ("batch_size bool", {"batch_size": True}, TypeError, r"batch_size must be an integer, got True"),
    ("batch_size None", {"batch_size": None}, TypeError, r"batch_size must be an integer, got None"),
    ("batch_size str", {"batch_size": "10"}, TypeError, r"batch_size must be an integer, got '10'"),
    ("epochs -1", {"epochs": -1}, ValueError, r"epochs must be at least 0, got -1"),
    ("epochs float", {"epochs": 1.5}, TypeError, r"epochs must be an integer, got 1.5"),
    ("eta NaN", {"eta": float("nan")}, ValueError, r"eta must be a finite number"),
    ("eta inf", {"eta": float("inf")}, ValueError, r"eta must be a finite number"),
    ("eta negative", {"eta": -0.1}, ValueError, r"eta must be a finite number in \[0, inf\], got -0.1"),
    ("eta str", {"eta": "0.1"}, TypeError, r"eta must be a number, got '0.1'"),
    ("eta complex", {"eta": 1j}, TypeError, r"eta must be a number"),
    ("optimizer unknown", {"optimizer": "adam"}, ValueError, r"optimizer must be one of 'sgd', 'default'"),
    ("optimizer not a str", {"optimizer": 3}, ValueError, r"optimizer must be one of"),
    ("validation_data not a pair", {"validation_data": np.zeros((3, 8))}, ValueError,
     r"validation_data must be a pair \(X, y\)"),
    ("validation_data triple", {"validation_data": (1, 2, 3)}, ValueError, r"validation_data must be a pair"),
    ("seed -1", {"seed": -1}, ValueError, r"seed must be a non-negative integer, got -1"),
    ("seed float", {"seed": 1.5}, (TypeError, ValueError), r"seed must be a non-negative integer, got 1.5"),
    ("seed str", {"seed": "a"}, (TypeError, ValueError), r"seed must be a non-negative integer, got 'a'"),
    ("callback not callable", {"callback": 3}, TypeError, r"callback must be callable"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "kwargs", "exc", "pattern"), [c if hasattr(c, "marks") else pytest.param(*c, id=c[0]) for c in FIT_ARGS]
)
def test_bad_fit_arguments(backend, name: str, kwargs: dict, exc, pattern: str) -> None:  # noqa: ANN001
    X, y = data()
    net = Network(SIZES, backend=backend.NAME)
    check_rejected(net, lambda: net.fit(X, y, **{"epochs": 2, **kwargs}), exc, pattern)


GRADCHECK_ARGS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("method", {"method": "forward"}, ValueError, r"method must be one of 'central', 'five-point'"),
    ("h negative", {"h": -1e-5}, ValueError, r"h must be a finite number"),
    ("h zero", {"h": 0.0}, ValueError, r"h and floor must be positive"),
    ("h NaN", {"h": float("nan")}, ValueError, r"h must be a finite number"),
    ("floor inf", {"floor": float("inf")}, ValueError, r"floor must be a finite number"),
    ("max_params 0", {"max_params": 0}, ValueError, r"max_params must be at least 1, got 0"),
    ("max_params float", {"max_params": 2.5}, TypeError, r"max_params must be an integer"),
    ("dtype float16", {"dtype": "float16"}, DataError, r"dtype must be 'float32' or 'float64', got 'float16'"),
]


@pytest.mark.parametrize("case", GRADCHECK_ARGS, ids=[c[0] for c in GRADCHECK_ARGS])
def test_bad_gradcheck_arguments(backend, case) -> None:  # noqa: ANN001
    _, kwargs, exc, pattern = case
    X, y = data()
    net = Network(SIZES, backend=backend.NAME)
    check_rejected(net, lambda: fastgd.gradcheck(net, X[:4], y[:4], **kwargs), exc, pattern)


def test_gradcheck_of_something_else() -> None:
    X, y = data()
    with pytest.raises(TypeError, match=r"net must be a (fastgd\.)?Network"):
        fastgd.gradcheck("net", X, y)  # type: ignore[arg-type]


CONSTRUCTOR_ARGS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("sizes not a sequence", {"sizes": 784}, TypeError, r"sizes must be a sequence of layer widths, got int"),
    ("sizes None", {"sizes": None}, TypeError, r"sizes must be a sequence of layer widths, got NoneType"),
    ("sizes str", {"sizes": "abc"}, TypeError, r"sizes\[0\] must be an integer, got 'a'"),
    ("sizes one layer", {"sizes": [8]}, ValueError, r"sizes must list at least 2 layer widths"),
    ("sizes empty", {"sizes": []}, ValueError, r"sizes must list at least 2 layer widths"),
    ("sizes negative", {"sizes": [8, -1, 3]}, ValueError, r"sizes\[1\] must be at least 1, got -1"),
    ("sizes float", {"sizes": [8, 4.0, 3]}, TypeError, r"sizes\[1\] must be an integer, got 4.0"),
    ("sizes bool", {"sizes": [8, True, 3]}, TypeError, r"sizes\[1\] must be an integer, got True"),
    ("one output", {"sizes": [8, 1]}, ValueError, r"the output layer needs at least 2 units"),
    ("too many parameters", {"sizes": [10**6, 10**6, 10]}, ValueError, r"sizes \[1000000, 1000000, 10\] .*too many"),
    ("activation", {"activation": "softsign"}, ValueError, r"activation must be one of 'sigmoid', 'tanh', 'relu'"),
    ("activation None", {"activation": None}, ValueError, r"activation must be one of"),
    ("cost", {"cost": "hinge"}, ValueError, r"cost must be one of 'quadratic', 'cross-entropy', 'log-likelihood'"),
    ("init", {"init": "xavier"}, ValueError, r"init must be one of 'normal', 'scaled'"),
    ("dtype float16", {"dtype": np.float16}, DataError, r"dtype must be 'float32' or 'float64', got 'float16'"),
    ("dtype int", {"dtype": int}, DataError, r"dtype must be 'float32' or 'float64', got 'int64'"),
    ("dtype complex", {"dtype": "complex128"}, DataError, r"dtype must be 'float32' or 'float64'"),
    ("dtype nonsense", {"dtype": "float33"}, TypeError, r"dtype must be 'float32' or 'float64', got 'float33'"),
    ("seed negative", {"seed": -1}, ValueError, r"seed must be a non-negative integer, got -1"),
    ("seed bool", {"seed": True}, ValueError, r"seed must be a non-negative integer, got True"),
    ("backend", {"backend": "cuda"}, ValueError, r"unknown backend 'cuda'"),
    ("backend not a str", {"backend": 3}, TypeError, r"backend must be a string, got int"),
]  # fmt: skip


@pytest.mark.parametrize("case", CONSTRUCTOR_ARGS, ids=[c[0] for c in CONSTRUCTOR_ARGS])
def test_bad_constructor_arguments(case) -> None:  # noqa: ANN001
    _, kwargs, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        Network(**{"sizes": SIZES, **kwargs})


OPTIMIZER_ARGS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("eta NaN", {"eta": float("nan")}, ValueError, r"eta must be a finite number"),
    ("eta str", {"eta": "1"}, TypeError, r"eta must be a number"),
    ("momentum 1", {"momentum": 1.0}, ValueError, r"momentum must be a finite number in \[0, 1\)"),
    ("momentum negative", {"momentum": -0.5}, ValueError, r"momentum must be a finite number in \[0, 1\)"),
    ("l2 negative", {"l2": -1e-3}, ValueError, r"l2 must be a finite number"),
    ("l2 inf", {"l2": float("inf")}, ValueError, r"l2 must be a finite number"),
    ("final 2", {"final": 2.0}, ValueError, r"final must be a finite number in \[0, 1\]"),
    ("schedule", {"schedule": "step"}, ValueError, r"schedule must be one of 'constant', 'linear', 'cosine'"),
]


@pytest.mark.parametrize("case", OPTIMIZER_ARGS, ids=[c[0] for c in OPTIMIZER_ARGS])
def test_bad_optimizer_arguments(case) -> None:  # noqa: ANN001
    _, kwargs, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        Optimizer(**{"eta": 0.1, **kwargs})


def test_bad_set_backend() -> None:
    net = Network(SIZES)
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'"):
        net.set_backend("gpu")
    assert net.backend == fastgd.BACKEND


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("FASTGD_DATA", raising=False)
    monkeypatch.setenv("FASTGD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _idx_file(folder: Path) -> Path:
    path = folder / "images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 1, 28, 28) + bytes(784))
    return path


DATA_CALLS: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    ("load_mnist split", lambda d: fastgd.load_mnist("validation", data_dir=d), DataError,
     r"split must be 'train' or 'test', got 'validation'"),
    ("load_mnist dtype", lambda d: fastgd.load_mnist("train", data_dir=d, dtype="int8"), DataError,
     r"dtype must be float32 or float64, got 'int8'"),
    ("load_fashion_mnist split", lambda d: fastgd.load_fashion_mnist(3, data_dir=d), DataError, r"split must be"),
    ("load_raw dataset", lambda d: fastgd.load_raw("cifar10", data_dir=d), DataError,
     r"dataset must be 'mnist' or 'fashion-mnist', got 'cifar10'"),
    ("load_mnist missing folder", lambda d: fastgd.load_mnist("test", data_dir=d / "nowhere"),
     fastgd.DatasetNotFoundError, r"nowhere"),
    ("read_idx missing", lambda d: fastgd.read_idx(d / "missing"), FileNotFoundError, r"missing"),
    ("read_idx folder", lambda d: fastgd.read_idx(d), IsADirectoryError, r"Is a directory"),
    ("read_idx image_shape int", lambda d: fastgd.read_idx(_idx_file(d), image_shape=28), TypeError,
     r"image_shape must be None or a pair of integers \(rows, cols\), got 28"),
    ("read_idx image_shape zero", lambda d: fastgd.read_idx(_idx_file(d), image_shape=(28, 0)), DataError,
     r"image_shape must hold positive integers, got \(28, 0\)"),
    ("read_idx num_classes 0", lambda d: fastgd.read_idx(_idx_file(d), num_classes=0), DataError,
     r"num_classes must be from 1 to 256"),
    ("read_idx num_classes float", lambda d: fastgd.read_idx(_idx_file(d), num_classes=10.0), TypeError,
     r"num_classes must be None or an integer, got 10.0"),
    ("read_idx path int", lambda d: fastgd.read_idx(3), TypeError, r"path must be a str or os.PathLike, got int"),
    ("read_idx empty dims too large", lambda d: fastgd.read_idx(_write(d, struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1)),
     image_shape=None), IDXFormatError, r"0 x 4294967295 x 4294967295 images, dimensions too large"),
]  # fmt: skip


def _write(folder: Path, dims: bytes) -> Path:
    path = folder / "forged-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + dims)
    return path


@pytest.mark.parametrize("case", DATA_CALLS, ids=[c[0] for c in DATA_CALLS])
def test_bad_data_arguments(no_env: Path, case) -> None:  # noqa: ANN001
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern) as info:
        call(no_env)
    assert isinstance(info.value, (fastgd.FastgdError, OSError, TypeError))


def test_read_idx_accepts_a_list_as_image_shape(tmp_path: Path) -> None:
    assert fastgd.read_idx(_idx_file(tmp_path), image_shape=[28, 28]).shape == (1, 28, 28)


# ------------------------------------------------------------------------------------------------
# Read-only parameters and other layouts: the public API


def test_read_only_parameters_are_refused_for_training_only(backend, request) -> None:  # noqa: ANN001
    X, y = data()
    net = Network(SIZES, backend=backend.NAME, dtype="float64")
    expected = (net.forward(X), net.cost(X, y), net.flat_gradient(X, y))
    net.theta.flags.writeable = False
    # reading is fine
    assert np.array_equal(net.forward(X), expected[0])
    assert net.cost(X, y) == expected[1]
    assert np.array_equal(net.flat_gradient(X, y), expected[2])
    # training is not
    check_rejected(net, lambda: net.fit(X, y, epochs=1), ValueError, r"theta is read-only")


LAYOUTS: list[tuple[str, Callable[[np.ndarray], Any]]] = [
    ("Fortran order", np.asfortranarray),
    ("strided view", lambda X: np.repeat(X, 2, axis=1)[:, ::2]),
    ("reversed rows", lambda X: X[::-1][::-1]),
    ("read-only", readonly),
    ("float32", lambda X: X.astype(np.float32)),
    ("big-endian", lambda X: X.astype(">f8")),
    ("nested lists", lambda X: X.tolist()),
]
Y_LAYOUTS: list[tuple[str, Callable[[np.ndarray], Any]]] = [
    ("int32", lambda y: y.astype(np.int32)),
    ("uint8", lambda y: y.astype(np.uint8)),
    ("strided", lambda y: np.repeat(y, 2)[::2]),
    ("read-only", readonly),
    ("big-endian", lambda y: y.astype(">i8")),
    ("list", lambda y: y.tolist()),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("layout", "ylayout"), list(zip(LAYOUTS, Y_LAYOUTS + [Y_LAYOUTS[0]])),
                         ids=[f"{a[0]}-{b[0]}" for a, b in zip(LAYOUTS, Y_LAYOUTS + [Y_LAYOUTS[0]])])  # fmt: skip
def test_other_layouts_are_converted(backend, layout, ylayout, dtype: str) -> None:  # noqa: ANN001
    """The public API converts other layouts once: the results equal those of the canonical arrays."""
    X, y = data()
    Xl, yl = layout[1](X), ylayout[1](y)
    Xc = np.ascontiguousarray(np.asarray(Xl, dtype=np.float64), dtype=dtype)  # the same values, canonical
    a = Network(SIZES, backend=backend.NAME, dtype=dtype, seed=3)
    b = Network(SIZES, backend=backend.NAME, dtype=dtype, seed=3)
    assert np.array_equal(a.forward(Xl), b.forward(Xc))
    assert np.array_equal(a.predict(Xl), b.predict(Xc))
    assert a.cost(Xl, yl) == b.cost(Xc, y)
    assert np.array_equal(a.flat_gradient(Xl, yl), b.flat_gradient(Xc, y))
    a.fit(Xl, yl, epochs=2, batch_size=7, seed=1)
    b.fit(Xc, y, epochs=2, batch_size=7, seed=1)
    assert np.array_equal(a.theta, b.theta)


# ------------------------------------------------------------------------------------------------
# The compiled bindings: every function, every array argument, nothing converted


@pytest.fixture(scope="module")
def core():  # noqa: ANN201
    require_backend("cpp")
    from fastgd import _core

    return _core


BSIZES = np.array([6, 5, 3], dtype=np.int64)


def core_args(dtype: Any = np.float32) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(param_count([6, 5, 3])).astype(dtype)
    return dict(
        theta=theta, sizes=BSIZES.copy(), activation=1, cost=2, X=rng.random((8, 6)).astype(dtype),
        y=rng.integers(0, 3, 8).astype(np.int64), out=np.zeros_like(theta), order=rng.permutation(8).astype(np.int64),
        batch_size=3, eta=0.1, momentum=0.5, velocity=np.zeros_like(theta), l2=1e-3,
    )  # fmt: skip


CORE_PARAMS = {
    "forward": ("theta", "sizes", "activation", "cost", "X"),
    "predict": ("theta", "sizes", "activation", "cost", "X"),
    "cost": ("theta", "sizes", "activation", "cost", "X", "y"),
    "grad": ("theta", "sizes", "activation", "cost", "X", "y", "out"),
    "train_epoch": ("theta", "sizes", "activation", "cost", "X", "y", "order", "batch_size", "eta", "momentum",
                    "velocity", "l2"),
}  # fmt: skip

# (argument, description, make(value, args) -> bad value, message pattern); every case applies to
# each binding that takes the argument.
CORE_CASES: list[tuple[str, str, Callable[[Any, dict[str, Any]], Any], str]] = [
    ("theta", "int", lambda v, a: v.astype(np.int32), r"theta must have dtype float32 or float64, got int32"),
    ("theta", "float16", lambda v, a: v.astype(np.float16), r"theta must have dtype float32 or float64, got float16"),
    ("theta", "complex", lambda v, a: v.astype(np.complex64), r"theta must have dtype float32 or float64"),
    ("theta", "object", lambda v, a: v.astype(object), r"theta must have dtype float32 or float64, got object"),
    ("theta", "big-endian", lambda v, a: v.astype(">f4"), r"theta must have dtype float32 or float64"),
    ("theta", "2-D", lambda v, a: v.reshape(1, -1), r"theta must be 1-dimensional, got shape \(1, 53\)"),
    ("theta", "strided", lambda v, a: np.repeat(v, 2)[::2], r"theta must be C-contiguous"),
    ("theta", "short", lambda v, a: v[:-1].copy(), r"theta has 52 elements but sizes describe a network with 53"),
    ("theta", "empty", lambda v, a: v[:0].copy(), r"theta has 0 elements"),
    ("sizes", "float", lambda v, a: v.astype(np.float64), r"sizes must have dtype int64, got float64"),
    ("sizes", "int32", lambda v, a: v.astype(np.int32), r"sizes must have dtype int64, got int32"),
    ("sizes", "one layer", lambda v, a: v[:1].copy(), r"sizes must list at least 2 layer widths, got 1"),
    ("sizes", "zero width", lambda v, a: np.array([6, 0, 3]), r"sizes must be positive, got sizes\[1\] = 0"),
    ("sizes", "huge width", lambda v, a: np.array([6, 2**40, 3]), r"sizes\[1\] = 1099511627776 is too large"),
    ("sizes", "2-D", lambda v, a: v.reshape(1, 3), r"sizes must be 1-dimensional"),
    ("activation", "code 3", lambda v, a: 3, r"activation code must be 0 \(sigmoid\), 1 \(tanh\) or 2 \(relu\), got 3"),
    ("activation", "code -1", lambda v, a: -1, r"activation code must be .* got -1"),
    ("cost", "code 3", lambda v, a: 3, r"cost code must be 0 \(quadratic\), 1 \(cross-entropy\) or 2 .* got 3"),
    ("X", "other float", lambda v, a: v.astype(np.float64), r"X must have dtype float32, got float64"),
    ("X", "int", lambda v, a: (v * 255).astype(np.uint8), r"X must have dtype float32, got uint8"),
    ("X", "Fortran", lambda v, a: np.asfortranarray(v), r"X must be C-contiguous"),
    ("X", "strided", lambda v, a: np.repeat(v, 2, axis=1)[:, ::2], r"X must be C-contiguous"),
    ("X", "1-D", lambda v, a: v[0].copy(), r"X must be 2-dimensional, got shape \(6,\)"),
    ("X", "wrong width", lambda v, a: np.ascontiguousarray(v[:, :5]), r"X has shape \(8, 5\) but the network takes 6"),
    ("X", "no rows", lambda v, a: v[:0].copy(), r"X has no rows"),
    ("y", "int32", lambda v, a: v.astype(np.int32), r"y must have dtype int64, got int32"),
    ("y", "float", lambda v, a: v.astype(np.float64), r"y must have dtype int64, got float64"),
    ("y", "strided", lambda v, a: np.repeat(v, 2)[::2], r"y must be C-contiguous"),
    ("y", "short", lambda v, a: v[:-1].copy(), r"y has 7 labels but X has 8 rows"),
    ("y", "label 3", lambda v, a: label_at(v, 3, 4), r"y\[4\] = 3 is not a class label in \[0, 3\)"),
    ("y", "label -1", lambda v, a: label_at(v, -1, 4), r"y\[4\] = -1 is not a class label"),
    ("out", "other dtype", lambda v, a: v.astype(np.float64), r"out must have dtype float32, got float64"),
    ("out", "short", lambda v, a: v[:-1].copy(), r"out has 52 elements but theta has 53"),
    ("out", "read-only", lambda v, a: readonly(v), r"out is read-only but is written in place"),
    ("out", "strided", lambda v, a: np.repeat(v, 2)[::2], r"out must be C-contiguous"),
    ("out", "theta itself", lambda v, a: a["theta"], r"out must not share memory with theta"),
    ("order", "float", lambda v, a: v.astype(np.float64), r"order must have dtype int64, got float64"),
    ("order", "empty", lambda v, a: v[:0].copy(), r"order is empty"),
    ("order", "row 8", lambda v, a: label_at(v, 8, 2), r"order\[2\] = 8 is not a row of X \(0 <= row < 8\)"),
    ("order", "row -1", lambda v, a: label_at(v, -1, 2), r"order\[2\] = -1 is not a row of X"),
    ("batch_size", "0", lambda v, a: 0, r"batch_size must be at least 1, got 0"),
    ("batch_size", "-1", lambda v, a: -1, r"batch_size must be at least 1, got -1"),
    ("eta", "NaN", lambda v, a: float("nan"), r"eta must be finite"),
    ("eta", "inf", lambda v, a: float("inf"), r"eta must be finite"),
    ("momentum", "1", lambda v, a: 1.0, r"momentum must be in \[0, 1\)"),
    ("momentum", "NaN", lambda v, a: float("nan"), r"momentum must be in \[0, 1\)"),
    ("velocity", "None", lambda v, a: None, r"velocity is required when momentum is not 0"),
    ("velocity", "other dtype", lambda v, a: v.astype(np.float64), r"velocity must have dtype float32"),
    ("velocity", "read-only", lambda v, a: readonly(v), r"velocity is read-only"),
    ("velocity", "theta itself", lambda v, a: a["theta"], r"velocity must not share memory with theta"),
    ("velocity", "overlapping theta", lambda v, a: a["theta"][::-1][::-1], r"velocity must not share memory"),
    ("l2", "negative", lambda v, a: -1.0, r"l2 must be finite and non-negative"),
    ("l2", "NaN", lambda v, a: float("nan"), r"l2 must be finite and non-negative"),
]  # fmt: skip

CORE_TABLE = [(fn, case) for fn, params in CORE_PARAMS.items() for case in CORE_CASES if case[0] in params]


@pytest.mark.parametrize(("fn", "case"), CORE_TABLE, ids=[f"{fn}-{c[0]} {c[1]}" for fn, c in CORE_TABLE])
def test_binding_rejects(core, fn: str, case) -> None:  # noqa: ANN001
    arg, _, make, pattern = case
    args = core_args()
    args[arg] = make(args[arg], args)
    theta, velocity = args["theta"].copy(), core_args()["velocity"]
    with pytest.raises(ValueError, match=f"fastgd._core.{fn}: {pattern}"):
        getattr(core, fn)(*(args[p] for p in CORE_PARAMS[fn]))
    if args["theta"].shape == theta.shape:
        assert np.array_equal(args["theta"], theta), "a rejected call wrote theta"
    v = args["velocity"]
    if isinstance(v, np.ndarray) and v.shape == velocity.shape and not np.shares_memory(v, args["theta"]):
        assert np.array_equal(v, velocity), "a rejected call wrote the velocity"


@pytest.mark.parametrize("fn", ["forward", "predict", "cost", "grad"])
def test_bindings_read_read_only_inputs(core, fn: str) -> None:  # noqa: ANN001
    """Inputs the kernels only read may be read-only; the results are the same."""
    args = core_args(np.float64)
    expected = getattr(core, fn)(*(args[p] for p in CORE_PARAMS[fn]))
    for name in ("theta", "X", "y", "sizes"):
        args[name] = readonly(args[name])
    assert np.array_equal(getattr(core, fn)(*(args[p] for p in CORE_PARAMS[fn])), expected)


def test_binding_argument_types(core) -> None:  # noqa: ANN001
    """Arguments that are no arrays at all are refused by the binding layer (TypeError)."""
    args = core_args()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        core.forward(args["theta"], args["sizes"], "tanh", 2, args["X"])
    with pytest.raises(TypeError, match="incompatible function arguments"):
        core.train_epoch(*(args[p] for p in CORE_PARAMS["train_epoch"][:7]), "3", 0.1, 0.0, None, 0.0)
    with pytest.raises(ValueError, match="velocity must be a numpy array"):
        core.train_epoch(*(args[p] for p in CORE_PARAMS["train_epoch"][:9]), 0.5, [0.0] * 53, 0.0)


def test_huge_finite_values_are_accepted_and_non_finite_ones_found_among_them() -> None:
    """The quick finiteness check sums rows; a sum that overflows must not be taken for a NaN."""
    net = Network([784, 4, 3])
    X = np.full((3, 784), 3e38, dtype=np.float32)  # every row sums past float32's range
    assert net.predict(X).shape == (3,)
    for bad in (np.inf, -np.inf, np.nan):
        X[2, 700] = bad
        with pytest.raises(DataError, match=r"X holds a non-finite value .* at row 2, column 700"):
            net.predict(X)
