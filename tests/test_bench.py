"""fastgd.bench (``fastgd bench``) and benchmarks/peers.py: FLOP counts, and quick runs on small data.

Fast only: synthetic data or the first 2,000 MNIST images, one run, small GEMMs; never torch
or JAX; threadpoolctl optional (its absence is simulated too). The numba backend is left out
(its first call may compile for tens of seconds).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastgd import backends, bench

BOOK = (784, 16, 16, 10)
PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"
CONTENDED = PEERS.parent / "contended.py"


def fast_backend() -> str:
    return "cpp" if backends.available("cpp")[0] else "numpy"


# --------------------------------------------------------------------------------------------
# FLOP counts


def counted_flops(sizes: tuple[int, ...], n: int, batch: int) -> int:
    """An independent count, operation by operation over the layers (the same conventions:
    multiply-add 2, sigmoid 4, output delta 4, hidden delta 3, update 2 per parameter)."""
    per_example = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        per_example += 2 * n_in * n_out + n_out + 4 * n_out  # z = a W + b, a = sigmoid(z)
    per_example += 4 * sizes[-1]  # (a - y) * a * (1 - a)
    for k in range(len(sizes) - 1, 0, -1):  # layer k's weights: n_in = sizes[k-1], n_out = sizes[k]
        per_example += 2 * sizes[k - 1] * sizes[k] + sizes[k]  # weight gradient, bias gradient
        if k > 1:  # delta into the hidden layer below (never into the inputs)
            per_example += 2 * sizes[k - 1] * sizes[k] + 3 * sizes[k - 1]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    updates = -(-n // batch)
    return n * per_example + updates * 2 * params


def test_flops_of_the_book_network_at_batch_10() -> None:
    assert round(bench.flops_per_example(BOOK, 10)) == 55_660  # the figure
    assert bench.backprop_flops(BOOK) == 53_060
    assert bench.update_flops(BOOK) == 2 * 13_002
    assert bench.epoch_flops(BOOK, 60_000, 10) == 3_339_624_000  # "3.34 GFLOP per epoch"
    assert bench.forward_flops(BOOK) == 26_130
    assert bench.predict_flops(BOOK, 10_000) == 261_300_000
    # matrix products: 2 x 25,920 forward and weight gradient, 832 for the deltas
    assert 2 * 2 * (784 * 16 + 16 * 16 + 16 * 10) == 2 * 25_920


@pytest.mark.parametrize("sizes", [(784, 16, 16, 10), (5, 3), (20, 12, 10), (6, 8, 8, 8, 4), (784, 100, 10)])
@pytest.mark.parametrize("batch", [1, 10, 100, 1000])
def test_flop_formula_matches_an_operation_count(sizes: tuple[int, ...], batch: int) -> None:
    for n in (batch, 60_000, 60_000 + 7):
        assert bench.epoch_flops(sizes, n, batch) == counted_flops(sizes, n, batch)
    per_example = counted_flops(sizes, 60_000, batch) / 60_000
    assert bench.flops_per_example(sizes, batch) == pytest.approx(per_example, rel=1e-3)


def test_flops_scale_with_sizes_and_batch() -> None:
    # the update is amortised over the batch; the backprop part does not depend on it
    assert bench.flops_per_example(BOOK, 1) - bench.flops_per_example(BOOK, 1000) == pytest.approx(26_004 * (1 - 1e-3))
    assert bench.epoch_flops(BOOK, 60_000, 100) == 60_000 * 53_060 + 600 * 26_004
    assert bench.epoch_flops(BOOK, 25, 10) == 25 * 53_060 + 3 * 26_004  # a shorter last mini-batch
    # the matrix products dominate: doubling the hidden width roughly doubles the count
    wide = bench.backprop_flops((784, 32, 32, 10)) / bench.backprop_flops(BOOK)
    assert 1.9 < wide < 2.1
    assert bench.predict_flops((5, 3), 7) == 7 * (2 * 15 + 5 * 3)
    with pytest.raises(ValueError):
        bench.epoch_flops(BOOK, 0, 10)
    with pytest.raises(ValueError):
        bench.flops_per_example((784,), 10)


# --------------------------------------------------------------------------------------------
# Timing functions on small data


def synthetic(n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: the label is the brightest of 10 pixel groups."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784)).astype(dtype) * 0.3
    y = rng.integers(0, 10, n)
    for k in range(10):
        X[y == k, k * 78 : k * 78 + 40] += 0.7
    return X, y.astype(np.uint8)


def test_time_fit_and_predict_on_small_data() -> None:
    X, y = synthetic(2_000, "float32")
    Xt, yt = synthetic(500, "float32", seed=1)
    name = fast_backend()
    t, net = bench.time_fit(name, "float32", 10, X, y, runs=2, X_test=Xt, y_test=yt)
    assert (t.backend, t.dtype, t.batch_size, t.n_rows) == (name, "float32", 10, 2_000)
    assert len(t.runs) == 2 and t.seconds == pytest.approx(float(np.median(t.runs)))
    assert 0 < t.kernel_seconds <= t.seconds < 10 and 0 < t.warmup_seconds < 60
    assert t.flops == bench.epoch_flops(BOOK, 2_000, 10)
    assert math.isfinite(t.train_cost) and t.train_cost < 0.45  # it learns: 2.45 is where N(0,1) starts
    assert t.test_accuracy > 0.5
    p = bench.time_predict(net, Xt, runs=3)
    assert p.n_rows == 500 and len(p.runs) == 3 and 0 < p.seconds < 1
    assert p.flops == bench.predict_flops(BOOK, 500)


def test_run_bench_and_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {dt: (*synthetic(600, dt), *synthetic(200, dt, seed=1)) for dt in ("float32", "float64")}
    res = bench.run_bench(backends=[fast_backend(), "numpy"], dtypes=("float32", "float64"), batch_sizes=(10, 100),
                          runs=1, data=data, with_roofline=True, gemm_sizes=(128,))  # fmt: skip
    assert len(res.fit) == 2 * 2 * 2 and len(res.predict) == 2 * 2
    assert {(t.dtype, t.batch_size) for t in res.fit} == {(d, b) for d in ("float32", "float64") for b in (10, 100)}
    assert all(t.seconds > 0 and math.isfinite(t.train_cost) for t in res.fit)
    roof = res.roofline
    assert roof is not None and set(roof.multi) == {"float32", "float64"}
    assert all(p.gflops > 0 for p in roof.multi.values())
    t = res.fit[0]
    if roof.single:
        assert roof.bound(t.flops, t.dtype) == pytest.approx(t.flops / (roof.single[t.dtype].gflops * 1e9))
    text = bench.format_result(res)
    assert "x 1c" in text and "matrix-multiply peak" in text and "predict" in text
    assert res.as_dict()["fit"][0]["flops"] == t.flops


def test_roofline_without_threadpoolctl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails as if not installed
    roof = bench.roofline(("float32",), sizes=(64,), repeats=1)
    assert roof.single == {} and roof.multi["float32"].threads is None and roof.multi["float32"].gflops > 0
    assert math.isnan(roof.bound(1e9, "float32"))
    assert "threads not limited" in "\n".join(bench.format_roofline(roof))
    assert bench.blas_info() == []
    assert bench.machine_info()["threadpoolctl"] is None


def test_roofline_limits_threads_with_threadpoolctl() -> None:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        pytest.skip("threadpoolctl is not installed (optional)")
    roof = bench.roofline(("float64",), sizes=(64,), repeats=1, cores=2)
    assert roof.single["float64"].threads == 1 and roof.multi["float64"].threads == 2
    assert roof.single["float64"].blas_threads in (1, None)


def test_machine_info_warns_about_openblas_coretype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    info = bench.machine_info()
    assert info["blas_env"]["OPENBLAS_CORETYPE"] == "Haswell"
    assert info["python"] == sys.version.split()[0] and info["cpus"] >= 1
    assert any(line.startswith("WARNING: OPENBLAS_CORETYPE") for line in bench.describe_machine(info))


def test_bench_command_on_mnist(mnist, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    rc = bench.main(["--backends", fast_backend(), "--dtypes", "float32", "--batch-sizes", "10,100", "--runs", "1",
                     "--limit", "2000", "--roofline", "--gemm-sizes", "128", "--json", str(out)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "s/epoch" in text and "2,000" in text and "10,000" in text
    import json

    saved = json.loads(out.read_text())
    assert [t["batch_size"] for t in saved["fit"]] == [10, 100]
    assert saved["fit"][0]["test_accuracy"] > 0.3  # 200 steps of the book's SGD: about 41%


def test_bench_peers_explains_when_the_script_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = bench.find_peers_script()
    assert found is None or found.name == "peers.py"
    monkeypatch.setattr(bench, "find_peers_script", lambda: None)
    assert bench.main(["--peers"]) == 2
    assert "python benchmarks/peers.py" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# benchmarks/peers.py


@pytest.mark.skipif(not PEERS.is_file(), reason="benchmarks/peers.py is not in this checkout")
def test_peers_script_with_numpy_on_a_subset(mnist, tmp_path: Path) -> None:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = tmp_path / "peers.json"
    res = subprocess.run([sys.executable, str(PEERS), "--only", "numpy", "--limit", "2000", "--runs", "1",
                          "--min-time", "0", "--min-accuracy", "0.3", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    table = res.stdout
    assert "per-example backprop" in table and "whole mini-batch" in table and "fastgd" in table
    assert "x faster" in table or "x slower" in table
    assert "torch" not in table.lower() and "jax" not in table.lower()
    import json

    results = {r["key"]: r for r in json.loads(out.read_text())["results"]}
    assert {"numpy-example", "numpy-batch"} <= set(results)
    for r in results.values():
        assert not r["skipped"] and r["seconds"] > 0 and r["accuracy"] > 0.3
        assert len(r["runs"]) == 1  # --min-time 0: exactly --runs timed epochs
    # the same initial parameters and order everywhere: the float64 book algorithm and fastgd's
    # float32 fit learn the same thing from 2,000 rows
    fastgd_row = next(r for k, r in results.items() if k.startswith("fastgd"))
    assert abs(results["numpy-example"]["accuracy"] - fastgd_row["accuracy"]) < 0.02


@pytest.mark.skipif(not PEERS.is_file(), reason="benchmarks/peers.py is not in this checkout")
def test_peers_script_runs_short_epochs_until_they_fill_the_minimum_time() -> None:
    spec = importlib.util.spec_from_file_location("fastgd_peers_script", PEERS)
    assert spec is not None and spec.loader is not None
    peers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = peers  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(peers)
    finally:
        del sys.modules[spec.name]
    calls: list[int] = []

    def epoch() -> int:
        calls.append(1)
        time.sleep(0.002)
        return len(calls)

    first, times, last = peers.timed(epoch, peers.Runs(least=3, min_time=0.05, most=200))
    assert first > 0 and last == len(calls) == len(times) + 1
    # the last run was needed to reach the minimum time, and no run after it
    assert len(times) >= 3 and sum(times[:-1]) < 0.05 <= sum(times)
    _, times, _ = peers.timed(epoch, peers.Runs(least=3, min_time=0))
    assert len(times) == 3
    _, times, _ = peers.timed(epoch, peers.Runs(least=2, min_time=1e9, most=5))
    assert len(times) == 5


@pytest.mark.skipif(not PEERS.is_file(), reason="benchmarks/peers.py is not in this checkout")
def test_peers_script_rejects_an_unknown_peer() -> None:
    res = subprocess.run([sys.executable, str(PEERS), "--only", "tensorflow"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode != 0 and "unknown peer" in res.stderr


# --------------------------------------------------------------------------------------------
# benchmarks/median_tables.py (the README's tables: medians over pairs of runs)

PAIRS = Path(__file__).resolve().parent.parent / "benchmarks" / "median_tables.py"


def load_pairs_module():  # noqa: ANN201
    import importlib.util

    spec = importlib.util.spec_from_file_location("median_tables", PAIRS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(seconds: dict[tuple[str, int], float], peak: float, predict: float) -> dict:
    """A ``fastgd bench --json`` result with float32 cells only: (backend, batch) -> seconds."""
    flops = 1e9  # every cell 1 GFLOP: the bound is 1 / peak seconds
    fit = [dict(backend=b, dtype="float32", batch_size=n, seconds=s, flops=flops) for (b, n), s in seconds.items()]
    roof = {"gflops": peak}
    return {"fit": fit, "predict": [dict(backend="cpp", dtype="float32", seconds=predict, flops=flops)],
            "roofline": {"single": {"float32": roof}, "multi": {"float32": roof}}}  # fmt: skip


@pytest.mark.skipif(not PAIRS.is_file(), reason="benchmarks/median_tables.py is not in this checkout")
def test_median_tables_takes_each_cells_median_and_divides_by_each_runs_own_bound() -> None:
    bp = load_pairs_module()
    runs = [
        fake_run({("cpp", 10): 0.02, ("numba", 10): 0.03}, peak=100.0, predict=0.004),
        fake_run({("cpp", 10): 0.09, ("numba", 10): 0.09}, peak=50.0, predict=0.002),  # a disturbed run
        fake_run({("cpp", 10): 0.03, ("numba", 10): 0.07}, peak=100.0, predict=0.003),
    ]
    # seconds: median of 0.02, 0.09, 0.03; multiples of the bound (1/peak s): 2.0, 4.5, 3.0
    assert bp.cell_medians(runs, "single", "cpp", "float32", 10) == pytest.approx((0.03, 3.0, 2.0, 4.5))
    assert bp.cell_medians(runs, "single", "cpp", "float32", None) == pytest.approx((0.003, 0.3, 0.1, 0.4))
    assert bp.cell_medians(runs, "single", "numba", "float64", 10) is None
    table = bp.table(runs, "multi")
    assert "| cpp | float32 | 0.03 s (3.0x) | 3.00 ms (0.3x) |" in table
    assert "| numba | float32 | 0.07 s (4.5x) | - |" in table  # 3.0x, 4.5x, 7.0x: medians taken apart
    assert sorted(bp.ratios(runs, [])) == pytest.approx([1.0, 1.5, 7 / 3])
    text = bp.summarize(runs, runs)
    assert "3 pairs" in text and "2 of 6 above 2; per-cell medians 1.50-1.50" in text
    assert "batch 10 2.00-4.50x" in text


@pytest.mark.skipif(not PAIRS.is_file(), reason="benchmarks/median_tables.py is not in this checkout")
def test_median_tables_runs_pairs_and_summarizes_them(mnist, tmp_path: Path) -> None:  # noqa: ANN001
    from helpers import require_backend

    require_backend("cpp")
    res = subprocess.run([sys.executable, str(PAIRS), "--pairs", "2", "--out", str(tmp_path), "--backends", "cpp",
                          "--batch-sizes", "10", "--runs", "1", "--limit", "1000", "--gemm-sizes", "256"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    for i in (1, 2):
        one = json.loads((tmp_path / f"one_{i}.json").read_text())
        every = json.loads((tmp_path / f"all_{i}.json").read_text())
        assert one["roofline"]["single"]["float32"]["threads"] == 1
        assert one["machine"]["cpp"]["threads"] == 1  # FASTGD_NUM_THREADS=1 reached the run
        # the every-core run drops FASTGD_NUM_THREADS, whatever the caller's environment says
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert every["machine"]["cpp"]["threads"] == min(cpus or 1, 64)
    assert "2 pairs" in res.stdout and "| cpp | float32 | " in res.stdout and "| cpp | float64 | " in res.stdout
    again = subprocess.run([sys.executable, str(PAIRS), "--summarize", str(tmp_path)], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert again.returncode == 0 and again.stdout == res.stdout
    bad = subprocess.run([sys.executable, str(PAIRS), "--summarize", str(tmp_path / "none")], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "no pairs" in bad.stderr


# --------------------------------------------------------------------------------------------
# benchmarks/contended.py (threads that share CPUs with other threads)


@pytest.mark.skipif(not CONTENDED.is_file(), reason="benchmarks/contended.py is not in this checkout")
@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_contended_script_on_random_digits(backend: str) -> None:
    from helpers import require_backend

    require_backend(backend)
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("os.sched_setaffinity is not available on this platform")
    env = {k: v for k, v in os.environ.items() if k != "FASTGD_DATA"}
    res = subprocess.run([sys.executable, str(CONTENDED), "--batch-sizes", "10,100", "--epochs", "1", "--rows",
                          "3000", "--backend", backend], capture_output=True, text=True, env=env,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in res.stdout.splitlines() if line.startswith("| ")}
    assert set(rows) == {"setting", "---", "1 thread", "2 threads", "2 threads, 1 CPU", "2 threads + busy",
                         "1 thread + busy"}, res.stdout
    assert "alone" not in rows["1 thread"] + rows["1 thread + busy"], res.stdout
    assert rows["2 threads, 1 CPU"].count("alone") == 2, res.stdout
    assert "parameters bit-identical in every setting" in res.stdout
