"""fastgd.plot: each picture's content, the PNG it writes, its errors, and ``fastgd plot``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image  # in the test extra: a missing matplotlib fails these tests, it does not skip them
import numpy as np
import pytest

import fastgd
from fastgd import plot
from fastgd.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path, fig) -> np.ndarray:  # noqa: ANN001
    """Assert ``path`` is a PNG of the figure's size in pixels; return its pixels."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    width, height = fig.get_size_inches() * fig.dpi
    assert pixels.shape[:2] == (round(height), round(width))
    assert pixels.std() > 0  # something was drawn
    return pixels


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] whose label is a fixed linear function of the pixels (learnable)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784)).astype(np.float32)
    W = np.random.default_rng(99).standard_normal((784, 10))
    return X, np.argmax(X @ W, axis=1).astype(np.uint8)


@pytest.fixture(scope="module")
def trained() -> tuple[fastgd.Network, np.ndarray, np.ndarray]:
    X, y = synthetic(600, 0)
    Xt, yt = synthetic(300, 1)
    net = fastgd.Network(seed=3)
    net.fit(X, y, epochs=3, validation_data=(Xt, yt), seed=3)
    return net, Xt, yt


def test_history_plots_training_and_test_curves(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, _, _ = trained
    fig = plot.plot_history(net, path=tmp_path / "h.png")
    ax_cost, ax_acc = fig.axes[:2]
    labels = [line.get_label() for line in ax_cost.get_lines()]
    assert labels == ["training", "test"]
    np.testing.assert_allclose(ax_cost.get_lines()[0].get_ydata(), net.history.train_cost)
    np.testing.assert_allclose(ax_cost.get_lines()[1].get_ydata(), net.history.val_cost)
    acc = {line.get_label(): line.get_ydata() for line in ax_acc.get_lines()}
    np.testing.assert_allclose(acc["test"], 100 * np.asarray(net.history.val_accuracy))
    np.testing.assert_allclose(acc["training"], 100 * np.asarray(net.history.train_accuracy))
    check_png(tmp_path / "h.png", fig)
    assert sorted(os.listdir(tmp_path)) == ["h.png"]  # no temporary file left behind


def test_history_without_validation_leaves_out_the_nan_curves() -> None:
    X, y = synthetic(100, 2)
    net = fastgd.Network([784, 8, 10], seed=0)
    history = net.fit(X, y, epochs=2)
    fig = plot.plot_history(history)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["training"]
    assert all(line.get_label() != "test" for line in fig.axes[1].get_lines())


def test_history_errors() -> None:
    with pytest.raises(fastgd.DataError, match="history is empty"):
        plot.plot_history(fastgd.Network([784, 4, 10]))
    with pytest.raises(TypeError, match="history must be"):
        plot.plot_history([1.0, 2.0])


def test_weights_are_images_on_a_symmetric_scale(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, _, _ = trained
    fig = plot.plot_weights(net, path=tmp_path / "w.png")
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    W = np.asarray(net.weights[0], dtype=np.float64)
    assert len(images) == W.shape[0] == 16
    limit = np.max(np.abs(W))
    for k, im in enumerate(images):
        vmin, vmax = im.get_clim()
        assert vmin == pytest.approx(-limit) and vmax == pytest.approx(limit)
        np.testing.assert_allclose(np.asarray(im.get_array()), W[k].reshape(28, 28))
    assert images[0].get_cmap().name == "RdBu_r"
    check_png(tmp_path / "w.png", fig)
    # The second layer's 16 inputs form 4x4 images.
    fig2 = plot.plot_weights(net, layer=1)
    assert sum(1 for ax in fig2.axes if ax.get_images()) == 16


def test_weights_errors(trained) -> None:  # noqa: ANN001
    net, _, _ = trained
    with pytest.raises(fastgd.DataError, match="not a square image"):
        plot.plot_weights(fastgd.Network([10, 4, 3]))
    with pytest.raises(fastgd.DataError, match="not a square image"):
        plot.plot_weights(fastgd.Network([784, 12, 10]), layer=1)  # 12 inputs
    with pytest.raises(ValueError, match="layer must be"):
        plot.plot_weights(net, layer=3)
    with pytest.raises(TypeError, match="net must be"):
        plot.plot_weights("model.npz")


def test_confusion_matrix_counts(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, Xt, yt = trained
    m = plot.confusion_matrix(net, Xt, yt)
    pred = net.predict(Xt)
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(yt, pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(m, expected)
    assert np.trace(m) / m.sum() == pytest.approx(net.score(Xt, yt))
    fig = plot.plot_confusion(net, Xt, yt, path=tmp_path / "c.png")
    assert f"{net.score(Xt, yt):.2%}" in fig.axes[0].get_title()
    check_png(tmp_path / "c.png", fig)
    with pytest.raises(fastgd.DataError):
        plot.plot_confusion(net, Xt, yt[:-1])


def test_misclassified_shows_wrong_rows_with_labels(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, Xt, yt = trained
    pred = net.predict(Xt)
    wrong = np.flatnonzero(pred != yt)
    assert len(wrong) > 6  # a 3-epoch network on this data makes errors to show
    fig = plot.plot_misclassified(net, Xt, yt, n=6, path=tmp_path / "m.png")
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 6
    for ax, i in zip(shown, wrong[:6]):
        assert ax.get_title() == f"true {yt[i]}, said {pred[i]}"
        np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), Xt[i].reshape(28, 28))
    check_png(tmp_path / "m.png", fig)
    with pytest.raises(ValueError, match="n must be"):
        plot.plot_misclassified(net, Xt, yt, n=0)


def test_noise_bars_are_the_outputs_for_the_noise_image(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, _, _ = trained
    fig = plot.plot_noise(net, seed=5, path=tmp_path / "n.png")
    image = np.random.default_rng(5).random((1, 784)).astype(np.float32)
    out = net.forward(image)[0]
    ax_img, ax_out = fig.axes
    np.testing.assert_allclose(np.asarray(ax_img.get_images()[0].get_array()), image.reshape(28, 28))
    heights = [bar.get_height() for bar in ax_out.patches]
    np.testing.assert_allclose(heights, out, rtol=1e-6)
    assert f"answers {int(np.argmax(out))}" in ax_out.get_title()
    check_png(tmp_path / "n.png", fig)


def test_save_errors_name_the_path(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, _, _ = trained
    missing = tmp_path / "nowhere" / "x.png"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plot.plot_noise(net, path=missing)
    with pytest.raises(IsADirectoryError):
        plot.plot_noise(net, path=tmp_path)
    assert os.listdir(tmp_path) == []


def test_saved_png_replaces_an_existing_file_with_normal_permissions(trained, tmp_path: Path) -> None:  # noqa: ANN001
    net, _, _ = trained
    target = tmp_path / "n.png"
    target.write_bytes(b"old")
    fig = plot.plot_noise(net, path=target)
    check_png(target, fig)
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_fastgd_imports_without_matplotlib_and_plots_say_how_to_install() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import fastgd, fastgd.plot, fastgd.experiments\n"
        "try:\n"
        "    fastgd.plot.plot_noise(fastgd.Network([784, 4, 10]))\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORT-ERROR" in proc.stdout and 'pip install "fastgd[plot]"' in proc.stdout


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastgd", *args], capture_output=True, text=True, timeout=300)


def test_cli_plot(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    net, _, _ = trained
    model = tmp_path / "model.npz"
    net.save(model)
    proc = run_cli("plot", str(model), "--kind", "weights")
    assert proc.returncode == 0, proc.stderr
    assert "saved to" in proc.stdout
    out = tmp_path / "model-weights.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(out).ndim == 3
    for kind in ("history", "noise"):  # the same entry point, in this process
        assert main(["plot", str(model), "--kind", kind]) == 0
        assert (tmp_path / f"model-{kind}.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["plot", str(tmp_path / "absent.npz"), "--kind", "weights"]) == 2
    assert "absent.npz" in capsys.readouterr().err


def test_cli_plot_help() -> None:
    proc = run_cli("plot", "--help")
    assert proc.returncode == 0
    assert "--kind" in proc.stdout and "misclassified" in proc.stdout


def test_cli_plot_confusion_and_misclassified_on_mnist(mnist, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    X, y = mnist["train"]
    net = fastgd.Network(seed=0)
    net.fit(X[:3000], y[:3000], epochs=1)
    model = tmp_path / "m.npz"
    net.save(model)
    Xt, yt = mnist["test"]
    common = [str(model), "--test-size", "1000"]
    assert main(["plot", *common, "--kind", "confusion", "--out", str(tmp_path / "c.png")]) == 0
    assert f"accuracy {net.score(Xt[:1000], yt[:1000]):.2%}" in capsys.readouterr().out
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["plot", *common, "--kind", "misclassified", "--n", "9", "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_SIGNATURE
