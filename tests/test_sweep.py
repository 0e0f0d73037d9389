"""fastgd.sweep: grids, seeds, a Dask LocalCluster against a run in this process, resuming, a killed worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import distributed
import numpy as np
import pytest

import fastgd
from fastgd import cli
from fastgd.sweep import (
    _NO_DASHBOARD,
    COLUMNS,
    GRID_KEYS,
    SweepError,
    expand_grid,
    load_config,
    read_csv,
    run_id,
    sweep,
    sweep_seeds,
)

# Small networks on a subset of MNIST, one epoch: 2 configurations x 2 seeds, a few ms each.
GRID = {"sizes": [[784, 8, 10]], "eta": [0.5, 3.0], "epochs": [1], "limit": [600], "optimizer": ["sgd"],
        "activation": ["sigmoid"], "cost": ["quadratic"], "init": ["normal"]}  # fmt: skip
SEEDS = 2
VOLATILE = ("seconds", "worker")  # what legitimately differs between two runs of the same record


def same(a: list[dict], b: list[dict]) -> bool:
    """Bit-equal records, apart from timing and the process that ran them."""
    strip = [{k: v for k, v in r.items() if k not in VOLATILE} for r in a]
    return strip == [{k: v for k, v in r.items() if k not in VOLATILE} for r in b]


@pytest.fixture(scope="module")
def client():  # noqa: ANN201
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                       processes=True, scheduler_kwargs=_NO_DASHBOARD)  # fmt: skip
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def local(mnist) -> list[dict]:  # noqa: ANN001
    """The reference: the sweep run one run after another in this process."""
    return sweep(GRID, seeds=SEEDS, scheduler="synchronous")


# --------------------------------------------------------------------------------------------
# Grids and seeds (no data needed)


def test_expand_grid_fills_defaults_in_order() -> None:
    configs = expand_grid({"eta": [0.5, 3], "sizes": [[784, 16, 10], [784, 10]]})
    assert [(c["eta"], c["sizes"]) for c in configs] == [
        (0.5, [784, 16, 10]), (0.5, [784, 10]), (3.0, [784, 16, 10]), (3.0, [784, 10])]  # fmt: skip
    assert all(list(c) == list(GRID_KEYS) for c in configs)
    assert configs[0]["epochs"] == 30 and configs[0]["batch_size"] == 10 and configs[0]["activation"] == "tanh"


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({"lr": [0.1]}, "unknown key 'lr'"),
        ({"seed": [1, 2]}, "unknown key 'seed'.*seeds="),
        ({"eta": 0.1}, r"grid\['eta'\] must be a non-empty list"),
        ({"eta": []}, r"grid\['eta'\] must be a non-empty list"),
        ({"eta": [0.1, -1.0]}, r"grid\['eta'\].*positive"),
        ({"eta": [float("nan")]}, r"grid\['eta'\].*positive finite"),
        ({"eta": ["fast"]}, r"grid\['eta'\].*number"),
        ({"sizes": [784, 16, 10]}, r"grid\['sizes'\] must be a list of layer-width lists"),
        ({"sizes": [[784, 0, 10]]}, r"grid\['sizes'\].*at least 1"),
        ({"sizes": [[784, 16, 3]]}, r"grid\['sizes'\].*784 inputs and 10 classes"),
        ({"sizes": [[100, 10]]}, r"grid\['sizes'\].*784"),
        ({"activation": ["softplus"]}, r"grid\['activation'\].*'sigmoid'"),
        ({"cost": ["hinge"]}, r"grid\['cost'\]"),
        ({"init": ["zeros"]}, r"grid\['init'\]"),
        ({"dtype": ["float16"]}, r"grid\['dtype'\]"),
        ({"backend": ["cuda"]}, r"grid\['backend'\]"),
        ({"optimizer": ["adam"]}, r"grid\['optimizer'\]"),
        ({"epochs": [0]}, r"grid\['epochs'\].*at least 1"),
        ({"batch_size": [2.5]}, r"grid\['batch_size'\].*integer"),
        ({"batch_size": [True]}, r"grid\['batch_size'\].*integer"),
        ({"limit": [-1]}, r"grid\['limit'\].*at least 0"),
        ({"limit": [5], "batch_size": [10]}, r"grid\['batch_size'\].*larger than grid\['limit'\]"),
        ({"eta": [0.1, 0.1]}, r"grid\['eta'\] lists 0.1 more than once"),
        ([("eta", [0.1])], "grid must be a dict"),
    ],
)
def test_bad_grid_names_the_key(grid, match: str) -> None:  # noqa: ANN001
    with pytest.raises(SweepError, match=match):
        sweep(grid, scheduler="synchronous")
    assert issubclass(SweepError, ValueError) and issubclass(SweepError, fastgd.FastgdError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": 0}, "seeds must be at least 1"),
        ({"seeds": []}, "seeds must be a positive integer or a non-empty list"),
        ({"seeds": [1, -2]}, "non-negative integers"),
        ({"seeds": [3, 3]}, "more than once"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"n_jobs": 0}, "n_jobs must be a positive integer"),
        ({"dataset": "cifar"}, "dataset must be one of"),
        ({"retries": -1}, "retries must be"),
        ({"out": "/nonexistent-folder/x.csv"}, "out: the folder"),
        ({"scheduler": 42}, "scheduler must be None"),
    ],
)
def test_bad_options_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(SweepError, match=match):
        sweep({"eta": [0.1]}, **kwargs)


def test_seeds_come_from_seed_sequence() -> None:
    spawned = np.random.SeedSequence(7).spawn(4)
    assert sweep_seeds(4, seed=7) == [int(s.generate_state(1)[0]) for s in spawned]
    assert sweep_seeds(3, seed=7) == sweep_seeds(4, seed=7)[:3]  # spawning more keeps the first ones
    assert sweep_seeds(3, seed=0) != sweep_seeds(3, seed=1)
    assert sweep_seeds([5, 0, 9]) == [5, 0, 9]


def test_run_id_is_stable_and_distinguishes_runs() -> None:
    a, b = expand_grid({"eta": [0.1, 0.2]})
    assert run_id("mnist", a, 1) == run_id("mnist", dict(reversed(list(a.items()))), 1)
    ids = {run_id("mnist", a, 1), run_id("mnist", b, 1), run_id("mnist", a, 2), run_id("fashion-mnist", a, 1)}
    assert len(ids) == 4


def test_fastgd_imports_without_dask_and_says_how_to_install() -> None:
    code = (
        "import sys; sys.modules['dask'] = sys.modules['distributed'] = None\n"
        "import fastgd\n"
        "try:\n    fastgd.sweep({'eta': [0.1]}, n_jobs=1)\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'pip install "fastgd[dask]"' in out.stdout


# --------------------------------------------------------------------------------------------
# Real runs (MNIST from $FASTGD_DATA)


def test_synchronous_run_matches_network_fit(local: list[dict], mnist) -> None:  # noqa: ANN001
    assert len(local) == 4 and [r["eta"] for r in local] == [0.5, 0.5, 3.0, 3.0]
    assert [r["seed"] for r in local] == sweep_seeds(SEEDS) * 2
    X, y = mnist["train"][0][:600], mnist["train"][1][:600]
    Xt, yt = mnist["test"]
    for r in local:
        assert list(r) == list(COLUMNS) and r["error"] == ""
        net = fastgd.Network([784, 8, 10], activation="sigmoid", cost="quadratic", init="normal", seed=r["seed"])
        net.fit(X, y, epochs=1, batch_size=10, eta=r["eta"], optimizer="sgd", seed=r["seed"])
        assert r["final_cost"] == net.cost(X, y) and r["train_accuracy"] == net.score(X, y)
        assert r["test_cost"] == net.cost(Xt, yt) and r["test_accuracy"] == net.score(Xt, yt)
        assert r["seconds"] > 0 and r["worker"].endswith(f":{os.getpid()}")
    assert local[0]["test_accuracy"] != local[1]["test_accuracy"]  # the seeds differ


def test_local_cluster_equals_local_run(client, local: list[dict]) -> None:  # noqa: ANN001
    results = sweep(GRID, seeds=SEEDS, scheduler=client)
    assert same(results, local)
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in results}
    assert os.getpid() not in pids and pids <= set(client.run(os.getpid).values())
    # tasks cap their compute threads, in the workers only
    caps = client.run(lambda: os.environ.get("FASTGD_NUM_THREADS"))
    assert set(caps.values()) == {"1"}


def test_default_local_cluster(local: list[dict], tmp_path: Path) -> None:
    """The default: a local cluster of its own, started in a fresh process (as a user's script would;
    not beside this module's cluster in one process), with a time limit instead of a possible hang."""
    code = (
        "import sys; from fastgd.sweep import sweep;"
        f"sweep({GRID!r}, seeds={SEEDS!r}, n_jobs=2, out=sys.argv[1])"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.csv")], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert same(read_csv(tmp_path / "s.csv"), local)


class Interrupted(Exception):
    pass


def test_interrupted_sweep_resumes_and_skips_finished_runs(client, local: list[dict], tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "sweep.csv"

    def stop(record: dict) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        sweep(GRID, seeds=SEEDS, scheduler=client, out=out, progress=stop)
    saved = read_csv(out)
    assert 1 <= len(saved) < len(local)
    assert not [p for p in tmp_path.iterdir() if p.name != "sweep.csv"]  # no temporary file left behind
    ran: list[dict] = []
    results = sweep(GRID, seeds=SEEDS, scheduler=client, out=out, progress=ran.append)
    assert len(ran) == len(local) - len(saved)
    assert {r["run_id"] for r in ran}.isdisjoint(r["run_id"] for r in saved)
    assert same(results, local) and same(read_csv(out), local)
    # all done: nothing runs again, and the CSV's numbers are the computed ones, bit for bit
    again: list[dict] = []
    assert same(sweep(GRID, seeds=SEEDS, scheduler=client, out=out, progress=again.append), local)
    assert again == []


class KillOnce(distributed.WorkerPlugin):
    """Ends the worker process the first time one of the sweep's tasks starts executing on it."""

    name = "fastgd-test-kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:  # noqa: ANN001, ANN003
        if finish == "executing" and str(key).startswith("fastgd-run-"):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)


def test_killed_worker_does_not_lose_the_sweep(client, local: list[dict], tmp_path: Path) -> None:  # noqa: ANN001
    marker = tmp_path / "killed"
    pids_before = set(client.run(os.getpid).values())
    client.register_plugin(KillOnce(str(marker)))
    try:
        results = sweep(GRID, seeds=SEEDS, scheduler=client, out=tmp_path / "s.csv")
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    killed = int(marker.read_text())
    assert killed in pids_before  # a worker did die, mid-sweep, while running one of its tasks
    assert killed not in {int(r["worker"].rsplit(":", 1)[1]) for r in results}
    assert same(results, local) and same(read_csv(tmp_path / "s.csv"), local)
    client.wait_for_workers(2, timeout=60)


def test_diverging_run_is_recorded_not_fatal(mnist) -> None:  # noqa: ANN001
    grid = {"sizes": [[784, 8, 10]], "activation": ["relu"], "optimizer": ["sgd"], "eta": [0.1, 1e30],
            "epochs": [1], "limit": [300]}  # fmt: skip
    ok, bad = sweep(grid, seeds=[1], scheduler="synchronous")
    assert ok["error"] == "" and 0 < ok["test_accuracy"] <= 1
    assert "diverged" in bad["error"] and np.isnan(bad["final_cost"]) and np.isnan(bad["test_accuracy"])


# --------------------------------------------------------------------------------------------
# Configuration files and the command line


def test_config_files(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('seeds = [1, 2]\nout = "r.csv"\n[grid]\neta = [0.1, 1.0]\nsizes = [[784, 10]]\n')
    cfg = load_config(toml)
    assert cfg["grid"] == {"eta": [0.1, 1.0], "sizes": [[784, 10]]} and cfg["seeds"] == [1, 2]
    assert cfg["out"] == str(tmp_path / "r.csv")
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"grid": {"eta": [0.1]}, "n_jobs": 2}))
    assert load_config(js) == {"grid": {"eta": [0.1]}, "n_jobs": 2}
    for name, text, match in [
        ("a.toml", "eta = [0.1]\n", "needs a 'grid'"),
        ("b.toml", "[grid]\neta = [0.1\n", "cannot parse"),
        ("c.json", '{"grid": {"eta": [0.1]}, "colour": 1}', "unknown key.*'colour'"),
        ("d.json", '{"grid": {"lr": [0.1]}}', "d.json: grid has an unknown key 'lr'"),
        ("e.yaml", "grid: {}", "must be a .toml or .json"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(SweepError, match=match):
            load_config(tmp_path / name)


def test_cli_sweep(local: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "grid.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in GRID.items()]
    config.write_text(f"seeds = {SEEDS}\n[grid]\n" + "\n".join(lines) + "\n")
    assert cli.main(["sweep", str(config), "--scheduler", "synchronous"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs (4 run now, 0 already in" in printed
    assert f"{local[0]['test_accuracy']:.2%}" in printed
    assert same(read_csv(tmp_path / "grid.csv"), local)
    png = tmp_path / "grid.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["sweep", str(config), "--scheduler", "synchronous"]) == 0
    assert "4 runs (0 run now, 4 already in" in capsys.readouterr().out
    config.write_text("[grid]\nlr = [1]\n")
    assert cli.main(["sweep", str(config)]) == 2
    assert "unknown key 'lr'" in capsys.readouterr().err


def test_missing_matplotlib_skips_the_plot(local: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    results = sweep(GRID, seeds=SEEDS, scheduler="synchronous", plot=tmp_path / "p.png")
    assert same(results, local) and not (tmp_path / "p.png").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'no plot' in err and "fastgd[plot]" in err
