"""Shared fixtures: every backend and real MNIST (tolerances and helpers are in helpers.py).

Environment:
  FASTGD_DATA              folder with the MNIST files; when set, a missing or broken dataset
                           fails the tests that need it instead of skipping them.
  FASTGD_EXPECT_BACKENDS   comma-separated backends that must be available (CI: cpp,numba,numpy);
                           a missing one fails instead of skipping.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import require_backend

from fastgd import backends


@pytest.fixture(params=backends.NAMES)
def backend(request: pytest.FixtureRequest):  # noqa: ANN201
    """Each backend module in turn (cpp, numba, numpy)."""
    return require_backend(request.param)


@pytest.fixture(scope="session")
def reference():  # noqa: ANN201
    """The NumPy reference backend."""
    return backends.load("numpy")


@pytest.fixture(scope="session")
def mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real MNIST (float32), from $FASTGD_DATA: skipped when unset, failing when broken."""
    if not os.environ.get("FASTGD_DATA"):
        pytest.skip("FASTGD_DATA is not set: point it at a folder holding MNIST to run the real-data tests")
    import fastgd

    return {"train": fastgd.load_mnist("train"), "test": fastgd.load_mnist("test")}
