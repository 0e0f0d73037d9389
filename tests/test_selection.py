"""Choosing a backend, living without the compiled extension, and Ctrl-C during training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import default_sigint, require_backend

import fastgd

# Makes `import fastgd._core` fail, as on an installation whose extension did not build.
BLOCK_CORE = textwrap.dedent(
    """
    import importlib.abc, sys
    class _NoCore(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fastgd._core":
                raise ImportError("fastgd._core is blocked for this test")
            return None
    sys.meta_path.insert(0, _NoCore())
    """
)


FALLBACK_MESSAGE = "fastgd: the compiled extension fastgd._core is not available"


def python(code: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, **kwargs)  # fmt: skip


def clean_env() -> dict:
    return {"FASTGD_BACKEND": ""}


def test_importing_fastgd_does_not_import_numba() -> None:
    require_backend("cpp")
    res = python("import sys, fastgd; print(fastgd.BACKEND, 'numba' in sys.modules)", env=clean_env())
    assert res.stdout.split() == ["cpp", "False"], res.stderr


def test_without_the_extension_fastgd_falls_back_to_numba_and_trains() -> None:
    require_backend("numba")
    code = BLOCK_CORE + textwrap.dedent(
        """
        import numpy as np, fastgd
        print(fastgd.BACKEND)
        ok, reason = fastgd.backends.available("cpp")
        print(ok, "blocked" in reason)
        rng = np.random.default_rng(0)
        X = rng.random((300, 6)); y = (X[:, 0] > 0.5).astype(int)
        net = fastgd.Network([6, 8, 2])
        net.fit(X, y, epochs=20, batch_size=10)
        print(net.backend, net.score(X, y) > 0.9)
        fastgd.show_config()
        """
    )
    res = python(code, env=clean_env())
    lines = res.stdout.splitlines()
    assert lines[:3] == ["numba", "False True", "numba True"], res.stdout + res.stderr
    assert "cpp    unavailable" in res.stdout
    # one message, at import, however often the default backend is looked up afterwards
    assert res.stderr.count(FALLBACK_MESSAGE) == 1, res.stderr
    assert res.stderr.count("Warning") == 1, res.stderr


def test_choosing_numba_explicitly_without_the_extension_is_quiet() -> None:
    require_backend("numba")
    code = BLOCK_CORE + "import fastgd; fastgd.Network([3, 2]); print(fastgd.BACKEND)"
    res = python(code, env={"FASTGD_BACKEND": "numba"})
    assert res.stdout.split() == ["numba"], res.stderr
    assert res.stderr == ""


def test_forcing_a_missing_extension_fails_loudly() -> None:
    res = python(BLOCK_CORE + "import fastgd", env={"FASTGD_BACKEND": "cpp"})
    assert res.returncode != 0
    assert "BackendUnavailableError" in res.stderr and "fastgd._core" in res.stderr


def test_show_config_reports_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    fastgd.show_config()
    out = capsys.readouterr().out
    assert fastgd.__version__ in out
    for name in fastgd.backends.NAMES:
        assert name in out
    info = fastgd.config()
    assert set(info["backends"]) == set(fastgd.backends.NAMES)
    if info["backends"]["cpp"]["available"]:
        assert info["backends"]["cpp"]["isa"] in ("baseline", "avx2", "avx512")


@pytest.mark.parametrize("batch_size", [10, 100])
@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_ctrl_c_stops_training_between_mini_batches(name: str, batch_size: int) -> None:
    """SIGINT during a long epoch raises KeyboardInterrupt within a fraction of a second, and the
    parameters are those at the start of the interrupted epoch (finite; changed if an epoch ended).
    Small and large mini-batches (on several cores: the team of threads, its leader checking for
    SIGINT)."""
    require_backend(name)
    code = textwrap.dedent(
        f"""
        import sys, time, numpy as np, fastgd
        rng = np.random.default_rng(0)
        X = rng.random((400_000, 784), dtype=np.float32); y = rng.integers(0, 10, 400_000)
        net = fastgd.Network(backend="{name}")
        net.fit(X[:20], y[:20], epochs=1, batch_size=10)   # compile (numba) before timing
        before = net.theta.copy()
        print("ready", flush=True)
        t0 = time.perf_counter()
        try:
            net.fit(X, y, epochs=50, batch_size={batch_size}, optimizer="sgd", eta=0.1)
        except KeyboardInterrupt:
            # fit puts theta back to the start of the interrupted epoch: changed once an epoch is done
            done = net.training_state.done
            print("interrupted", np.isfinite(net.theta).all(), (net.theta != before).any() == (done > 0), flush=True)
        print("after", time.perf_counter() - t0, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()
    import time

    time.sleep(2.0)  # well into training (checking X and the first permutation come first)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    waited = time.perf_counter() - sent
    assert "interrupted True True" in out, out + err
    assert waited < 5, waited
