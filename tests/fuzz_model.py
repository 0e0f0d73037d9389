#!/usr/bin/env python3
"""Coverage-guided fuzzing of fastgd's model-file reader (``fastgd.load``) with atheris.

Every input is written to a file and loaded with :func:`fastgd.load`. The fuzzer starts from small
valid model files (float32 and float64, fresh and trained, with a history, a training record for
resuming, with and without momentum) and mutates them.

A model file from an untrusted source may only give a working network or one of fastgd's own
errors (:class:`fastgd.FastgdError` subclasses: here ``ModelFileError``). Anything else (another
exception, a crash, a loaded network that cannot compute) is a finding: atheris stops, prints the
traceback and saves the input as ``crash-<sha1>`` in the current folder.

Usage (needs ``pip install atheris``, or the ``fuzz`` extra)::

    python tests/fuzz_model.py --runs 100000       # or any libFuzzer flag, e.g. -atheris_runs=100000
    python tests/fuzz_model.py --runs 100000 --keep-going # record findings instead of stopping at the first
    python tests/fuzz_model.py crash-1234abcd      # replay one saved input

At the end it prints the number of inputs, the wall time and how often each outcome occurred.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from fuzz_common import instrument, main, scratch_dir  # noqa: E402

import fastgd  # noqa: E402
from fastgd.optim import Optimizer  # noqa: E402

WORK = scratch_dir("fuzz-model")
FILE = WORK / "input.npz"


def seeds() -> dict[str, bytes]:
    """Small valid model files, written by ``Network.save``."""
    rng = np.random.default_rng(0)
    X = rng.random((12, 3))
    y = rng.integers(0, 2, 12)
    nets = {
        "fresh-f32": fastgd.Network([3, 2], backend="numpy"),
        "fresh-f64": fastgd.Network([3, 4, 2], dtype="float64", activation="relu", cost="quadratic", backend="numpy"),
    }
    trained = fastgd.Network([3, 2, 2], activation="sigmoid", cost="cross-entropy", backend="numpy")
    trained.fit(X, y, epochs=2, batch_size=4, validation_data=(X, y))
    nets["trained"] = trained
    momentum = fastgd.Network([3, 2], dtype="float64", backend="numpy")
    momentum.fit(X, y, epochs=1, batch_size=5, optimizer=Optimizer(eta=0.1, momentum=0.5, l2=1e-3))
    nets["momentum"] = momentum
    out = {}
    for name, net in nets.items():
        path = WORK / f"{name}.npz"
        net.save(path)
        out[name] = path.read_bytes()
    return out


def check(data: bytes) -> str:
    FILE.write_bytes(data)
    try:
        net = fastgd.load(FILE, backend="numpy")
    except fastgd.FastgdError as exc:
        return type(exc).__name__
    # a loaded network is consistent and computes
    assert net.theta.dtype == net.dtype and net.theta.shape == (net.n_params,) and net.theta.flags.c_contiguous
    out = net.forward(np.zeros((2, net.sizes[0]), dtype=net.dtype))
    assert out.shape == (2, net.sizes[-1])
    str(net.history)
    return "accepted"


if __name__ == "__main__":
    instrument(("fastgd", "zipfile", "numpy.lib.format", "numpy.lib._format_impl", "json"))
    main("fuzz_model", check, seeds(), sys.argv)
