"""Exception types raised by fastgd.

Every error fastgd raises on purpose is a subclass of :class:`FastgdError`, and also of the
built-in type a user would catch for that kind of problem (``ValueError`` for bad data or
arguments, ``OSError`` for files and the network), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "FastgdError",
    "DataError",
    "IDXFormatError",
    "ChecksumError",
    "DatasetNotFoundError",
    "DownloadError",
    "ModelFileError",
    "BackendUnavailableError",
    "DivergenceError",
]


class FastgdError(Exception):
    """Base class of every error fastgd raises on purpose."""


class DataError(FastgdError, ValueError):
    """Input data that fastgd cannot use (wrong shape, dtype, NaN, label out of range, ...)."""


class IDXFormatError(DataError):
    """An IDX file (the MNIST format) that is malformed, truncated or inconsistent."""


class ChecksumError(DataError):
    """A dataset file whose content does not match its known SHA-256 sum."""


class DatasetNotFoundError(FastgdError, OSError):
    """The dataset's files are not in any of the places fastgd looked, and could not be downloaded."""


class DownloadError(FastgdError, OSError):
    """Every mirror failed while downloading a dataset file."""


class ModelFileError(FastgdError, ValueError):
    """A saved model file that is corrupt, truncated, foreign or inconsistent."""


class BackendUnavailableError(FastgdError, ImportError):
    """A backend that was asked for by name cannot be used on this installation."""


class DivergenceError(FastgdError, FloatingPointError):
    """Training produced a non-finite cost or parameters (usually: the learning rate is too large)."""
