"""Compile time of the Numba backend, reported apart from its run time (``fastgd bench`` times
epochs after a warm-up, so compiling never counts there).

Runs the same small job in two fresh processes sharing one new Numba cache folder: the first
compiles every kernel it uses and writes them to the cache, the second loads them from it. The
job is what a user's first calls do: ``fit`` (one epoch of a few rows), ``predict``, ``cost`` and
``flat_gradient``, for float32 and float64. Prints the time of the job in each process, and of the
same job once more in the second process (nothing left to compile or load).

Usage::

    python benchmarks/numba_compile.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

JOB = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastgd
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
X, y = rng.random((40, 784)), rng.integers(0, 10, 40)

def job():
    for dtype in ("float32", "float64"):
        net = fastgd.Network(backend="numba", dtype=dtype)
        net.fit(X, y, epochs=1, batch_size=10)
        net.predict(X); net.cost(X, y); net.flat_gradient(X[:10], y[:10])

t1 = time.perf_counter(); job(); first = time.perf_counter() - t1
t2 = time.perf_counter(); job(); again = time.perf_counter() - t2
print(json.dumps({"import": t_import, "first": first, "again": again}))
"""


def run(cache: str) -> dict[str, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold = run(cache)
        warm = run(cache)
    print("Numba backend, first calls (fit, predict, cost, gradient; float32 and float64):")
    print(f"  empty cache (compiles):      {cold['first']:7.2f} s   (import of fastgd {cold['import']:.2f} s)")
    print(f"  warm on-disk cache (loads):  {warm['first']:7.2f} s   (import of fastgd {warm['import']:.2f} s)")
    print(f"  the same calls again:        {warm['again']:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
