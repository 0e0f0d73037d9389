#!/usr/bin/env python3
"""Two networks trained in two Python threads at once against one after the other (wall time).

The C++ kernels release the GIL, so two ``fit`` calls in two threads run on two cores. Each run
trains two 784-16-16-10 networks (different seeds) for one epoch each, serially and then in two
threads, checks that both ways give bit-identical parameters, and prints the median wall times
and their ratio. ``FASTGD_NUM_THREADS=1`` is set (before fastgd is imported) so that the C++
core's own worker threads do not compete for the cores; the batch size of 10 would not use them
anyway.

Usage::

    python benchmarks/threads.py                      # MNIST from $FASTGD_DATA, else random digits
    python benchmarks/threads.py --rows 20000 --repeats 5 --backend cpp
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("FASTGD_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import fastgd  # noqa: E402


def data(rows: int) -> tuple[np.ndarray, np.ndarray, str]:
    if os.environ.get("FASTGD_DATA"):
        X, y = fastgd.load_mnist("train")
        return X[:rows], y[:rows], "MNIST"
    rng = np.random.default_rng(0)
    return rng.random((rows, 784), dtype=np.float32), rng.integers(0, 10, rows), "random digits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60000, help="training rows per network")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is printed")
    parser.add_argument("--backend", default="cpp")
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    X, y, source = data(args.rows)

    def fresh() -> list[fastgd.Network]:
        return [fastgd.Network([784, 16, 16, 10], seed=s, backend=args.backend) for s in (1, 2)]

    def fit(net: fastgd.Network) -> None:
        net.fit(X, y, epochs=1, batch_size=args.batch_size, seed=net.seed)

    fit(fresh()[0])  # warm-up (Numba compiles, caches fill)
    serial_s, threads_s = [], []
    for _ in range(args.repeats):
        serial = fresh()
        t0 = time.perf_counter()
        for net in serial:
            fit(net)
        serial_s.append(time.perf_counter() - t0)

        parallel = fresh()
        workers = [threading.Thread(target=fit, args=(net,)) for net in parallel]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        threads_s.append(time.perf_counter() - t0)
        for a, b in zip(serial, parallel):
            if not np.array_equal(a.theta, b.theta):
                raise SystemExit("threads and serial training gave different parameters")

    s, t = statistics.median(serial_s), statistics.median(threads_s)
    threads_env = os.environ["FASTGD_NUM_THREADS"]
    print(f"{args.backend}, two 784-16-16-10 networks, one epoch of {len(y):,} {source} rows each, batch "
          f"{args.batch_size}, {os.cpu_count()} CPUs, FASTGD_NUM_THREADS={threads_env}")  # fmt: skip
    print(f"serial  {s:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in serial_s)})")
    print(f"threads {t:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in threads_s)})")
    print(f"threads/serial = {t / s:.2f} ({s / t:.2f}x faster); parameters bit-identical")


if __name__ == "__main__":
    main()
