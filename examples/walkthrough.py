"""How a neural network learns, in code: 3Blue1Brown's "Gradient descent" video with fastgd.

Run it top to bottom and read what it prints:

    python examples/walkthrough.py            # the whole story, a minute or two on 2 cores
    python examples/walkthrough.py --small    # a few thousand images, a few seconds
    python examples/walkthrough.py --out pics --data-dir /path/to/mnist

Each section is one step of the video: the data, one digit, the network, the gradient (backprop
checked against finite differences), training, what the network learned, and the experiments the
video talks about (learning rates, a noise image, random labels). The pictures are saved as PNGs
in the output folder when matplotlib is installed (``pip install "fastgd[plot]"``); without it the
walkthrough still runs and prints everything.

MNIST is looked up in ``--data-dir``, then ``$FASTGD_DATA``, then fastgd's cache, and otherwise
downloaded (about 11 MB).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import textwrap
import time

import numpy as np
from tqdm import tqdm

import fastgd
from fastgd import experiments
from fastgd import plot as fplot

WIDTH = 100


def section(number: int, title: str) -> None:
    """Print a section heading."""
    print(f"\n{'=' * WIDTH}\n{number}. {title}\n{'=' * WIDTH}", flush=True)


def say(text: str) -> None:
    """Print a paragraph of explanation, wrapped."""
    print(textwrap.fill(" ".join(text.split()), WIDTH), flush=True)


def ascii_digit(image: np.ndarray) -> str:
    """A 784-pixel MNIST image as 28 lines of text: the brighter the pixel, the denser the character."""
    ramp = " .:-=+*#%@"
    levels = np.clip((image.reshape(28, 28) * len(ramp)).astype(int), 0, len(ramp) - 1)
    # Two characters per pixel: a character cell is about twice as tall as it is wide.
    return "\n".join("|" + "".join(ramp[v] * 2 for v in row) + "|" for row in levels)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fastgd's walkthrough of the video 'Gradient descent, how neural "
                                "networks learn': run it and read along.")  # fmt: skip
    p.add_argument("--small", action="store_true",
                   help="a few thousand images, 2 epochs, few learning rates: runs in seconds")  # fmt: skip
    p.add_argument("--out", default="walkthrough-output",
                   help="folder for the pictures (PNG), created if needed (default: walkthrough-output)")  # fmt: skip
    p.add_argument("--data-dir", default=None,
                   help="folder of the MNIST files (default: $FASTGD_DATA, the cache, else a download)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    small = args.small
    # The sizes of everything below. --small is what the test suite runs; the full settings are
    # the video's: all 60,000 training images, 30 epochs.
    n_train = 5_000 if small else 60_000
    n_test = 1_000 if small else 10_000
    epochs = 2 if small else 30
    lr_etas = [0.1, 3.0, 100.0] if small else [0.01, 0.1, 1.0, 3.0, 10.0, 100.0]
    lr_epochs, lr_rows = (2, 2_000) if small else (10, 10_000)
    rl_rows, rl_epochs = (300, 10) if small else (1_000, 100)

    os.makedirs(args.out, exist_ok=True)
    can_draw = importlib.util.find_spec("matplotlib") is not None
    pictures: list[str] = []

    def picture(name: str) -> str:
        path = os.path.join(args.out, name)
        pictures.append(path)
        return path

    print(
        f"fastgd {fastgd.__version__}, backend {fastgd.BACKEND}; pictures go to {os.path.abspath(args.out)}"
        + ("" if can_draw else ' (matplotlib is not installed: no pictures, pip install "fastgd[plot]")')
    )

    # --------------------------------------------------------------------------------------------
    section(1, "The data: MNIST")
    say("""MNIST holds 70,000 handwritten digits, 28x28 grey pixels each, with the digit each one shows.
        fastgd gives every image as one row of 784 numbers between 0 (black) and 1 (white), read row by
        row, and the labels as integers 0-9. The network learns from the 60,000 training images; the
        10,000 test images are kept apart to measure how well it does on digits it has never seen.""")
    try:
        X, y = fastgd.load_mnist("train", data_dir=args.data_dir)
        Xt, yt = fastgd.load_mnist("test", data_dir=args.data_dir)
    except (fastgd.DatasetNotFoundError, fastgd.DownloadError) as exc:
        print(f"\ncannot load MNIST: {exc}\nPass --data-dir DIR or set FASTGD_DATA to a folder holding it.",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"training images: {X.shape} {X.dtype}, labels {y.shape} {y.dtype}; test images: {Xt.shape}")
    X, y, Xt, yt = X[:n_train], y[:n_train], Xt[:n_test], yt[:n_test]
    if small:
        print(f"--small: using the first {n_train:,} training and {n_test:,} test images")
    print("how many of each digit:", dict(zip(range(10), np.bincount(y, minlength=10).tolist())))

    # --------------------------------------------------------------------------------------------
    section(2, "Look at one digit")
    say(f"""Row 0 of the training set, labelled {y[0]}, drawn with characters: the brighter the pixel,
        the denser the character. To the network it is nothing but these 784 numbers; its first layer
        of neurons is 784 "input neurons" whose activations are the pixel values.""")
    print(ascii_digit(X[0]))
    if can_draw:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3, 3.2), dpi=100, layout="constrained")
        ax = fig.subplots()
        ax.imshow(X[0].reshape(28, 28), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"training image 0: a {y[0]}")
        ax.set_axis_off()
        fplot.save_figure(fig, picture("digit.png"))

    # --------------------------------------------------------------------------------------------
    section(3, "The network: 784-16-16-10")
    say("""784 inputs, two hidden layers of 16 neurons, 10 outputs (one per digit). Each neuron takes a
        weighted sum of the previous layer's activations, adds its bias and squashes the result; the
        answer is the output neuron with the largest activation. The book and the video use sigmoid
        neurons, the quadratic cost and weights drawn from N(0, 1); fastgd's defaults (tanh hidden
        neurons, softmax outputs with the log-likelihood cost, smaller initial weights, a learning rate
        that decays) learn the same task better. Both are built here.""")
    book = fastgd.Network([784, 16, 16, 10], activation="sigmoid", cost="quadratic", init="normal", seed=0)
    net = fastgd.Network([784, 16, 16, 10], seed=0)
    print(f"the book's network: {book!r}")
    print(f"fastgd's defaults:  {net!r}")
    shapes = ", ".join(
        f"W{k + 1} {w.shape} + b{k + 1} {b.shape}" for k, (w, b) in enumerate(zip(book.weights, book.biases))
    )
    print(f"parameters: {shapes} = {book.n_params:,} numbers, all in one vector net.theta")
    say("""Untrained, the network's weights are random, so its answers are noise: its cost, the average
        over the images of how far the outputs are from the right answer, is high, and its accuracy is
        about chance (10%).""")
    out = book.forward(X[:1])[0]
    print("the untrained book network's 10 outputs for the digit above:", np.array2string(out, precision=2))
    print(f"untrained: cost {book.cost(X, y):.4f}, test accuracy {book.score(Xt, yt):.2%}")

    # --------------------------------------------------------------------------------------------
    section(4, "The gradient: backpropagation against finite differences")
    say("""Learning means finding the 13,002 weights and biases that make the cost small. The gradient of
        the cost says in which direction to nudge each of them, and how much it matters. Backpropagation
        computes all 13,002 partial derivatives in one forward and one backward pass. The naive way is
        to nudge each parameter a little up and a little down and see how the cost changes (finite
        differences): two cost evaluations per parameter. It is far too slow to train with, but it
        makes a good check that backprop is right. Here both on a mini-batch of 10 digits:""")
    report = fastgd.gradcheck(book, X[:10], y[:10])
    print(report)
    print(f"worst disagreement: {report.max_rel_error:.1e} (relative), over all {report.n_checked:,} parameters")
    print(
        f"finite differences needed {report.fd_evaluations:,} cost evaluations ({report.fd_seconds:.2f} s); "
        f"backprop needed {report.backprop_evaluations} pass ({report.backprop_seconds * 1e3:.3f} ms)"
    )
    say(f"""Backprop and finite differences agree to about {report.max_rel_error:.0e} (finite differences
        themselves are only that accurate), and backprop got there
        {report.fd_seconds / max(report.backprop_seconds, 1e-12):,.0f} times faster.""")

    # --------------------------------------------------------------------------------------------
    section(5, "Training: stochastic gradient descent")
    say(f"""Gradient descent steps downhill: theta <- theta - eta * gradient. Computing the gradient over
        all {n_train:,} images for every step would be slow, so stochastic gradient descent shuffles them,
        cuts them into mini-batches of 10 and takes one step per mini-batch: {-(-n_train // 10):,} small,
        slightly noisy steps per pass over the data (an epoch). {epochs} epochs of each network follow; the
        bar counts training images, and after every epoch the network is tested on the
        {n_test:,} test images it never trains on.""")

    def train(network: fastgd.Network, label: str, **fit_options: object) -> fastgd.History:
        # fit calls progress(rows_done, rows) a few times per epoch and callback(net, history) after
        # each epoch: the first moves the bar, the second prints the epoch's line above it.
        bar = tqdm(total=epochs * X.shape[0], desc=label, unit="img", unit_scale=True, file=sys.stderr,
                   dynamic_ncols=True, leave=False)  # fmt: skip
        epochs_done = 0

        def progress(rows_done: int, rows: int) -> None:
            bar.update(epochs_done * rows + rows_done - bar.n)

        def after_epoch(_net: fastgd.Network, history: fastgd.History) -> None:
            nonlocal epochs_done
            epochs_done += 1
            bar.write(
                f"  {label}: epoch {history.epoch[-1]:>2}  training cost {history.train_cost[-1]:.4f}  "
                f"test accuracy {history.val_accuracy[-1]:.2%}  ({history.seconds[-1]:.3f} s)"
            )

        try:
            return network.fit(X, y, epochs=epochs, batch_size=10, validation_data=(Xt, yt), seed=1,
                               callback=after_epoch, progress=progress, **fit_options)  # fmt: skip
        finally:
            bar.close()

    t0 = time.perf_counter()
    train(book, "the book's network", optimizer="sgd", eta=3.0)
    train(net, "fastgd's defaults")
    print(f"(both trained in {time.perf_counter() - t0:.1f} s)")
    book_acc, net_acc = book.score(Xt, yt), net.score(Xt, yt)
    print(f"test accuracy of the book's network: {book_acc:.2%}")
    print(f"test accuracy of fastgd's defaults: {net_acc:.2%}")
    say("""The video's network gets about 96% of the test digits right after training on all 60,000
        images; the book's plain settings reach about 94%. The rest of the walkthrough looks at the
        network trained with fastgd's defaults.""")

    # --------------------------------------------------------------------------------------------
    section(6, "What did it learn?")
    say("""The cost fell epoch after epoch: that is all "learning" means here. The video hoped that the
        first hidden layer would pick up strokes and the second loops and lines. Drawing each first-layer
        neuron's 784 incoming weights as a 28x28 image (red positive, blue negative) shows what each
        neuron responds to: a few pick out a short stroke in one place, most are diffuse patterns no
        person would draw. The network found *a* minimum of the cost, not the tidy one we imagined.""")
    W1 = net.weights[0]
    print(
        f"first-layer weights: shape {W1.shape}, from {W1.min():.2f} to {W1.max():.2f}; the largest weight of "
        f"each neuron sits at pixel (row, column): "
        + ", ".join(str(divmod(int(i), 28)) for i in np.abs(W1).argmax(axis=1)[:6])
        + ", ..."
    )
    wrong = np.flatnonzero(net.predict(Xt) != yt)
    print(f"misclassified test digits: {len(wrong):,} of {len(yt):,}")
    if can_draw:
        fplot.plot_history(net, path=picture("history.png"))
        fplot.plot_weights(net, path=picture("weights.png"))
        fplot.plot_misclassified(net, Xt, yt, n=16, path=picture("misclassified.png"))

    # --------------------------------------------------------------------------------------------
    section(7, "Experiment: the learning rate")
    say(f"""eta is how far each step goes. The same book network from the same starting point, trained at
        several rates for {lr_epochs} epochs on {lr_rows:,} images: too small and it crawls, too large and
        it overshoots the valley, oscillates or diverges.""")
    lr = experiments.learning_rate(etas=lr_etas, seed=0, epochs=lr_epochs, train=(X, y), test=(Xt, yt),
                                   train_size=lr_rows, plot=can_draw, activation="sigmoid", cost="quadratic",
                                   init="normal")  # fmt: skip
    print(lr)
    # What the largest rate did: with sigmoid outputs and the quadratic cost, huge steps push the
    # neurons deep into saturation, where the sigmoid is flat and the gradient vanishes.
    top = max(lr.rows, key=lambda row: row["eta"])
    if top["test accuracy"] < 0.2:
        say(f"""Look at eta {top["eta"]:g}: its cost stopped moving at {top["train cost"]:.4f} and its test
            accuracy is {top["test accuracy"]:.1%}, chance. The first huge steps drove the sigmoid neurons
            into saturation, where their slope is almost zero: the gradient vanishes and the network is
            stuck for good. (A cost of 0.5 is every output at 0: the quadratic cost of missing the one
            output that should be 1.)""")
    if can_draw:
        lr.save_figure(picture("learning-rate.png"))

    # --------------------------------------------------------------------------------------------
    section(8, "Experiment: show it noise")
    say("""The network has only ever seen digits, and it has no way to say "this is not a digit". Given an
        image of random pixels it still answers, often with confidence: it was never trained to doubt.""")
    noise_image = np.random.default_rng(0).random((1, 784)).astype(net.dtype)
    noise_out = net.forward(noise_image)[0]
    print(
        f"its outputs for one noise image: {np.array2string(noise_out, precision=3)}; "
        f"it answers {int(noise_out.argmax())} with output {noise_out.max():.3f}"
    )
    nz = experiments.noise(net=net, n_images=min(1_000, n_test), seed=0, test=(Xt, yt), plot=can_draw)
    print(nz)
    if can_draw:
        fplot.plot_noise(net, seed=0, path=picture("noise-image.png"))
        nz.save_figure(picture("noise.png"))

    # --------------------------------------------------------------------------------------------
    section(9, "Experiment: random labels")
    say(f"""Does the network learn digits, or just remember its training images? Train it on {rl_rows:,}
        images twice: once with their true labels and once with the labels shuffled, so there is no
        pattern left to find (Zhang et al. 2017, discussed in the video). With 13,002 parameters for
        {rl_rows:,} images it can still memorise the shuffled labels: its training accuracy climbs, slowly,
        while on the test images it stays at chance.""")
    rl = experiments.random_labels(train_size=rl_rows, epochs=rl_epochs, seed=0, train=(X, y), test=(Xt, yt),
                                   plot=can_draw)  # fmt: skip
    print(rl)
    if can_draw:
        rl.save_figure(picture("random-labels.png"))

    # --------------------------------------------------------------------------------------------
    section(10, "Where next")
    say("""The same from the terminal: `fastgd train`, `fastgd gradcheck`, `fastgd experiment learning-rate`
        (and init-seeds, random-labels, noise), `fastgd plot model.npz --kind weights`. Save a trained
        network with net.save("model.npz") and read it back with fastgd.load("model.npz").""")
    for path in pictures:
        print(f"picture: {path}")
    print(f"walkthrough finished in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
