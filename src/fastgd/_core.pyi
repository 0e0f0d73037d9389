"""fastgd's compiled kernels (see fastgd.backends for the contract they implement).

Type stub of the pybind11 module built from cpp/bindings.cpp: the same functions, argument names and
order, with the argument types pybind11 accepts (integers and floats as ``SupportsInt``/``SupportsFloat``
or ``SupportsIndex``; arrays are never converted, so they must already be NumPy arrays of the stated
dtype). ``tests/test_typing.py`` checks this file against the module.
"""

from typing import Any, SupportsFloat, SupportsIndex, SupportsInt, TypeVar

import numpy as np
from numpy.typing import NDArray

_Float = TypeVar("_Float", np.float32, np.float64)

def forward(
    theta: NDArray[_Float],
    sizes: NDArray[np.int64],
    activation: SupportsInt | SupportsIndex,
    cost: SupportsInt | SupportsIndex,
    X: NDArray[_Float],
) -> NDArray[_Float]:
    """Output activations of the rows of X, shape (n, sizes[-1])."""

def predict(
    theta: NDArray[_Float],
    sizes: NDArray[np.int64],
    activation: SupportsInt | SupportsIndex,
    cost: SupportsInt | SupportsIndex,
    X: NDArray[_Float],
) -> NDArray[np.int64]:
    """Index of the largest output activation of each row of X (int64)."""

def cost(
    theta: NDArray[_Float],
    sizes: NDArray[np.int64],
    activation: SupportsInt | SupportsIndex,
    cost: SupportsInt | SupportsIndex,
    X: NDArray[_Float],
    y: NDArray[np.int64],
) -> float:
    """Mean cost over the rows of X with integer labels y."""

def grad(
    theta: NDArray[_Float],
    sizes: NDArray[np.int64],
    activation: SupportsInt | SupportsIndex,
    cost: SupportsInt | SupportsIndex,
    X: NDArray[_Float],
    y: NDArray[np.int64],
    out: NDArray[_Float],
) -> float:
    """Overwrite out with the gradient of the mean cost over the rows; return the mean cost."""

def train_epoch(
    theta: NDArray[_Float],
    sizes: NDArray[np.int64],
    activation: SupportsInt | SupportsIndex,
    cost: SupportsInt | SupportsIndex,
    X: NDArray[_Float],
    y: NDArray[np.int64],
    order: NDArray[np.int64],
    batch_size: SupportsInt | SupportsIndex,
    eta: SupportsFloat | SupportsIndex,
    momentum: SupportsFloat | SupportsIndex,
    velocity: NDArray[_Float] | None,
    l2: SupportsFloat | SupportsIndex,
) -> tuple[float, int]:
    """One epoch of mini-batch gradient descent in place; return (mean row cost, rows classified correctly)."""

def train_epoch_many(
    thetas: NDArray[_Float],
    sizes: NDArray[np.int64],
    activation: SupportsInt | SupportsIndex,
    cost: SupportsInt | SupportsIndex,
    X: NDArray[_Float],
    y: NDArray[np.int64],
    orders: NDArray[np.int64],
    batch_size: SupportsInt | SupportsIndex,
    etas: NDArray[np.float64],
    momentum: SupportsFloat | SupportsIndex,
    velocities: NDArray[_Float] | None,
    l2: SupportsFloat | SupportsIndex,
    active: NDArray[np.bool_] | NDArray[np.uint8],
    Xv: NDArray[_Float] | None,
    yv: NDArray[np.int64] | None,
    n_threads: SupportsInt | SupportsIndex,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """One epoch of each active network (row of thetas) in place, the networks spread over n_threads threads
    (0: the default); return (mean costs, correct counts, validation costs, validation correct counts)."""

def _pool_check(calls: SupportsInt | SupportsIndex, pause_us: SupportsInt | SupportsIndex) -> tuple[int, int]:
    """For the tests: run `calls` 2-4-task calls on the worker pool, each worker sleeping pause_us between
    reading a call and taking its tasks; return (the number of tasks run other than once or after their call
    returned, the number of tasks the workers ran). A task left to nobody hangs instead: run it under a
    timeout."""

def _team_last_epoch() -> tuple[int, int]:
    """For the tests: of the phases of the calling thread's last epoch trained by a team of threads,
    (how many the leader ran alone, how many in all)."""

def build_info() -> dict[str, Any]:
    """How this extension was built and which instruction set it runs."""
