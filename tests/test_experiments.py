"""fastgd.experiments on small configurations: each shows the property it is meant to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image  # in the test extra: a missing matplotlib fails these tests, it does not skip them
import numpy as np
import pytest

import fastgd
from fastgd import experiments
from fastgd.cli import main
from fastgd.experiments import _verdict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path, fig) -> None:  # noqa: ANN001
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    width, height = fig.get_size_inches() * fig.dpi
    assert matplotlib.image.imread(path).shape[:2] == (round(height), round(width))


@pytest.fixture(scope="module")
def small(mnist) -> dict:  # noqa: ANN001
    """Real MNIST, already loaded, passed to the experiments as arrays."""
    return {"train": mnist["train"], "test": mnist["test"]}


def test_verdict_rules() -> None:
    best = 0.2

    def verdict(initial: float, costs: list[float], diverged: bool, accuracy: float = 0.5) -> str:
        return _verdict(initial, np.array(costs), diverged, best, accuracy, 10)

    assert verdict(2.8, [2.0, 1.5, 1.0], False) == "crawls"
    assert verdict(2.8, [2.0, 1.5, 1.0], False, accuracy=0.1) == "crawls"  # still falling, near chance
    assert verdict(2.8, [0.6, 0.3, 0.21], False) == "converges"
    assert verdict(2.8, [1.9, 1.3, 1.4], False) == "oscillates"
    assert verdict(2.8, [0.5, 0.5, 0.5], False, accuracy=0.1) == "stuck"  # saturated: flat at chance
    assert verdict(2.8, [0.5, 0.5, 0.5], False, accuracy=0.5) == "crawls"  # flat but learning something
    assert verdict(2.8, [80.0, 81.0], False) == "diverged"  # above the untrained cost
    assert verdict(2.8, [0.5], True) == "diverged"  # DivergenceError
    assert verdict(2.8, [], True) == "diverged"


def test_learning_rate(small, tmp_path: Path) -> None:  # noqa: ANN001
    result = experiments.learning_rate(etas=[0.001, 0.1, 100.0], epochs=2, train_size=3000, test_size=2000, **small)
    rows = {row["eta"]: row for row in result.rows}
    assert list(rows) == [0.001, 0.1, 100.0]
    # Too small crawls: after the same epochs its cost is higher than the good rate's.
    assert rows[0.001]["train cost"] > 2 * rows[0.1]["train cost"]
    assert rows[0.001]["verdict"] == "crawls"
    assert rows[0.1]["verdict"] == "converges"
    assert rows[0.1]["test accuracy"] > 0.8
    # Too large: reported as diverged or oscillating, at chance on the test images.
    assert rows[100.0]["verdict"] in ("diverged", "oscillates")
    assert rows[100.0]["test accuracy"] < 0.3
    # Same network and seed: every curve starts from the same untrained cost.
    lines = result.figure.axes[0].get_lines()
    assert len(lines) == 3
    assert len({line.get_ydata()[0] for line in lines}) == 1
    text = str(result)
    assert "verdict" in text and "crawls" in text and "converges" in text
    result.save_figure(tmp_path / "lr.png")
    check_png(tmp_path / "lr.png", result.figure)


def test_learning_rate_reports_a_divergence(small) -> None:  # noqa: ANN001
    # ReLU at eta 1e6: the cost becomes NaN in the first epoch, so fit raises DivergenceError.
    result = experiments.learning_rate(etas=[0.1, 1e6], epochs=1, train_size=2000, test_size=500, plot=False,
                                       activation="relu", **small)  # fmt: skip
    good, bad = result.rows
    assert good["verdict"] == "converges" and good["epochs run"] == 1
    assert bad["verdict"] == "diverged" and bad["epochs run"] == 0
    assert result.data["diverged"] == [False, True]
    assert any("eta 1e+06: training diverged" in note for note in result.notes)


def test_learning_rate_uses_train_many_bit_for_bit(small) -> None:  # noqa: ANN001
    X, y = small["train"]
    result = experiments.learning_rate(etas=[0.05], epochs=1, train_size=1000, test_size=500, plot=False, **small)
    net = fastgd.Network(seed=0)
    net.fit(X[:1000], y[:1000], epochs=1, eta=0.05, optimizer="sgd", seed=0)
    assert result.figure is None
    assert result.rows[0]["train cost"] == net.history.train_cost[-1]
    with pytest.raises(ValueError, match="plot=False"):
        result.save_figure("never.png")


def test_init_seeds(small, tmp_path: Path) -> None:  # noqa: ANN001
    result = experiments.init_seeds(n_seeds=4, epochs=1, train_size=2000, test_size=2000, **small)
    assert result.column("seed") == [0, 1, 2, 3, "min", "median", "max", "std"]
    theta = result.data["theta"]
    assert theta.shape[0] == 4
    assert len({t.tobytes() for t in theta}) == 4  # the networks differ
    assert result.data["mean_distance"] > 1.0
    acc = result.data["test_accuracy"]
    assert acc.std() > 0 and np.all(acc > 0.5)  # the accuracies spread, and every network learned
    assert result.rows[4]["test accuracy"] == acc.min() and result.rows[6]["test accuracy"] == acc.max()
    # Network k is what a plain fit with seed k gives.
    X, y = small["train"]
    net = fastgd.Network(seed=2)
    net.fit(X[:2000], y[:2000], epochs=1, seed=2)
    np.testing.assert_array_equal(theta[2], net.theta.astype(np.float64))
    assert sum(p.get_height() for p in result.figure.axes[0].patches) == 4  # histogram of 4 networks
    result.save_figure(tmp_path / "seeds.png")
    check_png(tmp_path / "seeds.png", result.figure)


def test_random_labels(small, tmp_path: Path) -> None:  # noqa: ANN001
    result = experiments.random_labels(train_size=500, epochs=30, test_size=2000, **small)
    true, shuffled = result.rows
    assert true["labels"] == "true labels" and shuffled["labels"] == "shuffled labels"
    assert abs(shuffled["test accuracy"] - 0.10) < 0.05  # chance on unseen images
    assert shuffled["train accuracy"] > 0.3  # while it memorises the shuffled training labels
    curve = result.data["curves"]["shuffled labels"]["train_accuracy"]
    assert curve[-1] > curve[0] + 0.15  # rising
    assert true["test accuracy"] > 0.7 and true["train accuracy"] > 0.95
    text = str(result)
    assert "13,002 parameters" in text and "on 500 images" in text and "fewer parameters than MNIST" in text
    result.save_figure(tmp_path / "rl.png")
    check_png(tmp_path / "rl.png", result.figure)


def test_noise(small, tmp_path: Path) -> None:  # noqa: ANN001
    result = experiments.noise(n_images=500, epochs=1, train_size=5000, **small)
    noise_row, digits_row = result.rows
    assert noise_row["input"] == "noise" and digits_row["input"] == "digits"
    assert result.data["noise"]["answers"].sum() == 500  # it answers every noise image
    assert digits_row["accuracy"] > 0.8
    # Real digits get surer answers; noise gets one favourite answer far more often than 1 in 10.
    assert digits_row["mean max output"] > noise_row["mean max output"]
    assert noise_row["its share"] > 0.3 > digits_row["its share"]
    result.save_figure(tmp_path / "noise.png")
    check_png(tmp_path / "noise.png", result.figure)


def test_noise_with_a_given_network(small) -> None:  # noqa: ANN001
    net = fastgd.Network([784, 8, 10], seed=1)
    result = experiments.noise(net, n_images=50, plot=False, test=small["test"])
    noise_X = np.random.default_rng(0).random((50, 784)).astype(np.float32)
    assert result.rows[0]["mean max output"] == pytest.approx(float(net.forward(noise_X).max(axis=1).mean()))
    with pytest.raises(TypeError, match="net must be"):
        experiments.noise("model.npz", test=small["test"])


def test_bad_arguments_are_named(small) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="etas"):
        experiments.learning_rate(etas=[], **small)
    with pytest.raises(ValueError, match="etas"):
        experiments.learning_rate(etas=[0.1, -1.0], **small)
    with pytest.raises(ValueError, match="train_size"):
        experiments.random_labels(train_size=10**6, **small)
    with pytest.raises(ValueError, match="dataset"):
        experiments.init_seeds(dataset="cifar", **small)
    with pytest.raises(TypeError, match="n_seeds"):
        experiments.init_seeds(n_seeds=2.5, **small)
    with pytest.raises(ValueError, match="name"):
        experiments.run("nonsense")


def test_cli_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "fastgd", "experiment", "--help"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0
    for name in experiments.EXPERIMENTS:
        assert name in proc.stdout


def test_cli_help_of_each_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    for name in experiments.EXPERIMENTS:
        with pytest.raises(SystemExit) as exc:
            main(["experiment", name, "--help"])
        assert exc.value.code == 0
        printed = capsys.readouterr().out
        assert f"fastgd experiment {name}" in printed and "--test-size" in printed and "--out" in printed


def test_cli_run(mnist, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "lr.png"
    proc = subprocess.run(
        [sys.executable, "-m", "fastgd", "experiment", "learning-rate", "--etas", "0.1,100", "--epochs", "1",
         "--train-size", "1000", "--test-size", "500", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "experiment learning-rate" in proc.stdout and "diverged" in proc.stdout
    assert f"figure saved to {out}" in proc.stdout
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_noise_with_a_saved_model(small, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    net = fastgd.Network([784, 8, 10], seed=4)
    model = tmp_path / "m.npz"
    net.save(model)
    code = main(["experiment", "noise", "--model", str(model), "--images", "20", "--test-size", "100", "--no-figure"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "experiment noise" in printed and "784, 8, 10" in printed and "figure saved" not in printed
