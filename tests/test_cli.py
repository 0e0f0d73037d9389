"""The fastgd command, driven in a subprocess as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastgd


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgd", *args], capture_output=True, text=True, check=check,
                          env={**os.environ, **(env or {})}, timeout=600)  # fmt: skip


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"fastgd {fastgd.__version__}"
    for cmd in ("train", "gradcheck", "info", "bench"):
        out = run(cmd, "--help").stdout
        assert "usage: fastgd " + cmd in out


def test_info_lists_backends() -> None:
    out = run("info").stdout
    for name in fastgd.backends.NAMES:
        assert name in out
    assert "default backend" in out and "data:" in out


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
