"""The README's commands and code work: every command in it (and in ``benchmarks/RESULTS.md``, its
measurement log) is run here, run by ``.ci/run``, or listed below with the reason it is not (an
external tool, a placeholder, a long measurement whose script is checked to exist and to answer
``--help``)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import fastgd
from fastgd.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")  # the measurement log
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# Commands nobody runs here, and why.
NOT_RUN = {
    "pip install -e": "the developer's editable install (the tests run inside one)",
    "python -m pytest": "the test suite itself",
    "bash tests/sanitize.sh": "13 minutes under the sanitizers; results recorded in the README",
    "dask scheduler": "Dask's own command, on another host",
    "dask worker": "Dask's own command, on another host",
    "python tests/fuzz_": "needs atheris (the fuzz extra); results recorded in the README",
    "python -m fastgd ...": "a placeholder for any command",
    "fastgd COMMAND --help": "a placeholder: every command's --help is run by tests/test_cli.py",
    "fastgd experiment NAME": "a placeholder: every experiment runs in tests/test_experiments.py",
}
# Long measurements and the walkthrough: the script must exist and answer --help.
SCRIPTS = ("benchmarks/", "examples/")
COMMAND = re.compile(r"(?:env (?:-u \S+ )*|[A-Z_][A-Z0-9_]*=\S* )*(?:fastgd |python |bash |pip install |ruff |dask )")


def blocks(lang: str, doc: str = README) -> list[str]:
    return [body for tag, body in BLOCK.findall(doc) if tag == lang]


def block_lines(doc: str = README) -> list[str]:
    """Every command line of the document's untagged code blocks, without comments."""
    lines = []
    for body in blocks("", doc):
        for line in body.splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def inline_commands(doc: str = README) -> list[str]:
    """Commands quoted in the text (`fastgd bench`, `python benchmarks/...`), table escapes undone."""
    text = BLOCK.sub("", doc)
    spans = (" ".join(m.split()).replace("\\|", "|") for m in re.findall(r"`([^`]+)`", text))
    return [span for span in spans if COMMAND.match(span) and span != "pip install"]


def shell_lines() -> list[str]:
    """The README's commands, then those of the measurement log."""
    return [line for doc in (README, RESULTS) for line in block_lines(doc) + inline_commands(doc)]


def strip_env(command: str) -> list[str]:
    """The command's words without leading ``NAME=value`` settings and ``env -u NAME`` prefixes."""
    words = shlex.split(command)
    if words[:1] == ["env"]:
        words = words[1:]
        while words[:1] == ["-u"]:
            words = words[2:]
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return words


def test_the_first_two_commands_are_what_ci_runs() -> None:
    first = block_lines()[:2]
    assert first == ["pip install . && fastgd train", 'pip install ".[test]" && python -m pytest']
    for command in first:
        assert f"\n{command}\n" in CI, command


def test_every_shell_command_is_accounted_for() -> None:
    """Each command is a fastgd command (parsed here; the tour's are run below), a script that exists
    (answering --help below), a command .ci/run runs, an extra pyproject.toml defines, or in NOT_RUN."""
    parser = build_parser()
    extras = re.search(r"\[project.optional-dependencies\](.*?)\n\[", (ROOT / "pyproject.toml").read_text(), re.S)
    assert extras is not None
    lines = shell_lines()
    assert len(lines) > 20
    for line in lines:
        words = strip_env(line)
        text = " ".join(words)
        extra = re.fullmatch(r"pip install (?:fastgd|\.)\[(\w+)\]", text)
        if any(text.startswith(prefix) for prefix in NOT_RUN):
            continue
        if words[:1] == ["fastgd"]:
            args = [w.split("|")[0] for w in words[1:]]  # alternatives a|b|c: the first
            try:
                parser.parse_args(args)
            except SystemExit as exc:  # argparse's way of refusing
                pytest.fail(f"README command {line!r} does not parse ({exc})")
        elif words[:1] == ["python"] and words[1].startswith(SCRIPTS):
            assert (ROOT / words[1]).is_file(), line
        elif extra is not None:
            assert re.search(rf"^{extra.group(1)} = ", extras.group(1), re.M), f"no extra {extra.group(1)!r}: {line}"
        elif words[:1] == ["bash"] or text.startswith(("pip install", "ruff")):
            raw = re.sub(r"^(?:env(?: -u \S+)+ )?(?:[A-Z_][A-Z0-9_]*=\S* )*", "", line)
            assert raw in CI, f"README command {line!r} is not run by .ci/run"
        else:
            pytest.fail(f"README command {line!r} is not run by any test, .ci/run or listed in NOT_RUN")


SCRIPT_PATHS = sorted({strip_env(line)[1] for line in shell_lines()
                       if strip_env(line)[:1] == ["python"] and strip_env(line)[1].startswith(SCRIPTS)})  # fmt: skip


def test_the_readme_names_its_measurement_scripts() -> None:
    assert len(SCRIPT_PATHS) >= 6, SCRIPT_PATHS


def test_the_measurement_log_is_linked_and_its_commands_checked() -> None:
    assert "(benchmarks/RESULTS.md)" in README
    logged = block_lines(RESULTS) + inline_commands(RESULTS)
    assert any("benchmarks/peers.py" in line for line in logged), logged


@pytest.mark.parametrize("script", SCRIPT_PATHS)
def test_scripts_the_readme_names_answer_help(script: str) -> None:
    run = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0 and "usage" in run.stdout.lower(), run.stderr


# The tour's commands, made small: extra options per subcommand.
SMALL = {
    "train": ["--limit", "3000", "--epochs", "2"],
    "evaluate": [],
    "plot": [],
    "experiment": ["--train-size", "2000", "--test-size", "1000", "--epochs", "1"],
    "gradcheck": [],
}


def tour() -> list[list[str]]:
    tour_text = README.split("## The 30-second tour", 1)[1].split("\n## ", 1)[0]
    first_block = BLOCK.findall(tour_text)[0][1]
    return [strip_env(line.split("  #")[0].strip()) for line in first_block.splitlines() if line.strip()]


def test_the_tour_runs(mnist, tmp_path: Path) -> None:  # noqa: ANN001
    commands = tour()
    assert [c[1] for c in commands] == list(SMALL)
    for words in commands:
        extra = SMALL[words[1]]
        run = subprocess.run([sys.executable, "-m", "fastgd", *words[1:], *extra], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})  # fmt: skip
        assert run.returncode == 0, f"{' '.join(words)}: {run.stdout}\n{run.stderr}"
    assert (tmp_path / "model.npz").is_file()
    assert fastgd.load(tmp_path / "model.npz").sizes == (784, 16, 16, 10)
    assert list(tmp_path.glob("*.png")), "the plot and the experiment save PNGs"


@contextlib.contextmanager
def small_mnist(mnist: dict) -> Iterator[None]:  # noqa: ANN001
    """fastgd.load_mnist returning the first rows only, so the README's Python runs in seconds."""
    original = fastgd.load_mnist
    sizes = {"train": 3000, "test": 1000}

    def load(split: str, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        X, y = mnist[split]
        return X[: sizes[split]], y[: sizes[split]]

    fastgd.load_mnist = load  # type: ignore[assignment]
    try:
        yield
    finally:
        fastgd.load_mnist = original  # type: ignore[assignment]


def test_the_python_in_the_readme_runs(mnist, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    """Every Python block, in order, in one namespace (on a subset of MNIST); the sweep's block only
    compiles here: its workers load the data themselves (tests/test_sweep.py runs sweeps)."""
    namespace: dict[str, object] = {}
    ran = 0
    with small_mnist(mnist):
        for k, code in enumerate(blocks("python")):
            compiled = compile(code, f"README python block {k}", "exec")
            if "fastgd.sweep(" in code:
                continue
            exec(compiled, namespace)  # noqa: S102
            ran += 1
    assert ran >= 2
    out = capsys.readouterr().out
    assert "epoch" in out and "worst relative error" in out
