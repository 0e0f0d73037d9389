"""Population training: K networks in one ``fastgd.train_many`` call against K separate ``fit`` calls.

    FASTGD_DATA=/path/to/mnist python benchmarks/population.py [--networks 100] [--epochs 30]

Trains K networks of 784-16-16-10 (fastgd's defaults, batch 10, seeds 0 .. K-1) on the 60,000 MNIST
training images four ways and prints the wall time of each and its ratio to the first:

* ``fit xK``: K separate ``Network(seed=k).fit(seed=k)`` calls, one after another;
* ``fit xK, 2 Python threads``: the same calls from a pool of two Python threads (the compiled
  kernels release the GIL);
* ``train_many, 1 thread`` and ``train_many, 2 threads`` (``n_threads``).

Every way's parameters are checked to be bit-identical to the separate fits'. ``--backend``
chooses the backend (default: fastgd's).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import sys
import time

import numpy as np

import fastgd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=100, help="K, networks per population (default 100)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    X, y = fastgd.load_mnist("train")
    sizes = [784, 16, 16, 10]
    seeds = list(range(args.networks))
    opts = {"backend": args.backend}
    fit_args = {"epochs": args.epochs, "batch_size": args.batch_size}

    def fit_one(seed: int) -> np.ndarray:
        net = fastgd.Network(sizes, seed=seed, **opts)
        net.fit(X, y, seed=seed, **fit_args)
        return net.theta

    results: dict[str, tuple[float, np.ndarray]] = {}

    t0 = time.perf_counter()
    thetas = [fit_one(s) for s in seeds]
    results[f"fit x{args.networks}"] = (time.perf_counter() - t0, np.stack(thetas))

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        thetas = list(pool.map(fit_one, seeds))
    results[f"fit x{args.networks}, 2 Python threads"] = (time.perf_counter() - t0, np.stack(thetas))

    for threads in (1, 2):
        t0 = time.perf_counter()
        pop = fastgd.train_many(sizes, X, y, seeds, n_threads=threads, **fit_args, **opts)
        results[f"train_many, {threads} thread{'s' if threads > 1 else ''}"] = (
            time.perf_counter() - t0,
            np.stack([net.theta for net in pop]),
        )

    backend = fastgd.Network(sizes, **opts).backend
    print(f"{args.networks} networks of {sizes}, {args.epochs} epochs of MNIST, batch {args.batch_size}, "
          f"backend {backend}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")  # fmt: skip
    reference_time, reference = next(iter(results.values()))
    print(f"{'how':<32} {'seconds':>9} {'s/network/epoch':>16} {'vs fit xK':>10}  identical")
    ok = True
    for name, (seconds, thetas) in results.items():
        same = bool(np.array_equal(thetas, reference))
        ok &= same
        per = seconds / (args.networks * max(args.epochs, 1))
        print(f"{name:<32} {seconds:>9.2f} {per:>16.4f} {seconds / reference_time:>9.2f}x  {same}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
