"""The ``fastgd`` command (also ``python -m fastgd``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import backends
from ._version import __version__
from .network import DEFAULT_ACTIVATION, DEFAULT_COST, DEFAULT_INIT, DEFAULT_SIZES, INITS

DATASETS = ("mnist", "fashion-mnist")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(",", " ").replace("-", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"layer sizes must be integers like 784,16,16,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"need at least two positive layer sizes, got {text!r}")
    return sizes


def _load(dataset: str, split: str, data_dir: str | None, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    from .data import load_fashion_mnist, load_mnist

    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    return loader(split, data_dir=data_dir, dtype=dtype)


def _add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                   help="layer widths, inputs first (default: 784,16,16,10)")  # fmt: skip
    p.add_argument("--activation", choices=backends.ACTIVATIONS, default=DEFAULT_ACTIVATION,
                   help=f"hidden-layer activation (default: {DEFAULT_ACTIVATION})")  # fmt: skip
    p.add_argument("--cost", choices=backends.COSTS, default=DEFAULT_COST, help=f"cost (default: {DEFAULT_COST})")
    p.add_argument("--init", choices=INITS, default=DEFAULT_INIT, help=f"initialisation (default: {DEFAULT_INIT})")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and shuffling (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)")
    p.add_argument("--backend", choices=("auto", *backends.NAMES), default="auto", help="(default: auto)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist", help="(default: mnist)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset's files (default: $FASTGD_DATA, then the cache, downloading)")  # fmt: skip


def _network(args: argparse.Namespace):  # noqa: ANN202
    from .network import Network

    return Network(args.sizes, activation=args.activation, cost=args.cost, init=args.init, seed=args.seed,
                   dtype=args.dtype, backend=args.backend)  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    X, y = _load(args.dataset, "train", args.data_dir, args.dtype)
    Xt, yt = _load(args.dataset, "test", args.data_dir, args.dtype)
    if args.limit:
        X, y = X[: args.limit], y[: args.limit]
    net = _network(args)
    print(f"{net!r}: {net.n_params:,} parameters; {X.shape[0]:,} training and {Xt.shape[0]:,} test images "
          f"({time.perf_counter() - t_start:.2f} s to load)", flush=True)  # fmt: skip

    def report(net, history) -> None:  # noqa: ANN001
        k = len(history) - 1
        print(f"epoch {history.epoch[k]:>3}: train cost {history.train_cost[k]:.4f}  test cost "
              f"{history.val_cost[k]:.4f}  test accuracy {history.val_accuracy[k]:.2%}  "
              f"eta {history.eta[k]:.4g}  {history.seconds[k]:.3f} s", flush=True)  # fmt: skip

    net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, eta=args.eta, optimizer=args.optimizer,
            validation_data=(Xt, yt), seed=args.seed, callback=report)  # fmt: skip
    print(f"test accuracy {net.score(Xt, yt):.2%} after {args.epochs} epochs; "
          f"{time.perf_counter() - t_start:.2f} s in all")  # fmt: skip
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import gradcheck

    X, y = _load(args.dataset, "train", args.data_dir, "float64")
    rows = np.random.default_rng(args.seed).choice(X.shape[0], size=args.rows, replace=False)
    net = _network(args)
    report = gradcheck(net, X[rows], y[rows], method=args.method, max_params=args.max_params)
    print(report)
    return 0 if report.passed(args.tol) else 1


def cmd_info(args: argparse.Namespace) -> int:
    from ._config import show_config
    from .data import cache_dir

    show_config()
    print(f"data: $FASTGD_DATA={os.environ.get('FASTGD_DATA', '')!r}, cache folder {cache_dir()}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgd", description="Train fully connected networks on MNIST by gradient descent, fast."
    )
    parser.add_argument("--version", action="version", version=f"fastgd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a network on MNIST and report test accuracy per epoch",
                       description="Train a network (default 784-16-16-10 with fastgd's defaults) and "
                       "print the cost and test accuracy after each epoch.")  # fmt: skip
    _add_network_options(p)
    p.add_argument("--epochs", type=int, default=30, help="(default: 30)")
    p.add_argument("--batch-size", type=int, default=10, help="(default: 10)")
    p.add_argument("--eta", type=float, default=None, help="learning rate (default: the optimizer's)")
    p.add_argument("--optimizer", choices=("default", "sgd"), default="default",
                   help="'sgd' is the book's plain SGD (eta 3.0 unless given); 'default' is fastgd's recipe")  # fmt: skip
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (default: all)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("gradcheck", help="compare backprop with finite differences on a real mini-batch",
                       description="Backprop's gradient against finite differences on MNIST rows: the "
                       "worst relative error per layer, and what each method cost.")  # fmt: skip
    _add_network_options(p)
    p.add_argument("--rows", type=int, default=10, help="rows in the mini-batch (default: 10)")
    p.add_argument("--method", choices=("central", "five-point"), default="central", help="(default: central)")
    p.add_argument("--max-params", type=int, default=None, help="check a random subset of parameters")
    p.add_argument("--tol", type=float, default=1e-4, help="exit 1 if the worst relative error exceeds this")
    p.set_defaults(func=cmd_gradcheck)

    from .bench import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="time Network.fit and predict per backend, dtype and batch size",
                       description="Time one epoch of Network.fit (the book's 784-16-16-10, sigmoid, quadratic "
                       "cost, plain SGD, eta 3.0) per backend x dtype x batch size, and predict over the test "
                       "images. --roofline also measures the matrix-multiply peak and shows each time as a "
                       "multiple of its compute bound; --peers runs benchmarks/peers.py.")  # fmt: skip
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("info", help="version, backends, build and data location")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"fastgd: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
