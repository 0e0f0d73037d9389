"""The walkthrough in examples/ runs top to bottom on its small configuration and says what it should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import param_count
from PIL import Image

WALKTHROUGH = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.py"
PICTURES = ("digit", "history", "weights", "misclassified", "learning-rate", "noise-image", "noise", "random-labels")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:  # noqa: ANN001
    """``python examples/walkthrough.py --small --out DIR`` with MNIST from $FASTGD_DATA (as the mnist fixture)."""
    assert WALKTHROUGH.is_file(), f"{WALKTHROUGH} is missing"
    cwd = tmp_path_factory.mktemp("walkthrough")
    out = cwd / "pictures"
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(WALKTHROUGH), "--small", "--out", str(out)],
        cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return proc, out


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"no line matching {pattern!r} in the walkthrough's output"
    return float(m.group(1).replace(",", ""))


def test_runs_cleanly(run) -> None:  # noqa: ANN001
    proc, _ = run
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert "Warning" not in proc.stderr
    # Every section, in order.
    headings = [int(n) for n in re.findall(r"^(\d+)\. \S", proc.stdout, re.MULTILINE)]
    assert headings == list(range(1, 11))
    assert "--small: using the first 5,000 training and 1,000 test images" in proc.stdout
    assert re.search(r"walkthrough finished in [\d.]+ s$", proc.stdout.strip())


def test_shows_the_digit_as_text(run) -> None:  # noqa: ANN001
    proc, _ = run
    art = [line for line in proc.stdout.splitlines() if line.startswith("|") and line.endswith("|")]
    assert len(art) == 28
    assert all(len(line) == 2 + 2 * 28 for line in art)
    assert any("@" in line for line in art) and any(line.strip("|").strip() == "" for line in art)


def test_gradient_check_agrees_and_counts_evaluations(run) -> None:  # noqa: ANN001
    proc, _ = run
    worst = _number(r"^worst relative error: (\S+)$", proc.stdout)
    assert 0 <= worst < 1e-4  # central differences in float64: about 1e-6 on a real mini-batch
    n = param_count([784, 16, 16, 10])
    assert _number(r"finite differences needed ([\d,]+) cost evaluations", proc.stdout) == 2 * n
    assert _number(r"backprop needed (\d+) pass", proc.stdout) == 1


def test_training_reports_every_epoch_and_learns(run) -> None:  # noqa: ANN001
    proc, _ = run
    for label in ("the book's network", "fastgd's defaults"):
        epochs = re.findall(rf"^  {re.escape(label)}: epoch\s+(\d+)\s+training cost ([\d.]+)\s+test accuracy",
                            proc.stdout, re.MULTILINE)  # fmt: skip
        assert [int(e) for e, _ in epochs] == [1, 2]
        assert float(epochs[1][1]) < float(epochs[0][1])  # the cost falls
    untrained = _number(r"^untrained: cost [\d.]+, test accuracy ([\d.]+)%", proc.stdout)
    book = _number(r"^test accuracy of the book's network: ([\d.]+)%", proc.stdout)
    defaults = _number(r"^test accuracy of fastgd's defaults: ([\d.]+)%", proc.stdout)
    assert untrained < 25
    assert book > 50  # 5,000 images, 2 epochs: about 70%
    assert defaults > 80  # about 87%
    # The progress bar went to stderr and reached the end of each epoch.
    assert "fastgd's defaults" in proc.stderr and "10.0k/10.0k" in proc.stderr


def test_experiments_show_their_point(run) -> None:  # noqa: ANN001
    proc, _ = run
    for name in ("learning-rate", "noise", "random-labels"):
        assert f"experiment {name}\n" in proc.stdout
    rates = re.findall(r"^\s*([\d.]+)\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+(\w+)$", proc.stdout, re.MULTILINE)
    assert [float(r[0]) for r in rates] == [0.1, 3.0, 100.0]
    assert float(rates[1][1]) > float(rates[0][1])  # eta 3 learns faster than eta 0.1 in 2 epochs
    assert float(rates[2][1]) < 0.2  # eta 100 saturates the sigmoid network: chance
    assert "Look at eta 100: its cost stopped moving" in proc.stdout
    noise_row = re.search(r"^\s*noise\s+1,000\s+([\d.]+)", proc.stdout, re.MULTILINE)
    assert noise_row and float(noise_row.group(1)) > 0.1  # it answers noise, with more than a uniform 0.1
    shuffled = re.search(r"^\s*shuffled labels\s+([\d.]+)\s+([\d.]+)", proc.stdout, re.MULTILINE)
    assert shuffled
    train_acc, test_acc = float(shuffled.group(1)), float(shuffled.group(2))
    assert test_acc < 0.2 < train_acc  # memorising, not generalising


def test_pictures_are_valid_pngs(run) -> None:  # noqa: ANN001
    proc, out = run
    listed = re.findall(r"^picture: (.+)$", proc.stdout, re.MULTILINE)
    assert [Path(p).name for p in listed] == [f"{name}.png" for name in PICTURES]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.png" for name in PICTURES)  # no temporary files
    for name in PICTURES:
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert min(img.size) >= 200, (path, img.size)


def test_help_lists_the_options() -> None:
    proc = subprocess.run([sys.executable, str(WALKTHROUGH), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("--small", "--out", "--data-dir"):
        assert option in proc.stdout
