"""Checks and conversions of user-supplied arrays, shared by the public functions.

Each check names the argument and what is wrong with it. Inputs that are merely in another
float layout (float64 for a float32 network, Fortran order, a non-contiguous slice) are
converted once; anything that would need a guess (integers, float16, objects, NaN) is rejected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DataError


def as_features(
    X: Any, n_features: int, dtype: np.dtype[Any], name: str = "X", check_finite: bool = True
) -> np.ndarray:
    """``X`` as a C-contiguous ``(n, n_features)`` array of ``dtype``, after checking it.

    ``check_finite=False`` skips the pass over the values looking for NaN and infinity (for
    callers that detect a non-finite result anyway and then call :func:`check_finite`).

    Raises
    ------
    TypeError
        If ``X`` does not hold float32 or float64 values.
    DataError
        If its shape is wrong, it has no rows, or it holds NaN or infinity.
    """
    arr = _as_array(X, name)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):  # float32 or float64, either byte order
        hint = ""
        if arr.dtype.kind in "ui":
            hint = " (integer pixels must be scaled to floats first, e.g. X.astype(np.float32) / 255)"
        raise TypeError(f"{name} must hold float32 or float64 values, got dtype {arr.dtype}{hint}")
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-dimensional array (rows, {n_features}), got shape {arr.shape}")
    if arr.shape[1] != n_features:
        raise DataError(f"{name} has shape {arr.shape} but the network takes {n_features} inputs per row")
    if arr.shape[0] == 0:
        raise DataError(f"{name} has no rows")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if check_finite:
        check_all_finite(out, name, original=arr)
    return out


def _as_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)``, with NumPy's errors for what is no array (ragged lists, ...) naming ``name``."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name} cannot be read as an array: {exc}") from None


def check_all_finite(arr: np.ndarray, name: str = "X", original: np.ndarray | None = None) -> None:
    """Raise DataError naming the first NaN or infinite entry of the 2-D ``arr``, if any.

    ``original``: the array ``arr`` was converted from, to tell a value too large for ``arr``'s
    dtype from a NaN or infinity given as such.
    """
    # Fast path: a NaN or an infinity in a row makes that row's sum non-finite (inf - inf is NaN),
    # and summing the rows reads X once, where np.isfinite(X).all() also writes and reads a boolean
    # array as large as X. A sum that overflows is looked at in detail. (Not a BLAS matrix-vector
    # product, though faster: OpenBLAS's threads spin on after it and slow fastgd's own threads.)
    if arr.ndim == 2 and arr.size:
        with np.errstate(over="ignore", invalid="ignore"):
            row_sums = np.add.reduce(arr, axis=1)
        if np.isfinite(row_sums).all():
            return
    if not np.isfinite(arr).all():
        bad = tuple(np.argwhere(~np.isfinite(arr))[0])
        if original is not None and np.isfinite(original[bad]):
            raise DataError(
                f"{name} holds {original[bad]} at row {bad[0]}, column {bad[1]}, beyond the range of {arr.dtype}"
            )
        raise DataError(f"{name} holds a non-finite value ({arr[bad]}) at row {bad[0]}, column {bad[1]}")


def as_labels(y: Any, n: int, n_classes: int, name: str = "y") -> np.ndarray:
    """``y`` as a C-contiguous int64 ``(n,)`` array of class labels in ``[0, n_classes)``.

    Raises
    ------
    TypeError
        If ``y`` does not hold integers (floats, booleans and objects are refused).
    DataError
        If its length is not ``n`` or a label is out of range.
    """
    arr = _as_array(y, name)
    if arr.dtype.kind not in "ui":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} labels but there are {n} rows")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        k = int(np.flatnonzero((arr < 0) | (arr >= n_classes))[0])
        raise DataError(f"{name}[{k}] = {arr[k]} is not a class label in [0, {n_classes})")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_positive_int(name: str, value: Any, allow_zero: bool = False) -> int:
    """``value`` as an int, refusing booleans, non-integers and values below 1 (or 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    low = 0 if allow_zero else 1
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int seed: a non-negative integer (booleans refused), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_rate(name: str, value: Any, low: float = 0.0, high: float = float("inf"), high_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (or ``[low, high)``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < low or v > high or (high_open and v >= high):
        bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {bound}, got {value!r}")
    return v
