"""fastgd: train fully connected neural networks by gradient descent, fast, with a compiled core."""

from __future__ import annotations

from . import backends
from ._config import config, show_config
from ._model_file import load
from ._version import __version__
from .data import load_fashion_mnist, load_mnist, load_raw, read_idx
from .errors import (
    BackendUnavailableError,
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    DivergenceError,
    DownloadError,
    FastgdError,
    IDXFormatError,
    ModelFileError,
)
from .gradcheck import GradcheckReport, gradcheck
from .network import History, Network, TrainingState
from .optim import Optimizer
from .population import Population, train_many
from .sweep import SweepError, sweep

BACKEND: str = backends.default_name()
"""Name of the backend ``backend="auto"`` uses in this process."""

__all__ = [
    "__version__",
    "BACKEND",
    "GradcheckReport",
    "History",
    "Network",
    "Optimizer",
    "TrainingState",
    "Population",
    "config",
    "gradcheck",
    "load",
    "load_fashion_mnist",
    "load_mnist",
    "load_raw",
    "read_idx",
    "show_config",
    "sweep",
    "SweepError",
    "train_many",
    "BackendUnavailableError",
    "ChecksumError",
    "DataError",
    "DatasetNotFoundError",
    "DivergenceError",
    "DownloadError",
    "FastgdError",
    "IDXFormatError",
    "ModelFileError",
]
