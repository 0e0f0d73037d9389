#!/usr/bin/env python3
"""Epoch times of ``Network.fit`` per activation and cost, on each compiled backend, with Numba's time
over C++'s.

``fastgd bench`` times the book's network (sigmoid, quadratic cost, plain SGD); this script times the
other activations and costs a user can pick, with plain SGD and with fastgd's default optimizer (weight
decay), 784-16-16-10 float32 at batch 10 over the 60,000 MNIST training images. Each cell is the fastest
of ``--runs`` epochs after a warm-up epoch (the minimum: the host's other load only ever adds time).

Usage::

    FASTGD_DATA=/path/to/mnist python benchmarks/configs.py [--runs 4] [--batch-size 10]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

import fastgd
from fastgd import backends

ACTIVATIONS = ("sigmoid", "tanh", "relu")
COSTS = ("quadratic", "cross-entropy", "log-likelihood")
OPTIMIZERS = ("sgd", "default")


def epoch_time(backend: str, X: np.ndarray, y: np.ndarray, activation: str, cost: str, optimizer: str,
               batch_size: int, runs: int) -> float:
    net = fastgd.Network([784, 16, 16, 10], activation=activation, cost=cost, dtype="float32", backend=backend,
                         seed=0)
    eta = 3.0 if optimizer == "sgd" and cost == "quadratic" else 0.1
    net.fit(X, y, epochs=1, batch_size=batch_size, eta=eta, optimizer=optimizer, seed=0)  # compiles, warms up
    times = []
    for r in range(runs):
        t0 = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch_size, eta=eta, optimizer=optimizer, seed=r + 1)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    names = [b for b in ("cpp", "numba") if backends.available(b)[0]]
    X, y = fastgd.load_mnist("train", data_dir=args.data_dir)
    print(f"784-16-16-10 float32, batch {args.batch_size}, seconds per epoch (fastest of {args.runs})")
    print("| activation | cost | optimizer | " + " | ".join(names) + (" | numba / cpp |" if len(names) == 2 else " |"))
    print("| --- | --- | --- | " + " | ".join("---:" for _ in names) + (" | ---: |" if len(names) == 2 else " |"))
    for activation, cost, optimizer in itertools.product(ACTIVATIONS, COSTS, OPTIMIZERS):
        t = [epoch_time(b, X, y, activation, cost, optimizer, args.batch_size, args.runs) for b in names]
        ratio = f" | {t[1] / t[0]:.2f}" if len(t) == 2 else ""
        print(f"| {activation} | {cost} | {optimizer} | " + " | ".join(f"{s:.4f}" for s in t) + ratio + " |")


if __name__ == "__main__":
    main()
