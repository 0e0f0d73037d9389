"""The fastgd command, driven in a subprocess as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import default_sigint

import fastgd


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgd", *args], capture_output=True, text=True, check=check,
                          env={**os.environ, **(env or {})}, timeout=600)  # fmt: skip


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"fastgd {fastgd.__version__}"
    for cmd in ("train", "evaluate", "predict", "gradcheck", "info", "bench"):
        out = run(cmd, "--help").stdout
        assert "usage: fastgd " + cmd in out
    assert "--resume" in run("train", "--help").stdout and "white" in run("predict", "--help").stdout


@pytest.mark.parametrize("args, message", [
    (("train", "--epochs", "x"), "invalid int value"),
    (("train", "--optimizer", "adam"), "invalid choice"),
    (("evaluate",), "the following arguments are required: model"),
    (("predict", "m.npz"), "the following arguments are required: images"),
    (("predict", "m.npz", "a.png", "--invert", "maybe"), "invalid choice"),
    (("nosuch",), "invalid choice"),
])  # fmt: skip
def test_bad_arguments_exit_2(args: tuple, message: str) -> None:
    res = run(*args, check=False)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_info_lists_backends() -> None:
    out = run("info").stdout
    for name in fastgd.backends.NAMES:
        assert name in out
    assert "default backend" in out and "data:" in out


def test_info_tells_mnist_from_fashion_mnist(mnist) -> None:  # noqa: ANN001
    """The two datasets share file names; info checks the label files' sums."""
    out = run("info", env={"FASTGD_DATA": os.environ["FASTGD_DATA"]}).stdout
    assert "mnist: complete in" in out
    assert "fashion-mnist: files found in" in out and "not Fashion-MNIST's" in out and "this is MNIST's" in out


def test_train_on_a_subset(mnist) -> None:  # noqa: ANN001
    out = run("train", "--epochs", "2", "--limit", "3000").stdout
    assert out.count("epoch ") == 2
    assert "test accuracy" in out
    acc = float(out.strip().splitlines()[-1].split("test accuracy ")[1].split("%")[0])
    assert acc > 70


def test_gradcheck_command(mnist) -> None:  # noqa: ANN001
    res = run("gradcheck", "--sizes", "784,10,10", "--method", "five-point", "--max-params", "300")
    assert "cost evaluations" in res.stdout and "worst relative error" in res.stdout


def test_errors_are_reported_without_a_traceback(tmp_path) -> None:  # noqa: ANN001
    res = run("train", "--epochs", "1", "--data-dir", str(tmp_path), check=False)
    assert res.returncode == 2
    assert "fastgd: error:" in res.stderr and "Traceback" not in res.stderr
    assert str(tmp_path) in res.stderr
    res = run("train", "--sizes", "784,x,10", check=False)
    assert res.returncode == 2 and "layer sizes" in res.stderr


@pytest.mark.parametrize("forced", ["numpy", "numba"])
def test_forced_backend_is_used(forced: str) -> None:
    code = "import fastgd; print(fastgd.BACKEND, fastgd.Network([4, 3]).backend)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "FASTGD_BACKEND": forced}).stdout.split()  # fmt: skip
    assert out == [forced, forced]


def test_unknown_forced_backend_fails_loudly() -> None:
    code = "import fastgd; fastgd.Network([4, 3])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FASTGD_BACKEND": "cuda"})  # fmt: skip
    assert res.returncode != 0 and "FASTGD_BACKEND='cuda'" in res.stderr


def test_train_save_evaluate_predict(mnist, tmp_path) -> None:  # noqa: ANN001
    from PIL import Image

    model = tmp_path / "model.npz"
    out = run("train", "--epochs", "2", "--limit", "2000", "--out", str(model)).stdout
    assert out.count("epoch ") == 2 and f"saved the model to {model}" in out
    net = fastgd.load(model)
    assert len(net.history) == 2 and net.training_state is not None and net.training_state.finished
    assert net.training_state.data == {"dataset": "mnist", "limit": 2000}
    Xt, yt = mnist["test"]
    acc = net.score(Xt, yt)

    ev = run("evaluate", str(model)).stdout
    assert f"accuracy {acc:.2%}" in ev and f"cost {net.cost(Xt, yt):.4f}" in ev
    table = ev.split("confusion matrix")[1].strip().splitlines()[2:]
    confusion = np.array([[int(v) for v in line.split()[1:]] for line in table])
    assert confusion.shape == (10, 10) and confusion.sum() == 10000 and np.trace(confusion) == round(acc * 10000)
    assert np.array_equal(confusion.sum(axis=1), np.bincount(yt, minlength=10))

    # Real test digits saved as PNGs: white on black as MNIST, one dark on light, one larger.
    paths, rows = [], []
    for k in range(4):
        pixels = np.round(Xt[k] * 255).astype(np.uint8).reshape(28, 28)
        if k == 1:
            pixels = 255 - pixels
        img = Image.fromarray(pixels, mode="L")
        if k == 2:
            img = img.convert("RGB")
        path = tmp_path / f"digit{k}.png"
        img.save(path)
        paths.append(str(path))
        rows.append(np.round(Xt[k] * 255) / 255)
    big = tmp_path / "big.png"
    Image.fromarray(np.round(Xt[3] * 255).astype(np.uint8).reshape(28, 28), mode="L").resize((56, 56)).save(big)
    res = run("predict", str(model), *paths, str(big))
    lines = [line for line in res.stdout.splitlines() if line.startswith(str(tmp_path))]
    expected = net.predict(np.array(rows))
    assert [int(line.split(": ")[1].split()[0]) for line in lines[:4]] == list(expected)
    assert "inverted" in lines[1] and "inverted" not in lines[0] and "resized from 56x56" in lines[4]
    outputs = [line for line in res.stdout.splitlines() if line.strip().startswith("outputs:")]
    first = np.array([float(v.split(":")[1]) for v in outputs[0].split()[1:]])
    assert np.allclose(first, net.forward(np.array(rows[:1]))[0], atol=6e-4)
    assert "white" in res.stdout

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    res = run("predict", str(model), str(bad), check=False)
    assert res.returncode == 2 and "cannot read the image" in res.stderr and "Traceback" not in res.stderr
    res = run("evaluate", str(bad), check=False)
    assert res.returncode == 2 and "not a valid fastgd model file" in res.stderr


def test_sigint_mid_epoch_then_resume_matches_an_uninterrupted_run(mnist, tmp_path) -> None:  # noqa: ANN001
    # Batch 1 over 20,000 images: an epoch lasts a few tenths of a second, long enough to be interrupted in.
    train = ["train", "--epochs", "3", "--limit", "20000", "--batch-size", "1", "--seed", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "fastgd", *train, "--out", str(tmp_path / "ckpt.npz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch   1:"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted during epoch 2" in err and f"fastgd train --resume {tmp_path / 'ckpt.npz'}" in err
    assert "epoch   2:" not in out and "Traceback" not in err
    ckpt = fastgd.load(tmp_path / "ckpt.npz")
    assert ckpt.training_state is not None and ckpt.training_state.done == 1 and len(ckpt.history) == 1

    res = run("train", "--resume", str(tmp_path / "ckpt.npz"), "--epochs", "4", check=False)
    assert res.returncode == 2 and "--epochs 4 conflicts with the checkpoint" in res.stderr
    res = run("train", "--resume", str(tmp_path / "ckpt.npz"))
    assert "1 of 3 epochs done" in res.stdout and "epoch   2:" in res.stdout and "epoch   3:" in res.stdout
    run(*train, "--out", str(tmp_path / "full.npz"))
    resumed, full = fastgd.load(tmp_path / "ckpt.npz"), fastgd.load(tmp_path / "full.npz")
    assert np.array_equal(resumed.theta, full.theta)
    assert resumed.history.train_cost == full.history.train_cost and resumed.history.epoch == [1, 2, 3]


def test_sigint_without_out_saves_a_default_checkpoint(mnist, tmp_path) -> None:  # noqa: ANN001
    proc = subprocess.Popen([sys.executable, "-m", "fastgd", "train", "--epochs", "2", "--limit", "20000",
                             "--batch-size", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch   1:"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "fastgd-checkpoint.npz" in err
    assert fastgd.load(tmp_path / "fastgd-checkpoint.npz").training_state.done == 1


def test_resume_refuses_a_model_without_training_record(tmp_path) -> None:  # noqa: ANN001
    fastgd.Network().save(tmp_path / "plain.npz")
    res = run("train", "--resume", str(tmp_path / "plain.npz"), check=False)
    assert res.returncode == 2 and "cannot be resumed" in res.stderr
