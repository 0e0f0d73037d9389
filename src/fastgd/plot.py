"""Pictures of a network and its training (matplotlib, the optional extra ``fastgd[plot]``).

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path=``, also saves it as a
PNG (written to a temporary file in the same folder, then renamed, so a reader never sees half a
file). The figures are built without :mod:`matplotlib.pyplot`: no window opens, no display is
needed (PNGs are drawn by the non-interactive Agg renderer), and a notebook shows the returned
figure as its cell's result.

Images follow MNIST's convention: one row of ``X`` is a 28x28 image read row by row, values in
``[0, 1]``, 0 black and 1 white (a white digit on a black background).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validate import check_seed
from .errors import DataError
from .network import History, Network

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "confusion_matrix",
    "plot_confusion",
    "plot_history",
    "plot_misclassified",
    "plot_noise",
    "plot_weights",
    "save_figure",
]

INSTALL_HINT = 'pip install "fastgd[plot]"'
DPI = 100


def _figure(width: float, height: float) -> Figure:
    """A new matplotlib Figure (not registered with pyplot), or one clear ImportError."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"fastgd's pictures need matplotlib, which is not installed: {INSTALL_HINT}") from exc
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Save ``fig`` as a PNG at ``path`` atomically (a temporary file in the same folder, then renamed).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    path : str or path-like
        Where the PNG goes; its folder must exist.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path or os.path.isdir(path):
        raise IsADirectoryError(f"path must name a file, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path {path!r}: the folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private (0600); a saved picture is not
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _check_network(net: Any, name: str = "net") -> Network:
    if not isinstance(net, Network):
        raise TypeError(f"{name} must be a fastgd.Network, got {type(net).__name__}")
    return net


def _image_side(n_inputs: int, what: str) -> int:
    side = math.isqrt(n_inputs)
    if side * side != n_inputs:
        raise DataError(f"{what} has {n_inputs} inputs, which is not a square image (28x28 = 784 for MNIST)")
    return side


def _grid(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def _xy(net: Network, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    Xc = net._X(X)
    yc = net._y(y, Xc.shape[0])
    if Xc.shape[0] == 0:
        raise DataError("X must hold at least one row")
    return Xc, yc


# ------------------------------------------------------------------------------------------------
# Training history


def plot_history(history: History | Network, path: str | os.PathLike[str] | None = None) -> Figure:
    """Cost and accuracy per epoch, on the training and the test (validation) data.

    Parameters
    ----------
    history : History or Network
        What :meth:`Network.fit` returned, or a network (its ``net.history``: every epoch of its life).
    path : str or path-like, optional
        Also save the figure there as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels: cost (training cost as measured during each epoch, test cost after it) and
        accuracy (training accuracy when the history records it, test accuracy).
    """
    if isinstance(history, Network):
        history = history.history
    if not isinstance(history, History):
        raise TypeError(f"history must be a fastgd.History or Network, got {type(history).__name__}")
    if len(history) == 0:
        raise DataError("history is empty: train the network (Network.fit) before plotting its history")
    epochs = np.asarray(history.epoch)

    def series(name: str) -> np.ndarray | None:
        values = getattr(history, name, None)
        if values is None or len(values) != len(epochs):
            return None
        arr = np.asarray(values, dtype=np.float64)
        return None if np.all(np.isnan(arr)) else arr

    fig = _figure(10, 4)
    ax_cost, ax_acc = fig.subplots(1, 2)
    marker = "o" if len(epochs) <= 30 else None
    for name, label in (("train_cost", "training"), ("val_cost", "test")):
        values = series(name)
        if values is not None:
            ax_cost.plot(epochs, values, marker=marker, label=label)
    ax_cost.set(xlabel="epoch", ylabel="cost", title="Cost per epoch")
    ax_cost.legend()
    any_acc = False
    for name, label in (("train_accuracy", "training"), ("val_accuracy", "test")):
        values = series(name)
        if values is not None:
            any_acc = True
            ax_acc.plot(epochs, 100 * values, marker=marker, label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy per epoch")
    if any_acc:
        ax_acc.legend()
    else:
        ax_acc.text(0.5, 0.5, "no accuracy recorded\n(fit with validation_data=...)", ha="center", va="center",
                    transform=ax_acc.transAxes)  # fmt: skip
    for ax in (ax_cost, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _finish(fig, path)


# ------------------------------------------------------------------------------------------------
# Weights


def plot_weights(net: Network, layer: int = 0, path: str | os.PathLike[str] | None = None) -> Figure:
    """Each neuron's incoming weights as an image: what the neuron "is looking for".

    Parameters
    ----------
    net : Network
        The network.
    layer : int
        Which weight matrix, ``net.weights[layer]`` of shape ``(n_out, n_in)``; 0 (the first hidden
        layer, whose 784 weights per neuron form a 28x28 image) by default. ``n_in`` must be a
        perfect square.
    path : str or path-like, optional
        Also save the figure there as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One image per neuron in a grid, in a diverging colour map centred on zero (red positive,
        blue negative, white zero; the same symmetric scale for every neuron).
    """
    net = _check_network(net)
    n_layers = len(net.sizes) - 1
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be an integer in [0, {n_layers}) for a network of sizes {list(net.sizes)}, "
                         f"got {layer!r}")  # fmt: skip
    layer = int(layer) % n_layers
    W = np.asarray(net.weights[layer], dtype=np.float64)
    n_out, n_in = W.shape
    side = _image_side(n_in, f"layer {layer} (weights of shape {W.shape})")
    if not np.all(np.isfinite(W)):
        raise DataError(f"the weights of layer {layer} hold NaN or infinity")
    limit = float(np.max(np.abs(W))) or 1.0
    rows, cols = _grid(n_out)
    fig = _figure(1.5 * cols + 1.0, 1.5 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    image = None
    for k, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n_out:
            ax.set_axis_off()
            continue
        image = ax.imshow(W[k].reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"neuron {k}", fontsize=8)
    assert image is not None  # n_out >= 1
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="weight")
    fig.suptitle(f"Weights into layer {layer + 1} ({n_out} neurons, {n_in} inputs each as {side}x{side})")
    return _finish(fig, path)


# ------------------------------------------------------------------------------------------------
# Errors


def confusion_matrix(net: Network, X: Any, y: Any) -> np.ndarray:
    """Counts of (true class, predicted class) over the rows of ``X``.

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
        ``m[t, p]`` rows of true class ``t`` predicted as ``p``.
    """
    net = _check_network(net)
    Xc, yc = _xy(net, X, y)
    k = net.sizes[-1]
    pred = net.predict(Xc)
    return np.bincount(yc.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)


def plot_confusion(net: Network, X: Any, y: Any, path: str | os.PathLike[str] | None = None) -> Figure:
    """The confusion matrix of ``net`` on ``(X, y)``, with the count in each cell.

    Parameters
    ----------
    net : Network
        The network.
    X : array_like, shape (n, sizes[0])
        Inputs (e.g. the test images).
    y : array_like of int, shape (n,)
        Their labels.
    path : str or path-like, optional
        Also save the figure there as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    m = confusion_matrix(net, X, y)
    k = m.shape[0]
    accuracy = np.trace(m) / m.sum()
    fig = _figure(max(5.0, 0.55 * k + 2.0), max(4.5, 0.5 * k + 1.5))
    ax = fig.subplots()
    # Colour by the fraction of each true class, so the rare errors stay visible next to the diagonal.
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    if k <= 20:
        for t in range(k):
            for p in range(k):
                if m[t, p]:
                    ax.text(p, t, str(m[t, p]), ha="center", va="center", fontsize=8,
                            color="white" if frac[t, p] > 0.5 else "black")  # fmt: skip
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix: {accuracy:.2%} of {int(m.sum()):,} right")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    return _finish(fig, path)


def plot_misclassified(net: Network, X: Any, y: Any, n: int = 25, path: str | os.PathLike[str] | None = None) -> Figure:
    """A grid of the first ``n`` rows of ``X`` that ``net`` gets wrong, with true and predicted labels.

    Parameters
    ----------
    net : Network
        The network; its input size must be a square image.
    X : array_like, shape (m, sizes[0])
        Inputs (e.g. the test images), values in [0, 1] (white digit on black).
    y : array_like of int, shape (m,)
        Their labels.
    n : int
        At most this many images.
    path : str or path-like, optional
        Also save the figure there as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    net = _check_network(net)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    side = _image_side(net.sizes[0], "the network's input layer")
    Xc, yc = _xy(net, X, y)
    pred = net.predict(Xc)
    wrong = np.flatnonzero(pred != yc)
    shown = wrong[:n]
    rows, cols = _grid(max(len(shown), 1))
    fig = _figure(1.4 * cols + 0.4, 1.55 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, shown):
        ax.imshow(Xc[i].reshape(side, side), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"true {yc[i]}, said {pred[i]}", fontsize=8, color="firebrick")
    if len(shown) == 0:
        axes[0].text(0.5, 0.5, "no misclassified rows", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(f"Misclassified: {len(wrong):,} of {len(yc):,} ({len(wrong) / len(yc):.2%}); first {len(shown)} shown")
    return _finish(fig, path)


# ------------------------------------------------------------------------------------------------
# Noise


def plot_noise(net: Network, seed: int = 0, path: str | os.PathLike[str] | None = None) -> Figure:
    """The network's outputs for an image of uniform random noise, next to the image.

    The network has never seen anything but digits and has no way to say "none of these": it
    still answers, often with a large output.

    Parameters
    ----------
    net : Network
        The network.
    seed : int
        Seed of the noise (NumPy ``default_rng``; pixels uniform in [0, 1)).
    path : str or path-like, optional
        Also save the figure there as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    net = _check_network(net)
    seed = check_seed(seed)
    n_in = net.sizes[0]
    image = np.random.default_rng(seed).random((1, n_in)).astype(net.dtype)
    out = np.asarray(net.forward(image)[0], dtype=np.float64)
    answer = int(np.argmax(out))
    side = math.isqrt(n_in)
    square = side * side == n_in
    fig = _figure(9 if square else 6, 3.8)
    if square:
        ax_img, ax_out = fig.subplots(1, 2, width_ratios=[1, 1.6])
        ax_img.imshow(image.reshape(side, side), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax_img.set_axis_off()
        ax_img.set_title(f"uniform noise (seed {seed})")
    else:
        ax_out = fig.subplots()
    k = len(out)
    colors = ["tab:orange" if c == answer else "tab:blue" for c in range(k)]
    ax_out.bar(range(k), out, color=colors)
    ax_out.set_xticks(range(k))
    top = 1.0 if np.all((out >= 0) & (out <= 1)) else float(np.max(out)) * 1.1
    ax_out.set(ylim=(min(0.0, float(np.min(out))), top), xlabel="output neuron (digit)", ylabel="activation",
               title=f"The network answers {answer} (output {out[answer]:.3f})")  # fmt: skip
    ax_out.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


# ------------------------------------------------------------------------------------------------
# Command line: ``fastgd plot model.npz --kind KIND``

KINDS = ("history", "weights", "confusion", "misclassified", "noise")


def add_parser(sub: Any) -> Any:
    """Add ``fastgd plot`` to the sub-parsers ``sub``."""
    from .cli import DATASETS

    p = sub.add_parser("plot", help="draw a saved model: training history, weights, confusion, errors, noise",
                       description="Draw a picture of a saved model (from Network.save or fastgd train --out) "
                       "as a PNG. Needs matplotlib: " + INSTALL_HINT + ".")  # fmt: skip
    p.add_argument("model", help="the model file (.npz)")
    p.add_argument("--kind", choices=KINDS, default="history",
                   help="history: cost and accuracy per epoch; weights: each first-layer neuron's weights as an "
                   "image; confusion: the confusion matrix on the test images; misclassified: test digits it gets "
                   "wrong; noise: its outputs for a random image (default: history)")  # fmt: skip
    p.add_argument("--out", default=None, help="the PNG to write (default: MODEL-KIND.png next to the model)")
    p.add_argument("--layer", type=int, default=0, help="weights: which layer's weights (default: 0)")
    p.add_argument("--n", type=int, default=25, help="misclassified: at most this many images (default: 25)")
    p.add_argument("--seed", type=int, default=0, help="noise: seed of the noise image (default: 0)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist",
                   help="confusion, misclassified: the test images' dataset (default: mnist)")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files (default: $FASTGD_DATA, ...)")
    p.add_argument("--test-size", type=int, default=None, help="use the first N test images (default: all)")
    p.set_defaults(func=_run_command)
    return p


def _run_command(args: Any) -> int:
    from ._model_file import load

    net = load(args.model)
    out = args.out if args.out is not None else f"{os.path.splitext(args.model)[0]}-{args.kind}.png"
    if args.kind == "history":
        plot_history(net, path=out)
    elif args.kind == "weights":
        plot_weights(net, layer=args.layer, path=out)
    elif args.kind == "noise":
        plot_noise(net, seed=args.seed, path=out)
    else:
        from .data import load_fashion_mnist, load_mnist

        loader = load_mnist if args.dataset == "mnist" else load_fashion_mnist
        Xt, yt = loader("test", data_dir=args.data_dir, dtype=net.dtype.name)
        if args.test_size is not None:
            if args.test_size < 1:
                raise ValueError(f"--test-size must be at least 1, got {args.test_size}")
            Xt, yt = Xt[: args.test_size], yt[: args.test_size]
        if args.kind == "confusion":
            m = confusion_matrix(net, Xt, yt)
            print(f"accuracy {np.trace(m) / m.sum():.2%} on {int(m.sum()):,} test images")
            plot_confusion(net, Xt, yt, path=out)
        else:
            plot_misclassified(net, Xt, yt, n=args.n, path=out)
    print(f"{args.kind} figure saved to {out}")
    return 0
