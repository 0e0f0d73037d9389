"""Sweeps: train every combination of a grid of settings, for several seeds, on Dask.

:func:`sweep` expands a grid such as ``{"sizes": [[784, 16, 10]], "eta": [0.5, 3.0], "epochs": [1]}``
into runs (every combination of the grid's values, times every seed), trains each run's network
on MNIST or Fashion-MNIST, and returns one record per run: its configuration, ``seed``,
``final_cost``, ``train_accuracy``, ``test_cost``, ``test_accuracy`` and ``seconds``.

Where the runs go
-----------------
``scheduler=None`` (the default) starts a Dask ``LocalCluster`` of ``n_jobs`` worker processes
on this machine, one thread each, with their compute threads capped at one
(``FASTGD_NUM_THREADS``, ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ...) so the processes do not
oversubscribe the cores. ``scheduler="tcp://host:8786"`` or a ``dask.distributed.Client`` runs
the same runs on that cluster; ``scheduler="synchronous"`` runs them one after another in this
process, without Dask. Workers load the dataset themselves, once per process, so only a run's
settings travel with it. Dask is an optional dependency: ``pip install "fastgd[dask]"``.

Seeds and resuming
------------------
``seeds=n`` derives n seeds from ``numpy.random.SeedSequence(seed).spawn(n)`` (child k gives the
integer ``child.generate_state(1)[0]``), so a sweep computes the same numbers wherever it runs;
each seed is both the network's initialisation seed and the ``fit`` shuffling seed. Every run has
a stable ``run_id`` (a hash of its dataset, configuration and seed). With ``out=`` a CSV file, the
file is rewritten (atomically) as results arrive, and runs it already holds are not run again:
an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backends
from .errors import DivergenceError, FastgdError

if TYPE_CHECKING:
    from .data import Split

__all__ = [
    "DATASETS",
    "GRID_KEYS",
    "SweepError",
    "expand_grid",
    "load_config",
    "plot_sweep",
    "read_csv",
    "run_one",
    "sweep",
    "sweep_seeds",
]

DATASETS = ("mnist", "fashion-mnist")

# Every key a grid may hold, with the value a run takes when the grid leaves it out. The Network
# keys come first, then the fit keys; ``limit`` trains on the first ``limit`` training images
# (0: all of them).
DEFAULTS: dict[str, Any] = {
    "sizes": [784, 16, 16, 10],
    "activation": "tanh",
    "cost": "log-likelihood",
    "init": "scaled",
    "dtype": "float32",
    "backend": "auto",
    "eta": None,
    "batch_size": 10,
    "epochs": 30,
    "optimizer": "default",
    "limit": 0,
}
GRID_KEYS = tuple(DEFAULTS)
RESULT_KEYS = ("final_cost", "train_accuracy", "test_cost", "test_accuracy", "seconds")
COLUMNS = ("run_id", "dataset", *GRID_KEYS, "seed", *RESULT_KEYS, "backend_used", "worker", "error")
_INT_COLUMNS = {"batch_size", "epochs", "limit", "seed"}
_FLOAT_COLUMNS = {"eta", *RESULT_KEYS}
SYNCHRONOUS = "synchronous"
# Environment of the local cluster's worker processes: one compute thread per task.
THREAD_CAPS = dict.fromkeys(
    ("FASTGD_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"),
    "1",
)  # fmt: skip
# Without a dashboard, the scheduler still serves HTTP (health, metrics), on port 8787 unless told:
# a free port instead, so a second cluster on the machine starts without a port-in-use warning.
_NO_DASHBOARD = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
_DASK_MISSING = 'fastgd.sweep needs Dask for scheduler={!r}: pip install "fastgd[dask]"'


class SweepError(FastgdError, ValueError):
    """A grid, seed list, sweep option or configuration file that fastgd cannot run."""


# --------------------------------------------------------------------------------------------
# The grid


def _check_value(key: str, value: Any) -> Any:
    """One grid value, normalised (lists of ints for sizes, lower-case names), or SweepError."""
    from .network import INITS, _check_sizes

    where = f"grid[{key!r}]"
    try:
        if key == "sizes":
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise SweepError(f"{where}: each entry must be a list of layer widths like [784, 16, 10], "
                                 f"got {value!r}")  # fmt: skip
            return list(_check_sizes(value))
        if key in ("activation", "cost", "init", "dtype", "backend", "optimizer"):
            choices = {
                "activation": backends.ACTIVATIONS,
                "cost": backends.COSTS,
                "init": INITS,
                "dtype": ("float32", "float64"),
                "backend": ("auto", *backends.NAMES),
                "optimizer": ("default", "sgd"),
            }[key]
            if not isinstance(value, str) or value.lower() not in choices:
                raise SweepError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
            return value.lower()
        if key == "eta":
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise SweepError(f"{where}: the learning rate must be a positive number, got {value!r}")
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise SweepError(f"{where}: the learning rate must be a positive finite number, got {value!r}")
            return float(value)
        # batch_size, epochs, limit
        low = 0 if key == "limit" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SweepError(f"{where}: must be an integer of at least {low}, got {value!r}")
        return int(value)
    except SweepError:
        raise
    except (TypeError, ValueError) as exc:
        raise SweepError(f"{where}: {exc}") from None


def _check_config(config: dict[str, Any]) -> None:
    """Checks that involve several keys of one run (on the datasets' fixed shape)."""
    sizes = config["sizes"]
    if sizes[0] != 784 or sizes[-1] != 10:
        raise SweepError(
            f"grid['sizes']: {sizes} does not fit the dataset's 784 inputs and 10 classes "
            "(the first width must be 784 and the last 10)"
        )
    if config["limit"] and config["batch_size"] > config["limit"]:
        raise SweepError(
            f"grid['batch_size']: {config['batch_size']} is larger than grid['limit'] ({config['limit']}), "
            "the number of training images"
        )


def expand_grid(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a grid's values, each a full configuration (defaults filled in).

    Parameters
    ----------
    grid : mapping of str to list
        Keys from :data:`GRID_KEYS` (``sizes``, ``activation``, ``cost``, ``init``, ``dtype``,
        ``backend``, ``eta``, ``batch_size``, ``epochs``, ``optimizer``, ``limit``), each with a
        non-empty list of values. ``sizes`` takes a list of layer-width lists.

    Returns
    -------
    list of dict
        One configuration per combination, keyed by all of :data:`GRID_KEYS`, in the order of
        the grid's keys and values (the last key varying fastest).

    Raises
    ------
    SweepError
        For an unknown key, an empty or non-list value list, or a value that a network or ``fit``
        would refuse; the message names the key.
    """
    if not isinstance(grid, Mapping):
        raise SweepError(f"grid must be a dict of lists, got {type(grid).__name__}")
    values: dict[str, list[Any]] = {}
    for key, entries in grid.items():
        if key not in DEFAULTS:
            hint = " (give seeds with the seeds= argument)" if key == "seed" else ""
            raise SweepError(f"grid has an unknown key {key!r}{hint}; allowed keys: {', '.join(GRID_KEYS)}")
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or len(entries) == 0:
            raise SweepError(f"grid[{key!r}] must be a non-empty list of values, got {entries!r}")
        if key == "sizes" and all(isinstance(e, (int, np.integer)) for e in entries):
            raise SweepError(f"grid['sizes'] must be a list of layer-width lists, e.g. [{list(entries)!r}]")
        checked = [_check_value(key, e) for e in entries]
        dupes = [e for k, e in enumerate(checked) if e in checked[:k]]
        if dupes:
            raise SweepError(f"grid[{key!r}] lists {dupes[0]!r} more than once")
        values[key] = checked
    configs = []
    for combo in itertools.product(*values.values()):
        config = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
        config.update(zip(values, combo))
        _check_config(config)
        configs.append(config)
    return configs


def sweep_seeds(seeds: int | Sequence[int] = 3, seed: int = 0) -> list[int]:
    """The integer seeds of a sweep.

    Parameters
    ----------
    seeds : int or sequence of int
        ``n``: ``n`` seeds spawned from ``numpy.random.SeedSequence(seed)``, child ``k`` giving
        ``int(child.generate_state(1)[0])``. A sequence: those seeds, as given.
    seed : int
        Root of the spawned seeds.

    Returns
    -------
    list of int
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SweepError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SweepError(f"seeds must be at least 1, got {seeds}")
        return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(int(seed)).spawn(int(seeds))]
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise SweepError(f"seeds must be a positive integer or a non-empty list of seeds, got {seeds!r}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise SweepError(f"seeds must hold non-negative integers, got {s!r}")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise SweepError(f"seeds lists a seed more than once: {out}")
    return out


def run_id(dataset: str, config: Mapping[str, Any], seed: int) -> str:
    """A stable identifier of a run: a hash of its dataset, full configuration and seed."""
    key = {"dataset": dataset, "seed": int(seed), **{k: config[k] for k in GRID_KEYS}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# One run (in a worker process or in this one)

_data_lock = threading.Lock()
_data_cache: dict[tuple[str, str | None, str, str], tuple[np.ndarray, np.ndarray]] = {}


def _dataset(dataset: str, split: Split, data_dir: str | None, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The split, loaded once per process (each worker keeps its own copy)."""
    key = (dataset, data_dir, split, dtype)
    with _data_lock:
        if key not in _data_cache:
            from .data import load_fashion_mnist, load_mnist

            loader = load_mnist if dataset == "mnist" else load_fashion_mnist
            X, y = loader(split, data_dir=data_dir, dtype=dtype)
            X.flags.writeable = False
            _data_cache[key] = (X, y)
        return _data_cache[key]


def run_one(
    config: Mapping[str, Any],
    seed: int,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    cap_threads: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one run of a sweep, in this process.

    Parameters
    ----------
    config : mapping
        A full configuration, as :func:`expand_grid` returns.
    seed : int
        Seed of the initialisation and of the shuffling.
    dataset : {"mnist", "fashion-mnist"}
    data_dir : path, optional
        Folder of the dataset on the machine that runs this (see :func:`fastgd.load_mnist`).
    cap_threads : bool
        Set the compute-thread variables (:data:`THREAD_CAPS`) to one where not set yet; tasks on a
        Dask worker do so.

    Returns
    -------
    dict
        The run's record: ``run_id``, ``dataset``, its configuration, ``seed``, ``final_cost``
        (mean cost over the training images after training), ``train_accuracy``, ``test_cost``,
        ``test_accuracy``, ``seconds`` (of training), ``backend_used``, ``worker`` (host and
        process id) and ``error`` (empty, or why the run diverged, its numbers then NaN).
    """
    if cap_threads:
        for name, value in THREAD_CAPS.items():
            os.environ.setdefault(name, value)
    from .network import Network

    data_dir = None if data_dir is None else os.fspath(data_dir)
    X, y = _dataset(dataset, "train", data_dir, config["dtype"])
    Xt, yt = _dataset(dataset, "test", data_dir, config["dtype"])
    if config["limit"]:
        X, y = X[: config["limit"]], y[: config["limit"]]
    net = Network(config["sizes"], activation=config["activation"], cost=config["cost"], init=config["init"],
                  seed=seed, dtype=config["dtype"], backend=config["backend"])  # fmt: skip
    record: dict[str, Any] = {"run_id": run_id(dataset, config, seed), "dataset": dataset}
    record.update({k: (list(config[k]) if k == "sizes" else config[k]) for k in GRID_KEYS})
    record["seed"] = int(seed)
    t0 = time.perf_counter()
    try:
        net.fit(X, y, epochs=config["epochs"], batch_size=config["batch_size"], eta=config["eta"],
                optimizer=config["optimizer"], seed=seed)  # fmt: skip
        error = ""
    except DivergenceError as exc:
        error = str(exc)
    seconds = time.perf_counter() - t0
    if error:
        record.update(dict.fromkeys(RESULT_KEYS[:-1], math.nan))
    else:
        record.update(final_cost=net.cost(X, y), train_accuracy=net.score(X, y), test_cost=net.cost(Xt, yt),
                      test_accuracy=net.score(Xt, yt))  # fmt: skip
    record.update(seconds=seconds, backend_used=net.backend, worker=f"{socket.gethostname()}:{os.getpid()}",
                  error=error)  # fmt: skip
    return record


# --------------------------------------------------------------------------------------------
# CSV


def _format(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "sizes":
        return "-".join(str(int(s)) for s in value)
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def _parse(column: str, text: str) -> Any:
    if column == "sizes":
        return [int(s) for s in text.split("-")]
    if column in _INT_COLUMNS:
        return int(text)
    if column in _FLOAT_COLUMNS:
        return None if text == "" else float(text)
    return text


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a sweep's CSV file, typed as :func:`sweep` returns them.

    Raises
    ------
    SweepError
        If the file is not a sweep's CSV (missing columns, a value that does not parse); the
        message names the file and the line.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise SweepError(f"{path} is not a fastgd sweep CSV: it lacks the column(s) {', '.join(missing)}")
        records = []
        for line, row in enumerate(reader, start=2):
            try:
                records.append({c: _parse(c, row[c] if row[c] is not None else "") for c in COLUMNS})
            except (TypeError, ValueError) as exc:
                raise SweepError(f"{path}, line {line}: cannot read the record ({exc})") from None
    return records


def _write_csv(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write the records to a temporary file beside ``path``, then rename it over ``path``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in records:
        writer.writerow([_format(c, r.get(c)) for c in COLUMNS])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# The sweep


def _import_distributed(scheduler: Any) -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(_DASK_MISSING.format(scheduler)) from exc
    return distributed


def _check_n_jobs(n_jobs: Any) -> int:
    if n_jobs is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise SweepError(f"n_jobs must be a positive integer (worker processes), got {n_jobs!r}")
    return int(n_jobs)


def sweep(
    grid: Mapping[str, Sequence[Any]],
    seeds: int | Sequence[int] = 3,
    n_jobs: int | None = None,
    scheduler: Any = None,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    retries: int = 1,
    progress: Callable[[dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Train every combination of ``grid`` for every seed, in parallel, and collect the results.

    Parameters
    ----------
    grid : mapping of str to list
        ``Network`` and ``fit`` settings to combine, each with a list of values, e.g.
        ``{"sizes": [[784, 16, 10]], "eta": [0.5, 3.0], "epochs": [1]}``. Keys: ``sizes``,
        ``activation``, ``cost``, ``init``, ``dtype``, ``backend``, ``eta``, ``batch_size``,
        ``epochs``, ``optimizer`` and ``limit`` (train on the first ``limit`` images; 0, the
        default, for all). Keys left out take fastgd's defaults (``epochs`` 30, ``batch_size`` 10).
    seeds : int or sequence of int
        ``n`` seeds spawned from ``numpy.random.SeedSequence(seed)`` (see :func:`sweep_seeds`), or
        the seeds themselves. Every configuration runs with every seed.
    n_jobs : int, optional
        Worker processes of the local cluster (default: the number of CPUs this process may use).
        Ignored with a ``scheduler``.
    scheduler : None, str or dask.distributed.Client
        ``None``: a local Dask cluster of ``n_jobs`` processes, one thread each, started and shut
        down by this call. ``"tcp://host:8786"``: the Dask scheduler at that address. A ``Client``:
        that client's cluster (left open). ``"synchronous"``: one run after another in this
        process, without Dask.
    dataset : {"mnist", "fashion-mnist"}
    data_dir : path, optional
        Folder of the dataset on the workers (default: each worker's ``$FASTGD_DATA``, then its
        cache, downloading).
    seed : int
        Root of the spawned seeds when ``seeds`` is an integer.
    out : path, optional
        CSV file of the records, rewritten atomically as results arrive. Runs it already holds
        (same ``run_id``) are taken from it instead of being run again; records of other runs in
        it are kept.
    plot : path, optional
        PNG file of test accuracy and final cost against the grid's settings (see
        :func:`plot_sweep`). Without matplotlib, a one-line notice on stderr replaces it.
    retries : int
        Times Dask runs a task again after it raised (a worker that dies is handled by Dask's
        scheduler, which reschedules its tasks). A run that diverges is not an error: its record
        holds NaN and the reason in ``error``.
    progress : callable, optional
        Called with each record computed by this call, as it arrives (not for resumed runs).

    Returns
    -------
    list of dict
        One record per run (configurations in grid order, seeds within each), with the keys of
        :func:`run_one`.

    Raises
    ------
    SweepError
        For a bad grid, seed list or option, before anything runs.
    ImportError
        If Dask is needed but missing (``pip install "fastgd[dask]"``).
    """
    configs = expand_grid(grid)
    seed_list = sweep_seeds(seeds, seed)
    if dataset not in DATASETS:
        raise SweepError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, got {dataset!r}")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise SweepError(f"retries must be a non-negative integer, got {retries!r}")
    n_jobs = _check_n_jobs(n_jobs)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    out_path = None if out is None else Path(out)
    if out_path is not None and not out_path.parent.is_dir():
        raise SweepError(f"out: the folder {out_path.parent} does not exist")
    plot_path = None if plot is None else Path(plot)
    if plot_path is not None and not plot_path.parent.is_dir():
        raise SweepError(f"plot: the folder {plot_path.parent} does not exist")

    runs = [(run_id(dataset, c, s), c, s) for c in configs for s in seed_list]
    done: dict[str, dict[str, Any]] = {}
    if out_path is not None and out_path.exists():
        done = {r["run_id"]: r for r in read_csv(out_path)}
    todo = [(rid, c, s) for rid, c, s in runs if rid not in done]
    planned = {rid: k for k, (rid, _, _) in enumerate(runs)}

    def arrived(records: list[dict[str, Any]]) -> None:
        for r in records:
            done[r["run_id"]] = r
        if out_path is not None:  # this sweep's runs in grid order, then any others the file held
            ordered = [done[rid] for rid in planned if rid in done]
            _write_csv(out_path, ordered + [r for rid, r in done.items() if rid not in planned])
        if progress is not None:
            for r in records:
                progress(r)

    if todo:
        if scheduler == SYNCHRONOUS:
            for _, c, s in todo:
                arrived([run_one(c, s, dataset, data_dir)])
        else:
            _run_on_dask(todo, scheduler, n_jobs, dataset, data_dir, int(retries), arrived)
    results = [done[rid] for rid, _, _ in runs]
    if plot_path is not None:
        try:
            plot_sweep(results, path=plot_path)
        except ImportError as exc:
            print(f"fastgd sweep: no plot ({exc})", file=sys.stderr)
    return results


def _run_on_dask(
    todo: list[tuple[str, dict[str, Any], int]],
    scheduler: Any,
    n_jobs: int,
    dataset: str,
    data_dir: str | None,
    retries: int,
    arrived: Callable[[list[dict[str, Any]]], None],
) -> None:
    distributed = _import_distributed(scheduler)
    cluster = client = None
    if scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=n_jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            env=dict(THREAD_CAPS), scheduler_kwargs=_NO_DASHBOARD,
        )  # fmt: skip
        client = distributed.Client(cluster)
    elif isinstance(scheduler, str):
        try:
            client = distributed.Client(scheduler)
        except OSError as exc:
            raise OSError(f"scheduler: cannot reach the Dask scheduler at {scheduler!r} ({exc})") from exc
    elif isinstance(scheduler, distributed.Client):
        pass
    else:
        raise SweepError(
            f"scheduler must be None, 'synchronous', an address like 'tcp://host:8786' or a "
            f"dask.distributed.Client, got {scheduler!r}"
        )
    active = client if client is not None else scheduler
    futures = []
    # Keys unique to this call: a key cancelled by an interrupted sweep may still be in the scheduler.
    call = uuid.uuid4().hex[:8]
    try:
        futures = [
            active.submit(run_one, c, s, dataset, data_dir, True, key=f"fastgd-run-{rid}-{call}", pure=False,
                          retries=retries)  # fmt: skip
            for rid, c, s in todo
        ]
        for batch in distributed.as_completed(futures, with_results=True).batches():
            arrived([result for _, result in batch])
    finally:
        for f in futures:
            f.cancel()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------------------------
# Picture and table


def _varying(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The grid keys whose value differs between the records."""
    return [k for k in GRID_KEYS if len({json.dumps(r[k]) for r in records}) > 1]


def _label(key: str, value: Any) -> str:
    return _format(key, value) if value is not None else "default"


def plot_sweep(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str] | None = None) -> Any:
    """Test accuracy and final cost of a sweep's runs against its settings.

    The setting that varies most (numeric first) is the horizontal axis; every other combination
    of varying settings is a line through the median over the seeds, each seed a dot.

    Parameters
    ----------
    records : sequence of dict
        As :func:`sweep` returns them.
    path : path, optional
        Save the figure there as PNG (written to a temporary file, then renamed).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is missing (``pip install "fastgd[plot]"``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('plotting needs matplotlib: pip install "fastgd[plot]"') from exc
    if not records:
        raise SweepError("plot_sweep: there are no records to plot")
    varying = _varying(records)
    numeric = [k for k in varying if all(isinstance(r[k], (int, float)) and r[k] is not None for r in records)]
    xkey = max(numeric or varying, key=lambda k: len({json.dumps(r[k]) for r in records}), default=None)
    series_keys = [k for k in varying if k != xkey]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        name = ", ".join(f"{k}={_label(k, r[k])}" for k in series_keys) or "runs"
        groups.setdefault(name, []).append(r)
    xvalues = [] if xkey is None else list(dict.fromkeys(json.dumps(r[xkey]) for r in records))
    for ax, metric, title in ((axes[0], "test_accuracy", "test accuracy"), (axes[1], "final_cost", "final cost")):
        for name, rs in groups.items():
            xs, meds = [], []
            for i, xv in enumerate(xvalues or ["null"]):
                ys = [r[metric] for r in rs if xkey is None or json.dumps(r[xkey]) == xv]
                ys = [v for v in ys if v is not None and math.isfinite(v)]
                x = float(json.loads(xv)) if xkey in numeric else i
                ax.plot([x] * len(ys), ys, ".", alpha=0.5, color="0.4")
                if ys:
                    xs.append(x)
                    meds.append(statistics.median(ys))
            ax.plot(xs, meds, "o-", label=name)
        if xkey is None:
            ax.set_xticks([0], ["all runs"])
        elif xkey in numeric:
            ax.set_xlabel(xkey)
            values = [float(json.loads(v)) for v in xvalues]
            if min(values) > 0 and max(values) / min(values) >= 20:
                ax.set_xscale("log")
        else:
            ax.set_xlabel(xkey)
            ax.set_xticks(range(len(xvalues)), [_label(xkey, json.loads(v)) for v in xvalues])
        ax.set_title(f"{title} (median over seeds; dots: seeds)")
        ax.grid(alpha=0.3)
    if len(groups) > 1:
        axes[0].legend(fontsize="small")
    if path is not None:
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", dpi=100)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return fig


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The records as a text table: the varying settings, seed, and the results."""
    varying = _varying(records) if len(records) > 1 else []
    head = [*varying, "seed", "final cost", "train acc", "test acc", "seconds"]
    rows = [
        [*(_label(k, r[k]) for k in varying), str(r["seed"]), f"{r['final_cost']:.5f}", f"{r['train_accuracy']:.2%}",
         f"{r['test_accuracy']:.2%}", f"{r['seconds']:.3f}"] + (["diverged"] if r["error"] else [])  # fmt: skip
        for r in records
    ]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) + ("  " + row[-1] if len(row) > len(head) else "")
              for row in rows]  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Configuration files and the command line

_OPTION_KEYS = ("seeds", "seed", "n_jobs", "scheduler", "dataset", "data_dir", "out", "plot", "retries")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sweep's configuration from a JSON or TOML file.

    The file holds a ``grid`` table (or object) of lists, and optionally the options of
    :func:`sweep`: ``seeds``, ``seed``, ``n_jobs``, ``scheduler``, ``dataset``, ``data_dir``,
    ``out``, ``plot``, ``retries``. TOML example::

        seeds = 3
        out = "sweep.csv"
        [grid]
        sizes = [[784, 16, 10], [784, 16, 16, 10]]
        eta = [0.05, 0.1, 0.2]
        epochs = [5]

    Relative ``out``, ``plot`` and ``data_dir`` paths are taken relative to the file's folder.

    Returns
    -------
    dict
        ``{"grid": {...}, **options}``, the grid checked with :func:`expand_grid`.

    Raises
    ------
    SweepError
        For a file that does not parse, lacks ``grid``, or holds an unknown key; the message names
        the file.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:
                import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]  # installed on 3.10 only
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise SweepError(f"{path}: a sweep configuration must be a .toml or .json file")
    except SweepError:
        raise
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise SweepError(f"{path}: cannot parse the configuration ({exc})") from None
    if not isinstance(data, dict) or "grid" not in data:
        raise SweepError(f"{path}: the configuration needs a 'grid' of settings, e.g. grid = {{eta = [0.1, 1.0]}}")
    unknown = [k for k in data if k != "grid" and k not in _OPTION_KEYS]
    if unknown:
        raise SweepError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: grid, {', '.join(_OPTION_KEYS)}"
        )
    try:
        expand_grid(data["grid"])
    except SweepError as exc:
        raise SweepError(f"{path}: {exc}") from None
    for key in ("out", "plot", "data_dir"):
        if key in data:
            if not isinstance(data[key], str):
                raise SweepError(f"{path}: {key} must be a path (a string), got {data[key]!r}")
            data[key] = str(path.parent / Path(data[key]).expanduser())
    return data


def add_arguments(p: Any) -> None:
    """The options of ``fastgd sweep`` (an ``argparse`` parser)."""
    p.add_argument("config", help="JSON or TOML file holding the grid and options (see fastgd.sweep.load_config)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (tcp://host:8786), or 'synchronous' (this process); "
                   "default: the file's, else a local cluster")  # fmt: skip
    p.add_argument("--n-jobs", type=int, default=None, help="worker processes of the local cluster (default: CPUs)")
    p.add_argument("--out", default=None, help="CSV of the results (default: the file's, else CONFIG with .csv)")
    p.add_argument("--plot", default=None, help="PNG of the results (default: the file's, else CONFIG with .png)")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder on the workers (default: the file's, else $FASTGD_DATA)")  # fmt: skip


def run_command(args: Any) -> int:
    """``fastgd sweep CONFIG``: run, print a table and a summary, write the CSV and the plot."""
    config = load_config(args.config)
    grid = config.pop("grid")
    base = Path(args.config)
    for key, suffix in (("out", ".csv"), ("plot", ".png")):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
        config.setdefault(key, str(base.with_suffix(suffix)))
    for key in ("scheduler", "n_jobs", "data_dir"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    ran: list[dict[str, Any]] = []

    def progress(r: dict[str, Any]) -> None:
        ran.append(r)
        note = "diverged" if r["error"] else f"test accuracy {r['test_accuracy']:.2%}"
        print(f"[{len(ran)}] run {r['run_id']} seed {r['seed']}: {note}, {r['seconds']:.2f} s", flush=True)

    t0 = time.perf_counter()
    results = sweep(grid, progress=progress, **config)
    wall = time.perf_counter() - t0
    print(format_table(results))
    train = sum(r["seconds"] for r in ran)
    print(f"{len(results)} runs ({len(ran)} run now, {len(results) - len(ran)} already in {config['out']}) in "
          f"{wall:.2f} s, {train:.2f} s of it training; results in {config['out']}")  # fmt: skip
    return 0
