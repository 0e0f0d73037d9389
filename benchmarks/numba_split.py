"""The Numba backend's first layer split by input, against the mini-batch kept whole: why it is used
from 6 to 63 rows.

For each batch size, one MNIST epoch (784-16-16-10, the book's settings, float32) three ways, in
interleaved rounds in one process: the whole mini-batch on one thread (the backend's kernel for
mini-batches that are not split; from 64 rows, the backend's row slices on two threads instead),
the split's operations one after the other on one thread, and the split on a team of two threads.
Prints each way's median seconds and the medians of the split's time over the other's, round by
round (the host's load moves single rounds a lot).

Usage::

    FASTGD_DATA=/path/to/mnist python benchmarks/numba_split.py --batch-sizes 2,4,10,32 --rounds 11
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np

import fastgd
from fastgd.backends import _numba as nb
from fastgd.bench import _book_network

SIZES = [784, 16, 16, 10]


def epoch(way: str, theta: np.ndarray, X: np.ndarray, y: np.ndarray, order: np.ndarray, batch: int) -> float:
    """Seconds for one epoch of plain SGD (eta 3.0) from ``theta`` (a copy), the mini-batches ``way``."""
    sizes = np.array(SIZES, dtype=np.int64)
    t = theta.copy()
    mode = nb._STEP_SGD if batch <= nb._FUSED_MAX_ROWS else nb._STEP_GENERAL
    G = t[:0] if mode == nb._STEP_SGD else np.empty_like(t)
    n = order.shape[0]
    t0 = time.perf_counter()
    if way == "whole" and batch >= nb._SLICED_MIN_ROWS:
        slices = nb._SliceScratch(t, sizes, batch)
        nb._team_batches(t, sizes, 0, 0, X, y, order, 0, n, batch, 3.0, 0.0, t[:0], 0.0, slices.G, slices.acts,
                         slices.deltas, slices.identity, 2)  # fmt: skip
    elif way == "whole":
        work = nb._Scratch(t, sizes, batch)
        nb._run_batches(t, sizes, 0, 0, X, y, order, 0, n, batch, mode, 3.0, 0.0, t[:0], 0.0, G, work.acts,
                        work.deltas, work.identity)  # fmt: skip
    else:
        parts = nb._SplitScratch(t, sizes, batch)
        args = (t, sizes, 0, 0, X, y, order, 0, n, batch, mode, 3.0, 0.0, t[:0], 0.0, G, *parts.args())
        if way == "split, 2 threads":
            nb._split_team_batches(*args, 2)
        else:
            nb._split_batches(*args, 0.0, 0)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default="2,4,10,32", help="comma-separated (default: 2,4,10,32)")
    p.add_argument("--rounds", type=int, default=11, help="interleaved rounds (default: 11)")
    p.add_argument("--data-dir", default=os.environ.get("FASTGD_DATA"), help="MNIST folder (default: $FASTGD_DATA)")
    args = p.parse_args()
    if numba.get_num_threads() < 2:
        raise SystemExit("numba_split.py needs two Numba threads (NUMBA_NUM_THREADS unset or at least 2)")
    X, y = fastgd.load_mnist("train", data_dir=args.data_dir, dtype="float32")[:2]
    X, y = np.ascontiguousarray(X).reshape(-1), y.astype(np.int64)
    theta = _book_network("numpy", "float32", SIZES).theta
    order = np.random.default_rng(1).permutation(y.shape[0]).astype(np.int64)
    ways = ("whole", "split, 1 thread", "split, 2 threads")
    print(f"{'batch':>5}  " + "  ".join(f"{w:>17}" for w in ways) + "   split/whole: 1 thread, 2 threads")
    print("(from 64 rows, 'whole' is the row slices on two threads)")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for way in ways:  # compile, and warm the caches
            epoch(way, theta, X, y, order[: 20 * batch], batch)
        times: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(args.rounds):
            for way in ways:
                times[way].append(epoch(way, theta, X, y, order, batch))
        ratios = [statistics.median(a / b for a, b in zip(times[w], times["whole"])) for w in ways[1:]]
        print(f"{batch:>5}  " + "  ".join(f"{statistics.median(times[w]):>17.4f}" for w in ways)
              + f"   {ratios[0]:.2f}, {ratios[1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
