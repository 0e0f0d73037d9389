#!/usr/bin/env python3
"""Epochs of a compiled backend (C++, or Numba with ``--backend numba``) when its threads must share the
CPUs with other threads.

A team of threads (two at batch 10 and 100 on a 2-core machine) is faster than one thread only
while its members run at the same time; when they take turns on a CPU each mini-batch waits for
one that is not running. The leader then works alone while that is faster (see "Backends" in the
README). Each setting runs in its own process, one after another:

- ``1 thread``: ``FASTGD_NUM_THREADS=1`` (and ``NUMBA_NUM_THREADS=1``);
- ``2 threads``: ``FASTGD_NUM_THREADS=2`` (and ``NUMBA_NUM_THREADS=2``);
- ``2 threads, 1 CPU``: the same, the process pinned to one CPU (``os.sched_setaffinity``);
- ``2 threads + busy``: the same, free, beside one busy-looping process of its own;
- ``1 thread + busy``: one thread beside such a process, the time to compare the row above with.

It prints the median seconds per epoch of 784-16-16-10 (sigmoid, quadratic cost, plain SGD, eta
3.0, float32) on MNIST (``$FASTGD_DATA``, else random digits) per batch size, and the share of the
team's work its leader ran alone (the C++ backend counts phases, the Numba backend rows). The
parameters of every setting must be bit-identical.

Usage::

    FASTGD_DATA=/path/to/mnist python benchmarks/contended.py
    python benchmarks/contended.py --batch-sizes 10,100 --epochs 5 --rows 20000
    FASTGD_DATA=/path/to/mnist python benchmarks/contended.py --backend numba
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import hashlib, json, os, statistics, sys, time
if os.environ.get("CONTENDED_PIN") == "1":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import numpy as np
import fastgd

rows, epochs = int(sys.argv[1]), int(sys.argv[2])
batches = [int(b) for b in sys.argv[3].split(",")]
backend = sys.argv[4]
if backend == "cpp":
    import fastgd._core as core
    team = core.build_info()["threads"] > 1
    last_epoch = core._team_last_epoch
else:
    import numba
    from fastgd.backends import _numba
    team = numba.get_num_threads() > 1
    last_epoch = _numba._team_last_epoch
if os.environ.get("FASTGD_DATA"):
    X, y = fastgd.load_mnist("train")
    X, y = X[:rows], y[:rows]
else:
    rng = np.random.default_rng(0)
    X, y = rng.random((rows, 784), dtype=np.float32), rng.integers(0, 10, rows)
out = {}
for batch in batches:
    net = fastgd.Network([784, 16, 16, 10], seed=0, backend=backend, dtype="float32")
    net.fit(X, y, epochs=1, batch_size=batch, eta=3.0, optimizer="sgd", seed=0)  # warm-up
    seconds, alone, phases = [], 0, 0
    for epoch in range(epochs):
        t = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch, eta=3.0, optimizer="sgd", seed=epoch + 1)
        seconds.append(time.perf_counter() - t)
        a, p = last_epoch() if team else (0, 0)
        alone, phases = alone + a, phases + p
    out[batch] = dict(seconds=statistics.median(seconds), alone=alone, phases=phases,
                      digest=hashlib.sha256(net.theta.tobytes()).hexdigest())
print(json.dumps(out))
"""

SETTINGS = (  # name, FASTGD_NUM_THREADS, pinned to one CPU, beside a busy process
    ("1 thread", "1", False, False),
    ("2 threads", "2", False, False),
    ("2 threads, 1 CPU", "2", True, False),
    ("2 threads + busy", "2", False, True),
    ("1 thread + busy", "1", False, True),
)


def run(threads: str, pinned: bool, busy: bool, args: argparse.Namespace) -> dict[str, dict[str, float | str]]:
    env = {**os.environ, "FASTGD_NUM_THREADS": threads, "NUMBA_NUM_THREADS": threads,
           "CONTENDED_PIN": "1" if pinned else "0"}  # fmt: skip
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        res = subprocess.run([sys.executable, "-c", WORKER, str(args.rows), str(args.epochs), args.batch_sizes,
                              args.backend], env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if res.returncode != 0:
        raise SystemExit(f"worker failed:\n{res.stdout}{res.stderr}")
    return json.loads(res.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="10,100,1000")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per batch size (median printed)")
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--backend", choices=("cpp", "numba"), default="cpp")
    args = parser.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("this benchmark needs os.sched_setaffinity (Linux)")
    results = {name: run(threads, pinned, busy, args) for name, threads, pinned, busy in SETTINGS}
    batches = args.batch_sizes.split(",")
    print("| setting | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("| --- |" + " ---: |" * len(batches))
    for name, res in results.items():
        cells = []
        for b in batches:
            r = res[b]
            share = f", {r['alone'] / r['phases']:.0%} alone" if r["phases"] else ""
            cells.append(f"{r['seconds']:.4f} s{share}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for b in batches:
        if len({res[b]["digest"] for res in results.values()}) != 1:
            raise SystemExit(f"batch {b}: the settings' parameters differ")
    print("parameters bit-identical in every setting")


if __name__ == "__main__":
    main()
