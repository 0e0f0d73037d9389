"""Threads: networks trained in parallel Python threads give the results of training them in turn.

The C++ kernels release the GIL, so different networks train at the same time (the wall-time
gain is measured by ``benchmarks/threads.py``, not asserted here). What is not safe, one network
fitted from two threads at once, raises ``RuntimeError`` instead of interleaving the updates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import require_backend

from fastgd import Network


def problem(seed: int, n: int = 400, n_in: int = 20, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, n_in))
    return X, np.argmax(X @ rng.standard_normal((n_in, n_classes)), axis=1)


CONFIGS = [
    # (Network kwargs, fit kwargs): plain SGD at batch 10, and batches above 16 rows, which the C++
    # core also splits over its own worker threads, with momentum and L2; then a first layer of 256
    # inputs or more, which the C++ core splits between two threads at any batch below 256 rows (two
    # trainings at once: one has the workers, the other runs on its own thread, and the workers leave
    # the first when they see the second)
    (dict(sizes=[20, 16, 16, 4], dtype="float32", seed=1), dict(epochs=3, batch_size=10, seed=5)),
    (dict(sizes=[20, 24, 4], dtype="float64", seed=2, activation="relu", cost="cross-entropy"),
     dict(epochs=3, batch_size=50, seed=6, optimizer="default")),
    (dict(sizes=[300, 16, 10, 4], dtype="float32", seed=3), dict(epochs=3, batch_size=10, seed=7)),
    (dict(sizes=[300, 12, 4], dtype="float64", seed=4), dict(epochs=2, batch_size=40, seed=8, optimizer="default")),
]  # fmt: skip


def run_in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in one thread each, all released at once; return their results (re-raise errors)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def target(k: int) -> None:
        try:
            barrier.wait(30)
            results[k] = calls[k]()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a training thread did not finish"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_two_networks_in_two_threads_equal_serial_training(backend, config: int) -> None:  # noqa: ANN001
    net_kw, fit_kw = CONFIGS[config]

    def make(k: int) -> tuple[Network, np.ndarray, np.ndarray]:
        X, y = problem(10 + k, n_in=net_kw["sizes"][0])
        return Network(**{**net_kw, "seed": net_kw["seed"] + k}, backend=backend.NAME), X, y

    serial = []
    for k in range(2):
        net, X, y = make(k)
        net.fit(X, y, **fit_kw)
        serial.append(net)
    parallel = [make(k) for k in range(2)]
    histories = run_in_threads([lambda p=p: p[0].fit(p[1], p[2], **fit_kw) for p in parallel])
    for (net, _, _), alone, history in zip(parallel, serial, histories):
        assert np.array_equal(net.theta, alone.theta)
        assert history.train_cost == alone.history.train_cost
    assert not np.array_equal(parallel[0][0].theta, parallel[1][0].theta)


def test_many_threads_predicting_with_one_network(backend) -> None:  # noqa: ANN001
    """Evaluation only reads the parameters: any number of threads may share a network."""
    X, y = problem(3, n=2000)
    net = Network([20, 16, 16, 4], backend=backend.NAME, seed=4)
    expected = (net.predict(X), net.forward(X), net.cost(X, y))
    results = run_in_threads([lambda: (net.predict(X), net.forward(X), net.cost(X, y))] * 4)
    for labels, outputs, cost in results:
        assert np.array_equal(labels, expected[0]) and np.array_equal(outputs, expected[1]) and cost == expected[2]


def test_one_network_fitted_from_two_threads_raises_and_is_not_corrupted(backend) -> None:  # noqa: ANN001
    """The second fit is refused while the first runs; the first finishes as if it had been alone."""
    X, y = problem(4, n=2000)
    alone = Network([20, 16, 4], backend=backend.NAME, seed=7)
    alone.fit(X, y, epochs=4, batch_size=10, seed=3)

    net = Network([20, 16, 4], backend=backend.NAME, seed=7)
    in_first_epoch = threading.Event()
    second_done = threading.Event()
    refused: list[BaseException] = []

    def callback(n: Network, history: Any) -> None:
        if len(history) == 1:  # between the epochs of the first fit
            in_first_epoch.set()
            second_done.wait(60)

    def first() -> None:
        net.fit(X, y, epochs=4, batch_size=10, seed=3, callback=callback)

    def second() -> None:
        in_first_epoch.wait(60)
        try:
            net.fit(X, y, epochs=1, seed=99)
        except RuntimeError as exc:
            refused.append(exc)
        finally:
            second_done.set()

    run_in_threads([first, second])
    assert refused and "already being trained in another thread" in str(refused[0])
    assert np.array_equal(net.theta, alone.theta)
    assert net.history.epoch == [1, 2, 3, 4]
    # once the first fit has returned, the network trains again
    net.fit(X, y, epochs=1)
    assert net.history.epoch == [1, 2, 3, 4, 5]


def test_numba_training_from_two_threads_at_once() -> None:
    """The Numba backend's teams of threads are its own Python threads, never a parallel region of Numba's
    threading layer (whose fallback, "workqueue", aborts the process on concurrent parallel calls): two Python
    threads training at once on that layer, with teams (``fit`` at batch 10 with 300 inputs: the split first
    layer; ``train_many`` at batch 100: the slices), finish with the results of the same calls made in turn."""
    require_backend("numba")
    code = textwrap.dedent(
        """
        import threading, numpy as np, numba, fastgd
        rng = np.random.default_rng(0)
        X, y = rng.random((600, 300)).astype(np.float32), rng.integers(0, 10, 600)
        X[X < 0.5] = 0
        def work(seed, out):
            for _ in range(3):
                net = fastgd.Network([300, 9, 10], seed=seed, backend="numba", dtype="float32")
                net.fit(X, y, epochs=2, batch_size=10, seed=seed)
                pop = fastgd.train_many([300, 9, 10], X, y, seeds=[seed, seed + 1], epochs=2, batch_size=100,
                                        backend="numba", dtype="float32")
                out.append(np.concatenate([net.theta, *(n.theta for n in pop.networks)]))
        alone = {1: [], 2: []}
        for seed in alone:
            work(seed, alone[seed])
        together = {1: [], 2: []}
        threads = [threading.Thread(target=work, args=(seed, together[seed])) for seed in together]
        [t.start() for t in threads]; [t.join() for t in threads]
        assert numba.get_num_threads() >= 2, numba.get_num_threads()
        for seed in alone:
            assert len(together[seed]) == 3
            assert all(np.array_equal(a, b) for a, b in zip(alone[seed], together[seed])), seed
        print("finished")
        """
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "NUMBA_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "finished", run.stdout + run.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_cpp_worker_threads_default_to_the_cpus_the_process_may_use() -> None:
    """Without FASTGD_NUM_THREADS, the C++ kernels start as many threads as the process has CPUs in its
    affinity mask (taskset, a container's cpuset), not every CPU of the machine: two threads on one
    allowed CPU would take turns and spin for each other. Checked with the mask cut to one CPU and with
    the whole mask; FASTGD_NUM_THREADS still overrides the mask."""
    require_backend("cpp")
    code = textwrap.dedent(
        """
        import os, sys
        if sys.argv[1] == "one":
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import fastgd._core
        print(fastgd._core.build_info()["threads"], len(os.sched_getaffinity(0)))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "FASTGD_NUM_THREADS"}
    for mask, extra in (("one", {}), ("all", {}), ("one", {"FASTGD_NUM_THREADS": "3"})):
        out = subprocess.run([sys.executable, "-c", code, mask], env={**env, **extra}, check=True,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        threads, allowed = int(out[0]), int(out[1])
        expected = int(extra["FASTGD_NUM_THREADS"]) if extra else min(allowed, 64)
        assert threads == expected, (mask, extra, out)


def test_cpp_training_with_more_worker_threads_than_tasks_finishes() -> None:
    """An epoch of large mini-batches is led by its task 0, which must run on the calling thread (it
    calls the Ctrl-C check) while the other tasks help. With more worker threads than tasks (here 4
    threads, and mini-batches of 100 rows in two slices), the workers could take every task and none
    led: the epoch spun forever. Many short epochs, in a subprocess with a timeout so that a hang
    fails the test; both sizes of first layer (the 784-input one is split by its inputs)."""
    require_backend("cpp")
    code = textwrap.dedent(
        """
        import numpy as np, fastgd
        rng = np.random.default_rng(0)
        for n_in in (30, 784):
            X, y = rng.random((400, n_in), dtype=np.float32), rng.integers(0, 10, 400)
            for batch in (10, 100):
                net = fastgd.Network([n_in, 16, 10], backend="cpp", dtype="float32", seed=0)
                net.fit(X, y, epochs=200, batch_size=batch, eta=0.1, optimizer="sgd")
        print("finished", fastgd._core.build_info()["threads"])
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "FASTGD_NUM_THREADS": "4"})  # fmt: skip
    assert run.returncode == 0 and run.stdout.split() == ["finished", "4"], run.stdout + run.stderr


def test_cpp_pool_runs_each_task_once_when_a_worker_is_late() -> None:
    """The worker pool's calls follow each other within microseconds. A worker that reads one call
    (its function, context and task count) and loses the processor before taking a task must take
    nothing of the next call: it once took a task of the next call and, with its stale count, either
    ran the finished call's function on it or skipped it, and the next call then waited for ever (a
    CI run hung in ``Network.score`` after ``fit``). ``_pool_check`` makes every worker sleep there
    (pause_us) through 20,000 calls of 2, 3 and 4 tasks and counts the tasks run other than once
    or after their call returned; the pool as it was hangs at pauses of 20 and 200 us. In a
    subprocess with a timeout, so that a hang fails the test. With no pause the workers must take
    part, or the check would test nothing."""
    require_backend("cpp")
    code = textwrap.dedent(
        """
        import fastgd._core as core
        for pause_us in (0, 20, 200):
            print(pause_us, *core._pool_check(20000, pause_us))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FASTGD_NUM_THREADS": "2"})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [[int(v) for v in line.split()] for line in run.stdout.splitlines()]
    assert [(pause, faults) for pause, faults, _ in rows] == [(0, 0), (20, 0), (200, 0)], run.stdout
    assert rows[0][2] > 0, f"no task ran on a worker: {run.stdout}"


def test_cpp_pool_check_rejects_negative_arguments() -> None:
    require_backend("cpp")
    from fastgd import _core

    for calls, pause_us in ((-1, 0), (10, -5)):
        with pytest.raises(ValueError, match="calls and pause_us must be >= 0"):
            _core._pool_check(calls, pause_us)


# A script for the tests below: the same network at batch 10 (the split first layer) and 100 (row slices)
# on random digits, 3 epochs each, in a process pinned to one CPU (argument "pinned") or not; it prints per
# batch size the SHA-256 of the parameters and the two counts of the backend's _team_last_epoch() summed
# over the epochs (the work its leader ran alone, and all its team's work).
PINNED_TEAM = textwrap.dedent(
    """
    import hashlib, os, sys
    if sys.argv[1] == "pinned":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np, fastgd
    backend = sys.argv[2]
    if backend == "cpp":
        from fastgd._core import _team_last_epoch
    else:
        from fastgd.backends._numba import _team_last_epoch
    rng = np.random.default_rng(0)
    X = rng.random((20000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 20000)
    for batch in (10, 100):
        net = fastgd.Network([784, 16, 16, 10], seed=0, backend=backend, dtype="float32")
        alone = work = 0
        for epoch in range(3):
            net.fit(X, y, epochs=1, batch_size=batch, eta=3.0, optimizer="sgd", seed=epoch)
            a, w = _team_last_epoch()
            alone, work = alone + a, work + w
        print(batch, hashlib.sha256(net.theta.tobytes()).hexdigest(), alone, work)
    """
)


def pinned_team_runs(backend: str, threads_variable: str) -> dict[str, list[list[str]]]:
    """PINNED_TEAM's lines per run: one thread, two free threads, two threads pinned to one CPU."""
    require_backend(backend)
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("os.sched_setaffinity is not available on this platform")
    runs = {}
    for name, threads, where in (("one", "1", "free"), ("two", "2", "free"), ("pinned", "2", "pinned")):
        run = subprocess.run([sys.executable, "-c", PINNED_TEAM, where, backend], capture_output=True, text=True,
                             timeout=600, env={**os.environ, threads_variable: threads})  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        runs[name] = [line.split() for line in run.stdout.splitlines()]
    digests = {name: [row[:2] for row in rows] for name, rows in runs.items()}
    assert digests["pinned"] == digests["one"] == digests["two"], runs
    for batch, _, alone, work in runs["pinned"]:
        assert int(work) > 0 and int(alone) > 0, f"batch {batch}: the leader never worked alone: {runs}"
    return runs


def test_numba_team_on_one_cpu_works_alone_with_the_same_results() -> None:
    """The Numba backend's teams choose as the C++ backend's do (see the test below), for each call of their
    leader (a window of a millisecond or more) instead of a window of phases: pinned to one CPU with
    NUMBA_NUM_THREADS=2, the leader must have worked alone for some of its rows, with the bits of one thread
    and of two free threads, at batch 10 (the split first layer) and 100 (row slices). Its counts are rows:
    every row of the three epochs of a team, none on one thread."""
    runs = pinned_team_runs("numba", "NUMBA_NUM_THREADS")
    for batch, _, _alone, rows in runs["two"] + runs["pinned"]:
        assert int(rows) == 3 * 20000, f"batch {batch}: the team did not train every row: {runs}"
    for batch, _, alone, rows in runs["one"]:
        assert (int(alone), int(rows)) == (0, 0), f"batch {batch}: one thread made a team: {runs}"


def test_cpp_team_on_one_cpu_works_alone_with_the_same_results() -> None:
    """Two threads that must take turns on one CPU (FASTGD_NUM_THREADS=2 in a process pinned to one)
    would make every mini-batch wait for a thread that is not running: the leader notices (it ran
    for less than 80% of a window, or waited for a helper for over a millisecond), tries working
    alone, and keeps to it while it is faster. Its phases then run on one thread; the parameters
    must be bit-identical to one thread's and to two free threads', at batch 10 (the split first
    layer) and 100 (row slices)."""
    pinned_team_runs("cpp", "FASTGD_NUM_THREADS")
