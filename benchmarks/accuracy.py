"""The 30-epoch MNIST figures in the README: fastgd's defaults and the book's settings.

    FASTGD_DATA=/path/to/mnist python benchmarks/accuracy.py [--seeds 0 1 2] [--backend auto]

Trains 784-16-16-10 for 30 epochs at batch 10 on the 60,000 training images, once per seed
(the seed of both the initialisation and the shuffling), and prints each seed's accuracy on the
10,000 test images, the median, and the seconds taken. tests/test_mnist.py asserts the same runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastgd

CONFIGS = {
    "defaults": ({}, {}),
    "book": (dict(activation="sigmoid", cost="quadratic", init="normal"), dict(eta=3.0, optimizer="sgd")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    X, y = fastgd.load_mnist("train", data_dir=args.data_dir)
    Xt, yt = fastgd.load_mnist("test", data_dir=args.data_dir)
    for name, (net_kwargs, fit_kwargs) in CONFIGS.items():
        accs, t0 = [], time.perf_counter()
        for seed in args.seeds:
            net = fastgd.Network(seed=seed, backend=args.backend, **net_kwargs)
            net.fit(X, y, epochs=30, batch_size=10, seed=seed, **fit_kwargs)
            accs.append(net.score(Xt, yt))
        cells = " ".join(f"{a:.2%}" for a in accs)
        print(f"{name:<9} test accuracy {cells}  median {np.median(accs):.2%}  "
              f"({time.perf_counter() - t0:.1f} s, backend {net.backend})")  # fmt: skip


if __name__ == "__main__":
    main()
