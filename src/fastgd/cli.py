"""The ``fastgd`` command (also ``python -m fastgd``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backends
from ._version import __version__
from .network import DEFAULT_ACTIVATION, DEFAULT_COST, DEFAULT_INIT, DEFAULT_SIZES, INITS

if TYPE_CHECKING:
    from .data import Split

DATASETS = ("mnist", "fashion-mnist")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(",", " ").replace("-", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"layer sizes must be integers like 784,16,16,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"need at least two positive layer sizes, got {text!r}")
    return sizes


def _load(dataset: str, split: Split, data_dir: str | None, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    from .data import load_fashion_mnist, load_mnist

    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    return loader(split, data_dir=data_dir, dtype=dtype)


def _add_network_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """The network's and the dataset's options (``--seed`` unless ``seed`` is false), shared by the commands."""
    p.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                   help="layer widths, inputs first (default: 784,16,16,10)")  # fmt: skip
    p.add_argument("--activation", choices=backends.ACTIVATIONS, default=DEFAULT_ACTIVATION,
                   help=f"hidden-layer activation (default: {DEFAULT_ACTIVATION})")  # fmt: skip
    p.add_argument("--cost", choices=backends.COSTS, default=DEFAULT_COST, help=f"cost (default: {DEFAULT_COST})")
    p.add_argument("--init", choices=INITS, default=DEFAULT_INIT, help=f"initialisation (default: {DEFAULT_INIT})")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and shuffling (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)")
    p.add_argument("--backend", choices=("auto", *backends.NAMES), default="auto", help="(default: auto)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist", help="(default: mnist)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset's files "
                   "(default: $FASTGD_DATA, then the cache, downloading)")  # fmt: skip


def _network(args: argparse.Namespace):  # noqa: ANN202
    from .network import Network

    return Network(args.sizes, activation=args.activation, cost=args.cost, init=args.init, seed=args.seed,
                   dtype=args.dtype, backend=args.backend)  # fmt: skip


# Options a checkpoint fixes: the argparse destination, and how to read the stored value.
_RESUME_FIXED = ("sizes", "activation", "cost", "init", "seed", "dtype", "dataset", "epochs", "batch_size", "eta",
                 "optimizer", "limit")  # fmt: skip
DEFAULT_CHECKPOINT = "fastgd-checkpoint.npz"


def _explicit_options(argv: Sequence[str] | None, command: str) -> set[str]:
    """The destinations of the options given on the command line for ``command`` (not defaults)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        sub = action.choices[command]  # type: ignore[index]
        for a in sub._actions:
            a.default = argparse.SUPPRESS
    ns = parser.parse_args(argv)
    return set(vars(ns)) - {"command", "func"}


def _stored_settings(net, state) -> dict[str, object]:  # noqa: ANN001
    data = state.data
    return {
        "sizes": list(net.sizes), "activation": net.activation, "cost": net.cost_name, "init": net.init,
        "seed": state.seed, "dtype": net.dtype.name, "dataset": data.get("dataset"), "epochs": state.epochs,
        "batch_size": state.batch_size, "eta": state.optimizer.eta, "optimizer": state.optimizer.name,
        "limit": data.get("limit", 0),
    }  # fmt: skip


class _Progress:
    """A tqdm bar over each epoch's mini-batches (only when stderr is a terminal)."""

    def __init__(self, batch_size: int, epochs: int, enabled: bool) -> None:
        self.batch_size, self.epochs, self.enabled = batch_size, epochs, enabled
        self.bar: Any = None  # a tqdm bar, made on the first call
        self.epoch = 0

    def __call__(self, rows_done: int, rows: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=-(-rows // self.batch_size), desc=f"epoch {self.epoch + 1}/{self.epochs}",
                            unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        self.bar.update(-(-rows_done // self.batch_size) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    from .network import Network

    t_start = time.perf_counter()
    net: Network | None = None
    if args.resume:
        from ._model_file import load

        net = load(args.resume, backend=None if args.backend == "auto" else args.backend)
        state = net.training_state
        if state is None:
            raise ValueError(f"{args.resume!r} is a saved model without a training record: it cannot be resumed")
        if not isinstance(state.data.get("dataset"), str) or state.data["dataset"] not in DATASETS:
            raise ValueError(f"{args.resume!r} does not record which dataset it was trained on (not a checkpoint "
                             "written by 'fastgd train')")  # fmt: skip
        stored = _stored_settings(net, state)
        for dest in sorted(_explicit_options(args.argv, "train") & set(_RESUME_FIXED)):
            given = getattr(args, dest)
            if given != stored[dest]:
                flag = "--" + dest.replace("_", "-")
                raise ValueError(f"{flag} {given} conflicts with the checkpoint {args.resume!r}, which was trained "
                                 f"with {flag} {stored[dest]}; leave it out when resuming")  # fmt: skip
        for dest, value in stored.items():
            setattr(args, dest, value)
        if args.out is None:
            args.out = args.resume
    X, y = _load(args.dataset, "train", args.data_dir, args.dtype)
    Xt, yt = _load(args.dataset, "test", args.data_dir, args.dtype)
    if args.limit:
        X, y = X[: args.limit], y[: args.limit]
    data = {"dataset": args.dataset, "limit": int(args.limit or 0)}
    if net is None:
        net = _network(args)
    print(f"{net!r}: {net.n_params:,} parameters; {X.shape[0]:,} training and {Xt.shape[0]:,} test images "
          f"({time.perf_counter() - t_start:.2f} s to load)", flush=True)  # fmt: skip
    if args.resume:
        st = net.training_state
        assert st is not None
        print(f"resuming {args.resume}: {st.done} of {st.epochs} epochs done", flush=True)
    bar = _Progress(args.batch_size, args.epochs, sys.stderr.isatty())

    def report(net, history) -> None:  # noqa: ANN001
        bar.close()
        k = len(history) - 1
        print(f"epoch {history.epoch[k]:>3}: train cost {history.train_cost[k]:.4f}  test cost "
              f"{history.val_cost[k]:.4f}  test accuracy {history.val_accuracy[k]:.2%}  "
              f"eta {history.eta[k]:.4g}  {history.seconds[k]:.3f} s", flush=True)  # fmt: skip
        bar.epoch = net.training_state.done
        if args.out:
            net.save(args.out, data=data)

    progress = bar if bar.enabled else None
    try:
        if args.resume:
            bar.epoch = net.training_state.done  # type: ignore[union-attr]
            net.resume_fit(X, y, validation_data=(Xt, yt), callback=report, progress=progress)
        else:
            net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, eta=args.eta, optimizer=args.optimizer,
                    validation_data=(Xt, yt), seed=args.seed, callback=report, progress=progress)  # fmt: skip
    except KeyboardInterrupt:
        bar.close()
        state = net.training_state
        if state is None:
            raise
        path = args.out or DEFAULT_CHECKPOINT
        net.save(path, data=data)
        where = f"during epoch {state.done + 1}" if not state.finished else "after the last epoch"
        print(f"\ninterrupted {where}: saved a checkpoint of the {state.done} finished epoch(s) of {state.epochs} "
              f"to {path}\ncontinue with: fastgd train --resume {path}", file=sys.stderr, flush=True)  # fmt: skip
        return 130
    bar.close()
    print(f"test accuracy {net.score(Xt, yt):.2%} after {len(net.history)} epochs; "
          f"{time.perf_counter() - t_start:.2f} s in all")  # fmt: skip
    if args.out:
        net.save(args.out, data=data)
        print(f"saved the model to {args.out}")
    return 0


def _load_model(path: str, backend: str):  # noqa: ANN202
    from ._model_file import load

    return load(path, backend=None if backend == "auto" else backend)


def cmd_evaluate(args: argparse.Namespace) -> int:
    net = _load_model(args.model, args.backend)
    dataset = args.dataset
    if dataset is None:
        recorded = net.training_state.data.get("dataset") if net.training_state is not None else None
        dataset = recorded if recorded in DATASETS else "mnist"
    X, y = _load(dataset, args.split, args.data_dir, net.dtype.name)
    if net.sizes[0] != X.shape[1] or net.sizes[-1] != 10:
        raise ValueError(f"the model {args.model!r} has {net.sizes[0]} inputs and {net.sizes[-1]} outputs; "
                         f"{dataset} needs {X.shape[1]} and 10")  # fmt: skip
    pred = net.predict(X)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (y.astype(np.int64), pred), 1)
    print(f"{args.model}: {net!r}, trained for {len(net.history)} epochs")
    print(f"{dataset} {args.split} ({X.shape[0]:,} images): accuracy {np.mean(pred == y):.2%}, "
          f"cost {net.cost(X, y):.4f}")  # fmt: skip
    print("\nper-class accuracy:")
    for c in range(10):
        total = confusion[c].sum()
        acc = confusion[c, c] / total if total else float("nan")
        print(f"  {c}: {acc:7.2%}  ({confusion[c, c]:,} of {total:,})")
    print("\nconfusion matrix (rows: true digit, columns: predicted digit):")
    width = max(5, len(f"{confusion.max():,}") + 1)
    print("true\\pred" + "".join(f"{c:>{width}}" for c in range(10)))
    for c in range(10):
        print(f"{c:>9}" + "".join(f"{v:>{width}}" for v in confusion[c]))
    return 0


def read_image(path: str, size: tuple[int, int] = (28, 28), invert: str = "auto") -> tuple[np.ndarray, str]:
    """Read an image file as a row of ``size[0] * size[1]`` floats in [0, 1], in MNIST's convention.

    MNIST digits are white (1) on a black (0) background. ``invert="auto"`` inverts an image
    whose border is mostly light (a dark digit on light paper); ``"yes"``/``"no"`` force it.

    Returns
    -------
    row : ndarray, float64, shape (size[0] * size[1],)
    note : str
        What was done to the image (resized, inverted), for the user.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                gray = img.convert("L")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such image file: {path!r}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            SyntaxError, ValueError) as exc:  # fmt: skip
        raise ValueError(f"cannot read the image {path!r}: {exc}") from None
    if gray.size != size:
        notes.append(f"resized from {gray.size[0]}x{gray.size[1]} to {size[0]}x{size[1]}")
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    row = np.asarray(gray, dtype=np.float64) / 255.0
    border = np.concatenate([row[0], row[-1], row[:, 0], row[:, -1]]).mean()
    flip = invert == "yes" or (invert == "auto" and border > 0.5)
    if flip:
        row = 1.0 - row
        notes.append("inverted (a dark digit on a light background)" if invert == "auto" else "inverted (--invert yes)")
    return row.reshape(-1), ", ".join(notes)


def cmd_predict(args: argparse.Namespace) -> int:
    net = _load_model(args.model, args.backend)
    if net.sizes[0] != 784:
        raise ValueError(f"the model {args.model!r} takes {net.sizes[0]} inputs, not 28x28 = 784 pixels")
    print("images are read as MNIST's digits are: 28x28 grayscale, a white digit (1.0) on a black background "
          "(0.0); --invert auto (the default) inverts an image whose border is light")  # fmt: skip
    rows, notes = [], []
    for path in args.images:
        row, note = read_image(path, invert=args.invert)
        rows.append(row)
        notes.append(note)
    X = np.stack(rows)
    out = net.forward(X)
    digits = net.predict(X)
    for path, note, digit, a in zip(args.images, notes, digits, out):
        print(f"{path}: {digit}" + (f"  ({note})" if note else ""))
        print("  outputs: " + "  ".join(f"{c}:{v:.3f}" for c, v in enumerate(a)))
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
    for dataset in DATASETS:
        print(f"  {dataset}: {_data_status(dataset)}")
    return 0


def _data_status(dataset: str) -> str:
    """Where a dataset's files are found (without downloading), or which are missing."""
    from pathlib import Path

    from . import data

    spec = data._dataset_spec(dataset)
    base = os.environ.get("FASTGD_DATA")
    found, missing = [], []
    for split in ("train", "test"):
        if base:
            try:
                found += [str(p) for p in data._locate_in(spec, split, Path(base).expanduser(), "FASTGD_DATA")]
            except OSError:
                missing.append(split)
            continue
        folders = [data.cache_dir() / spec.name, *(Path(f) for f in data.KNOWN_DIRS.get(spec.name, ()))]
        paths = [data._find(f, folders) for f in spec.splits[split]]
        if None in paths:
            missing.append(split)
        else:
            found += [str(p) for p in paths]
    folders_found = sorted({os.path.dirname(p) for p in found})
    if not missing:
        # The label files are small: checking their sums tells MNIST from Fashion-MNIST (same file names).
        for path in found:
            labels = [f for pair in spec.splits.values() for f in pair if f.kind == "labels"]
            file = next((f for f in labels if Path(path).name in f.names), None)
            if file is not None:
                try:
                    data._read_verified(spec, file, Path(path))
                except (ValueError, OSError) as exc:
                    return f"files found in {', '.join(folders_found)}, but they are not {spec.title}'s: {exc}"
        return f"complete in {', '.join(folders_found)} (labels verified)"
    where = "in $FASTGD_DATA" if base else "locally (downloaded on first use)"
    return f"missing the {' and '.join(missing)} split(s) {where}"


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
                   help="'sgd' is the book's plain SGD (eta 3.0 unless given); "
                   "'default' is fastgd's recipe")  # fmt: skip
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (default: all)")
    p.add_argument("--out", default=None, metavar="MODEL.npz",
                   help="save the model here at the end, and as a checkpoint after every epoch (default: no file; "
                   f"Ctrl-C then saves a checkpoint to ./{DEFAULT_CHECKPOINT})")  # fmt: skip
    p.add_argument("--resume", default=None, metavar="MODEL.npz",
                   help="continue the training saved in this checkpoint with its stored settings (checkpoints go "
                   "on being written to it unless --out is given)")  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, cost, per-class accuracy and confusion matrix of a saved model",
                       description="Evaluate a saved model on a dataset split: accuracy, cost, accuracy per "
                       "digit and the 10x10 confusion matrix.")  # fmt: skip
    p.add_argument("model", help="a model file written by 'fastgd train --out' or Network.save")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="(default: the one the model was trained on, else mnist)")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files (default: $FASTGD_DATA, ...)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="(default: test)")
    p.add_argument("--backend", choices=("auto", *backends.NAMES), default="auto", help="(default: the model's)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files (PNG, JPEG, ...) with a saved model",
                       description="Read each image with Pillow as grayscale, resize it to 28x28 if needed and "
                       "scale it to [0, 1]; print the predicted digit and the 10 output activations. MNIST digits "
                       "are white on a black background: a dark digit on light paper must be inverted (--invert "
                       "auto does it when the image's border is light).")  # fmt: skip
    p.add_argument("model", help="a model file written by 'fastgd train --out' or Network.save")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert dark-on-light images (default: auto, by the border's brightness)")  # fmt: skip
    p.add_argument("--backend", choices=("auto", *backends.NAMES), default="auto", help="(default: the model's)")
    p.set_defaults(func=cmd_predict)

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

    from .sweep import add_arguments as add_sweep_arguments
    from .sweep import run_command as run_sweep

    p = sub.add_parser("sweep", help="train a grid of settings x seeds in parallel (Dask), write CSV and plot",
                       description="Run every combination of a grid of Network/fit settings for several seeds "
                       "on a local Dask cluster or a remote one; print a table, write the CSV and a plot. An "
                       "interrupted sweep resumes from its CSV.")  # fmt: skip
    add_sweep_arguments(p)
    p.set_defaults(func=run_sweep)

    from .experiments import add_parser as add_experiment_parser
    from .plot import add_parser as add_plot_parser

    add_experiment_parser(sub)
    add_plot_parser(sub)

    p = sub.add_parser("info", help="version, backends, build and data location")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
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
