"""What a sweep's task costs on a local Dask cluster: the overhead per task, and a real run's time.

    FASTGD_DATA=/path/to/mnist python benchmarks/sweep_overhead.py [--workers 2] [--tasks 400] [--real 8]

The sweeps run on a ``LocalCluster`` set up as ``fastgd.sweep`` sets up its own (one process per
worker, one thread each, compute threads capped at one), after a warm-up sweep that loads MNIST
in every worker:

* trivial tasks (a 784-10 network, one mini-batch of 10 images, then the evaluation on the 10,000
  test images that every run does): ``sweep``'s wall time per task in worker-seconds (wall time x
  workers / tasks), minus the time the same tasks take inside the workers (timed there), is the
  overhead the cluster adds to each task; a Dask task doing nothing gives Dask's own share;
* real tasks (784-16-16-10, one epoch over the 60,000 training images, batch 10): their time in
  this process alone, and the time per task of the cluster, which is what scales with workers.
"""

from __future__ import annotations

import argparse
import os
import time

import distributed

import fastgd
from fastgd.sweep import _NO_DASHBOARD, THREAD_CAPS, expand_grid, run_one, sweep

TRIVIAL = {"sizes": [[784, 10]], "limit": [10], "epochs": [1], "batch_size": [10]}
REAL = {"sizes": [[784, 16, 16, 10]], "epochs": [1], "batch_size": [10]}


def timed(grid: dict, seeds: int, scheduler: object) -> float:
    t0 = time.perf_counter()
    results = sweep(grid, seeds=seeds, scheduler=scheduler)
    elapsed = time.perf_counter() - t0
    assert len(results) == seeds and not any(r["error"] for r in results)
    return elapsed


def timed_run_one(config: dict, seed: int) -> float:
    t0 = time.perf_counter()
    run_one(config, seed, cap_threads=True)
    return time.perf_counter() - t0


def nothing(x: int) -> int:
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--tasks", type=int, default=400, help="trivial tasks (default: 400)")
    parser.add_argument("--real", type=int, default=8, help="real tasks (default: 8)")
    args = parser.parse_args()
    for name, value in THREAD_CAPS.items():  # the synchronous runs get the workers' one thread too
        os.environ[name] = value
    print(f"fastgd {fastgd.__version__}, dask {distributed.__version__}, {os.cpu_count()} CPUs, "
          f"{args.workers} workers, backend {fastgd.BACKEND}")  # fmt: skip

    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, env=dict(THREAD_CAPS), scheduler_kwargs=_NO_DASHBOARD
                                  ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        timed(TRIVIAL, args.workers * 2, client)  # every worker loads MNIST once
        warm = time.perf_counter() - t0
        cluster_trivial = timed(TRIVIAL, args.tasks, client)
        config = expand_grid(TRIVIAL)[0]
        inside = client.gather([client.submit(timed_run_one, config, i, pure=False) for i in range(args.tasks)])
        t0 = time.perf_counter()
        client.gather(client.map(nothing, range(args.tasks), pure=False))
        bare = (time.perf_counter() - t0) * args.workers / args.tasks
        cluster_real = timed(REAL, args.real, client)
    timed(TRIVIAL, 2, "synchronous")  # this process loads MNIST once
    local_trivial = timed(TRIVIAL, args.tasks, "synchronous")
    local_real = timed(REAL, args.real, "synchronous")

    per_task = cluster_trivial * args.workers / args.tasks
    task = sum(inside) / len(inside)
    print(f"cluster start {start:.2f} s; first sweep (MNIST loaded by each worker) {warm:.2f} s")
    print(f"trivial task: {per_task * 1e3:.1f} ms of a worker per task through sweep(), {task * 1e3:.1f} ms of it "
          f"inside the task (in this process alone: {local_trivial / args.tasks * 1e3:.1f} ms): overhead "
          f"{(per_task - task) * 1e3:.1f} ms per task; a Dask task doing nothing: {bare * 1e3:.1f} ms")  # fmt: skip
    print(f"real task (784-16-16-10, 1 epoch of 60,000 images): {local_real / args.real:.3f} s in this process; "
          f"the cluster finished one every {cluster_real / args.real:.3f} s "
          f"({local_real / cluster_real:.2f}x this process with {args.workers} workers)")  # fmt: skip


if __name__ == "__main__":
    main()
