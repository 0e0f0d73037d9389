"""The compiled extension's boundary: every argument is checked, nothing written is copied."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import param_count, require_backend


@pytest.fixture(scope="module")
def core():  # noqa: ANN201
    require_backend("cpp")
    from fastgd import _core

    return _core


SIZES = np.array([6, 5, 3], dtype=np.int64)


def args(dtype=np.float32):  # noqa: ANN001, ANN201
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(param_count([6, 5, 3])).astype(dtype)
    X = rng.random((8, 6)).astype(dtype)
    y = rng.integers(0, 3, 8).astype(np.int64)
    order = rng.permutation(8).astype(np.int64)
    return theta, X, y, order


def train(core, theta, X, y, order, sizes=SIZES, batch=3, eta=0.1, momentum=0.0, velocity=None, l2=0.0):  # noqa: ANN001, ANN201
    return core.train_epoch(theta, sizes, 0, 0, X, y, order, batch, eta, momentum, velocity, l2)


CASES = [
    # (description, mutate(theta, X, y, order) -> kwargs for train, message fragment)
    ("theta float16", lambda t, X, y, o: dict(theta=t.astype(np.float16)), "float32 or float64"),
    ("theta int", lambda t, X, y, o: dict(theta=t.astype(np.int64)), "float32 or float64"),
    ("theta wrong length", lambda t, X, y, o: dict(theta=t[:-1].copy()), "describe a network"),
    ("theta 2-D", lambda t, X, y, o: dict(theta=t.reshape(1, -1)), "1-dimensional"),
    ("theta strided", lambda t, X, y, o: dict(theta=np.repeat(t, 2)[::2]), "C-contiguous"),
    ("theta read-only", lambda t, X, y, o: dict(theta=_readonly(t)), "read-only"),
    ("X other dtype", lambda t, X, y, o: dict(X=X.astype(np.float64)), "X must have dtype float32"),
    ("X Fortran", lambda t, X, y, o: dict(X=np.asfortranarray(X)), "C-contiguous"),
    ("X wrong width", lambda t, X, y, o: dict(X=np.ascontiguousarray(X[:, :5])), "takes 6 inputs"),
    ("X 1-D", lambda t, X, y, o: dict(X=X[0].copy()), "2-dimensional"),
    ("X no rows", lambda t, X, y, o: dict(X=X[:0].copy()), "no rows"),
    ("y int32", lambda t, X, y, o: dict(y=y.astype(np.int32)), "y must have dtype int64"),
    ("y short", lambda t, X, y, o: dict(y=y[:-1].copy()), "labels but X has"),
    ("label 3", lambda t, X, y, o: dict(y=np.where(y == 0, 3, y)), "not a class label"),
    ("label -1", lambda t, X, y, o: dict(y=np.where(y == 0, -1, y)), "not a class label"),
    ("order out of range", lambda t, X, y, o: dict(order=np.where(o == 0, 8, o)), "not a row of X"),
    ("order negative", lambda t, X, y, o: dict(order=np.where(o == 0, -1, o)), "not a row of X"),
    ("order empty", lambda t, X, y, o: dict(order=o[:0].copy()), "order is empty"),
    ("order float", lambda t, X, y, o: dict(order=o.astype(np.float64)), "order must have dtype int64"),
    ("batch 0", lambda t, X, y, o: dict(batch=0), "batch_size"),
    ("eta NaN", lambda t, X, y, o: dict(eta=float("nan")), "eta"),
    ("momentum 1", lambda t, X, y, o: dict(momentum=1.0, velocity=np.zeros_like(t)), "momentum"),
    ("momentum without velocity", lambda t, X, y, o: dict(momentum=0.5), "velocity is required"),
    ("velocity other dtype", lambda t, X, y, o: dict(momentum=0.5, velocity=np.zeros(t.size)), "velocity must have"),
    ("velocity aliases theta", lambda t, X, y, o: dict(momentum=0.5, velocity=t), "share memory"),
    ("l2 negative", lambda t, X, y, o: dict(l2=-1.0), "l2"),
    ("sizes float", lambda t, X, y, o: dict(sizes=SIZES.astype(np.float64)), "sizes must have dtype int64"),
    ("sizes one layer", lambda t, X, y, o: dict(sizes=SIZES[:1].copy()), "at least 2"),
    ("sizes zero", lambda t, X, y, o: dict(sizes=np.array([6, 0, 3])), "positive"),
]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_train_epoch_rejects(core, case) -> None:  # noqa: ANN001
    _, mutate, fragment = case
    theta, X, y, order = args()
    kw = dict(theta=theta, X=X, y=y, order=order)
    kw.update(mutate(theta, X, y, order))
    before = theta.copy()
    with pytest.raises(ValueError, match=fragment):
        train(core, **kw)
    assert np.array_equal(theta, before)


def test_other_entry_points_check_too(core) -> None:  # noqa: ANN001
    theta, X, y, _ = args()
    with pytest.raises(ValueError, match="takes 6 inputs"):
        core.forward(theta, SIZES, 0, 0, np.ones((2, 7), np.float32))
    with pytest.raises(ValueError, match="activation code"):
        core.predict(theta, SIZES, 7, 0, X)
    with pytest.raises(ValueError, match="cost code"):
        core.cost(theta, SIZES, 0, 3, X, y)
    with pytest.raises(ValueError, match="out must have dtype float32"):
        core.grad(theta, SIZES, 0, 0, X, y, np.zeros(theta.size))
    with pytest.raises(ValueError, match="read-only"):
        core.grad(theta, SIZES, 0, 0, X, y, _readonly(np.zeros_like(theta)))
    with pytest.raises(ValueError, match="share memory"):
        core.grad(theta, SIZES, 0, 0, X, y, theta)


def test_updates_land_in_the_callers_arrays(core) -> None:  # noqa: ANN001
    for dtype in (np.float32, np.float64):
        theta, X, y, order = args(dtype)
        before = theta.copy()
        velocity = np.zeros_like(theta)
        train(core, theta, X, y, order, momentum=0.9, velocity=velocity)
        assert not np.array_equal(theta, before)
        assert velocity.any()
        out = np.zeros_like(theta)
        core.grad(theta, SIZES, 0, 0, X, y, out)
        assert out.any()


def test_build_info(core) -> None:  # noqa: ANN001
    info = core.build_info()
    assert info["isa"] in info["isas_supported"]
    assert set(info["isas_supported"]) <= set(info["isas_built"])
    assert "baseline" in info["isas_built"]


def test_every_instruction_set_agrees(core, tmp_path) -> None:  # noqa: ANN001
    """Each instruction-set build this CPU supports gives the same results (FASTGD_ISA forces one)."""
    import subprocess
    import sys

    theta, X, y, order = args(np.float64)
    np.savez(tmp_path / "case.npz", theta=theta, X=X, y=y, order=order)
    code = (
        "import numpy as np, sys; from fastgd import _core; d = np.load(sys.argv[1]); t = d['theta'].copy();"
        "_core.train_epoch(t, np.array([6,5,3]), 0, 1, d['X'], d['y'], d['order'], 3, 0.5, 0.0, None, 0.0);"
        "print(_core.build_info()['isa']); np.save(sys.argv[2], t)"
    )
    results = {}
    for isa in core.build_info()["isas_supported"]:
        out = tmp_path / f"{isa}.npy"
        env = dict(__import__("os").environ, FASTGD_ISA=isa)
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "case.npz"), str(out)], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert run.stdout.strip() == isa
        results[isa] = np.load(out)
    base = results["baseline"]
    for isa, t in results.items():
        assert np.max(np.abs(t - base)) <= 1e-12 * np.max(np.abs(base)), isa


@pytest.mark.parametrize("batch", [17, 40, 100, 300])
def test_results_do_not_depend_on_the_thread_count(core, tmp_path, batch) -> None:  # noqa: ANN001
    """Large mini-batches are summed in fixed slices, whatever the number of threads."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "case.npz", theta=rng.standard_normal(param_count([30, 20, 10])).astype(np.float32),
             X=rng.random((500, 30)).astype(np.float32), y=rng.integers(0, 10, 500),
             order=rng.permutation(500))  # fmt: skip
    code = (
        "import numpy as np, sys; from fastgd import _core; d = np.load(sys.argv[1]); t = d['theta'].copy();"
        f"c = _core.train_epoch(t, np.array([30, 20, 10]), 0, 2, d['X'], d['y'], d['order'], {batch}, 0.5, 0.0,"
        " None, 0.0); print(_core.build_info()['threads']); np.save(sys.argv[2], t)"
    )
    results = {}
    for threads in ("1", "2", "3"):
        out = tmp_path / f"t{threads}.npy"
        env = dict(os.environ, FASTGD_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "case.npz"), str(out)], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert run.stdout.strip() == threads
        results[threads] = np.load(out)
    assert np.array_equal(results["1"], results["2"]) and np.array_equal(results["1"], results["3"])


WIDE_THREADS_SCRIPT = """
import sys, numpy as np
from fastgd import _core
d = np.load(sys.argv[1])
out = {}
for layers in ([300, 20, 10], [300, 10], [300, 20, 12, 10]):
    sizes = np.array(layers)
    n_params = sum(a * b + b for a, b in zip(layers[:-1], layers[1:]))
    rng = np.random.default_rng(len(layers))
    theta, velocity = 0.1 * rng.standard_normal(n_params), rng.normal(0.0, 0.01, n_params)
    for dtype in ("float32", "float64"):
        X = d["X"].astype(dtype)
        for batch in (1, 10, 16, 17, 40, 64, 100, 255):
            for momentum, l2 in ((0.0, 0.0), (0.9, 1e-3)):
                t, v = theta.astype(dtype), velocity.astype(dtype)
                c, correct = _core.train_epoch(t, sizes, 0, 0, X, d["y"], d["order"], batch, 0.5, momentum, v, l2)
                key = f"{layers}-{dtype}-{batch}-{momentum}"
                out[key + "-theta"], out[key + "-velocity"], out[key + "-cost"] = t, v, np.array([c, correct])
print(_core.build_info()["threads"])
np.savez(sys.argv[2], **out)
"""


def test_wide_first_layer_results_do_not_depend_on_the_thread_count(core, tmp_path) -> None:  # noqa: ANN001
    """A first layer of 256 inputs or more is trained in two parts by input, shared by up to two threads,
    below 256 rows per mini-batch: the parameters, velocity, cost and count of correct rows are the same
    bits on 1, 2 and 4 threads (4: more worker threads than tasks), for mini-batches of one block (whose
    middle a team splits in two, see split_middle_early) and of several, a last mini-batch shorter than the
    others (1,000 rows), and networks of one, two and three layers."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    X = rng.random((1000, 300))
    X[X < 0.4] = 0.0
    np.savez(tmp_path / "case.npz", X=X, y=rng.integers(0, 10, 1000), order=rng.permutation(1000))
    results = {}
    for threads in ("1", "2", "4"):
        out = tmp_path / f"t{threads}.npz"
        env = dict(os.environ, FASTGD_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", WIDE_THREADS_SCRIPT, str(tmp_path / "case.npz"), str(out)],
                             env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert run.returncode == 0 and run.stdout.strip() == threads, run.stdout + run.stderr
        results[threads] = dict(np.load(out))
    assert len(results["1"]) == 3 * 2 * 8 * 2 * 3
    for threads in ("2", "4"):
        for key, value in results["1"].items():
            assert np.array_equal(value, results[threads][key]), (threads, key)


def test_forward_predict_and_cost_do_not_depend_on_the_thread_count(core, tmp_path) -> None:  # noqa: ANN001
    """Many rows are split into fixed runs of blocks (threaded); the results are the same for any thread count."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    rows = 5000  # above the threshold for a threaded forward pass
    np.savez(tmp_path / "case.npz", theta=rng.standard_normal(param_count([30, 20, 10])),
             X=rng.random((rows, 30)), y=rng.integers(0, 10, rows))  # fmt: skip
    code = (
        "import numpy as np, sys; from fastgd import _core; d = np.load(sys.argv[1]); s = np.array([30, 20, 10]);"
        "t, X, y = d['theta'], d['X'], d['y']; out = _core.forward(t, s, 0, 2, X);"
        "np.savez(sys.argv[2], out=out, labels=_core.predict(t, s, 0, 2, X), cost=_core.cost(t, s, 0, 2, X, y))"
    )
    results = {}
    for threads in ("1", "2", "3"):
        out = tmp_path / f"t{threads}.npz"
        env = dict(os.environ, FASTGD_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "case.npz"), str(out)], env=env,
                       capture_output=True, text=True, check=True)  # fmt: skip
        results[threads] = dict(np.load(out))
    for threads in ("2", "3"):
        for key in ("out", "labels", "cost"):
            assert np.array_equal(results["1"][key], results[threads][key]), (threads, key)
    # and the same as the reference, row by row
    from fastgd.backends import _numpy as reference

    d = np.load(tmp_path / "case.npz")
    ref = reference.forward(d["theta"], np.array([30, 20, 10]), 0, 2, d["X"])
    assert np.max(np.abs(results["1"]["out"] - ref)) <= 1e-12
    assert abs(float(results["1"]["cost"]) - reference.cost(d["theta"], np.array([30, 20, 10]), 0, 2, d["X"],
                                                           d["y"])) <= 1e-12  # fmt: skip
