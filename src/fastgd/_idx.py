"""Strict reader for IDX files, the format of MNIST and Fashion-MNIST (private).

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the items
themselves, row-major. Its magic number is two zero bytes, a type byte (``0x08``: unsigned
byte) and the number of dimensions, so MNIST images have magic 2051 (``00 00 08 03``:
count, rows, columns) and labels 2049 (``00 00 08 01``: count). The files are often
gzip-compressed; that is recognised by the gzip magic bytes, not by the file name.

Nothing read from a file is trusted before it is checked: the header is validated first, and
the size it declares is compared with the real length before the payload is read, so a
header claiming gigabytes fails without allocating them. A gzip stream is decompressed
incrementally and never beyond one byte more than the header declares, so a stream that
decompresses to more than the header says (a gzip bomb, or trailing bytes) is rejected
after reading that one extra byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeGuard

import numpy as np
import numpy.typing as npt

from .errors import DataError, IDXFormatError

__all__ = ["IDXContent", "Kind", "is_gzip", "read_idx_content"]

Kind = Literal["images", "labels"]

_GZIP_MAGIC = b"\x1f\x8b"
_UNSIGNED_BYTE = 0x08
_NDIM_TO_KIND: dict[int, Kind] = {3: "images", 1: "labels"}
_MAGIC_OF_KIND = {"images": 2051, "labels": 2049}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class IDXContent:
    """A validated IDX file.

    Attributes
    ----------
    header : bytes
        The decompressed header: magic number and dimensions.
    array : ndarray of uint8
        The items, shaped as the header says: ``(n, rows, cols)`` for images, ``(n,)`` for
        labels. Writable, backed by its own buffer.
    sha256 : str
        Hex SHA-256 of the decompressed file content, ``header`` followed by the items.
    """

    header: bytes
    array: npt.NDArray[np.uint8]
    sha256: str


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """Tell whether a file starts with the gzip magic bytes ``1f 8b``."""
    with open(path, "rb") as file:
        return file.read(2) == _GZIP_MAGIC


def read_idx_content(
    path: str | os.PathLike[str],
    *,
    kind: Kind | None = None,
    expected_nbytes: int | None = None,
    image_shape: tuple[int, int] | None = (28, 28),
    num_classes: int | None = 10,
) -> IDXContent:
    """Read and validate an IDX file of unsigned bytes, gzip-compressed or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    kind : {"images", "labels"}, optional
        The kind of file expected (magic 2051 or 2049); ``None`` accepts either.
    expected_nbytes : int, optional
        The exact decompressed size the file must have. Checked against the header before the
        payload is read, so that a wrong or hostile header costs nothing.
    image_shape : tuple of two ints, optional
        The ``(rows, cols)`` that image files must have; ``None`` accepts any.
    num_classes : int, optional
        Labels must lie in ``0 .. num_classes - 1``; ``None`` skips the check.

    Returns
    -------
    IDXContent
        The header, the uint8 items and the SHA-256 of the decompressed content.

    Raises
    ------
    IDXFormatError
        If the content is not a valid IDX file meeting the expectations above, or the gzip
        stream is corrupt or truncated. The message names the file and the problem.
    OSError
        If the file cannot be opened or read.
    """
    image_shape, num_classes = _check_options(image_shape, num_classes)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    with open(path, "rb") as file:
        if file.read(2) != _GZIP_MAGIC:
            file.seek(0)
            size = os.fstat(file.fileno()).st_size
            return _parse(file, path, size, kind, expected_nbytes, image_shape, num_classes)
        file.seek(0)
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _parse(stream, path, None, kind, expected_nbytes, image_shape, num_classes)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise IDXFormatError(
                f"{path}: corrupt or truncated gzip stream ({exc or type(exc).__name__})"
            ) from exc


def _check_options(image_shape: object, num_classes: object) -> tuple[tuple[int, int] | None, int | None]:
    """The reader's options, checked: ``image_shape`` a pair of positive ints, ``num_classes`` 1-256."""

    def is_int(v: object) -> TypeGuard[int | np.integer]:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    shape = classes = None
    if image_shape is not None:
        if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 2 and all(map(is_int, image_shape))):
            raise TypeError(f"image_shape must be None or a pair of integers (rows, cols), got {image_shape!r}")
        if min(image_shape) < 1:
            raise DataError(f"image_shape must hold positive integers, got {image_shape!r}")
        shape = (int(image_shape[0]), int(image_shape[1]))
    if num_classes is not None:
        if not is_int(num_classes):
            raise TypeError(f"num_classes must be None or an integer, got {num_classes!r}")
        if not 1 <= num_classes <= 256:
            raise DataError(f"num_classes must be from 1 to 256 (labels are bytes), got {num_classes!r}")
        classes = int(num_classes)
    return shape, classes


def _parse(
    stream: io.BufferedIOBase,
    path: Path,
    size: int | None,
    kind: Kind | None,
    expected_nbytes: int | None,
    image_shape: tuple[int, int] | None,
    num_classes: int | None,
) -> IDXContent:
    """Validate and read an IDX file from ``stream``; ``size`` is its length if known."""
    where = f"{path}{' (gzip-compressed)' if size is None else ''}"
    magic = _read_upto(stream, 4)
    if len(magic) < 4:
        raise IDXFormatError(
            f"{where}: truncated header: {len(magic)} bytes, "
            "an IDX file starts with a 4-byte magic number"
        )
    if magic[:2] != b"\0\0":
        raise IDXFormatError(
            f"{where}: not an IDX file: it starts with bytes {magic.hex(' ')}, "
            "an IDX magic number starts with 00 00"
        )
    if magic[2] != _UNSIGNED_BYTE:
        raise IDXFormatError(
            f"{where}: IDX data type 0x{magic[2]:02x} is not supported, "
            "only 0x08 (unsigned byte) is"
        )
    file_kind = _NDIM_TO_KIND.get(magic[3])
    if file_kind is None:
        raise IDXFormatError(
            f"{where}: magic number {int.from_bytes(magic, 'big')} declares {magic[3]} "
            "dimensions; expected 2051 (images, 3 dimensions) or 2049 (labels, 1 dimension)"
        )
    if kind is not None and file_kind != kind:
        raise IDXFormatError(
            f"{where}: this is a file of {file_kind} (magic {_MAGIC_OF_KIND[file_kind]}), "
            f"expected {kind} (magic {_MAGIC_OF_KIND[kind]})"
        )

    ndim = magic[3]
    dims_bytes = _read_upto(stream, 4 * ndim)
    header = magic + dims_bytes
    if len(dims_bytes) < 4 * ndim:
        raise IDXFormatError(
            f"{where}: truncated header: {len(header)} bytes, "
            f"a file of {file_kind} has a {4 + 4 * ndim}-byte header"
        )
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    if file_kind == "images" and image_shape is not None and dims[1:] != image_shape:
        raise IDXFormatError(
            f"{where}: images are {dims[1]}x{dims[2]} pixels, "
            f"expected {image_shape[0]}x{image_shape[1]}"
        )

    if math.prod(d for d in dims if d) > np.iinfo(np.intp).max:  # NumPy refuses such a shape even when empty
        raise IDXFormatError(
            f"{where}: header declares {' x '.join(map(str, dims))} {file_kind}, "
            "dimensions too large for any array"
        )
    payload_nbytes = math.prod(dims)
    declared = f"header declares {' x '.join(map(str, dims))} {file_kind}"
    if expected_nbytes is not None and len(header) + payload_nbytes != expected_nbytes:
        raise IDXFormatError(
            f"{where}: {declared}, {len(header) + payload_nbytes:,} bytes in all, "
            f"but this file must have {expected_nbytes:,} bytes"
        )
    if size is not None and size != len(header) + payload_nbytes:
        problem = "truncated payload" if size < len(header) + payload_nbytes else "trailing bytes"
        raise IDXFormatError(
            f"{where}: {problem}: {declared}, {payload_nbytes:,} payload bytes, "
            f"but the file has {size - len(header):,} after its header"
        )

    payload = _read_payload(stream, payload_nbytes, size is not None)
    if len(payload) < payload_nbytes:
        raise IDXFormatError(
            f"{where}: truncated payload: {declared}, {payload_nbytes:,} payload bytes, "
            f"but the data ends after {len(payload):,}"
        )
    if stream.read(1):
        raise IDXFormatError(
            f"{where}: trailing bytes: {declared}, {payload_nbytes:,} payload bytes, "
            "but the data goes on after them"
        )

    array = np.frombuffer(payload, dtype=np.uint8).reshape(dims)
    if file_kind == "labels" and num_classes is not None and array.size:
        bad = np.flatnonzero(array >= num_classes)
        if bad.size:
            raise IDXFormatError(
                f"{where}: label {array[bad[0]]} at index {bad[0]} is outside "
                f"0-{num_classes - 1} ({bad.size} such labels)"
            )
    digest = hashlib.sha256(header)
    digest.update(payload)
    return IDXContent(header=header, array=array, sha256=digest.hexdigest())


def _read_upto(stream: io.BufferedIOBase, n: int) -> bytes:
    """Read ``n`` bytes, or fewer only at the end of the data."""
    parts = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _read_payload(stream: io.BufferedIOBase, nbytes: int, size_checked: bool) -> bytearray:
    """Read up to ``nbytes`` bytes into a new buffer.

    If ``size_checked``, the caller has compared ``nbytes`` with the file's real length, so the
    buffer is allocated at once. Otherwise (a gzip stream, whose decompressed length is
    unknown) it grows only as data actually arrives, so a header's claim allocates nothing.
    """
    if size_checked:
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        filled = 0
        while filled < nbytes:
            count = stream.readinto(view[filled:])
            if not count:
                return buffer[:filled]
            filled += count
        return buffer
    buffer = bytearray()
    while len(buffer) < nbytes:
        part = stream.read(min(_CHUNK, nbytes - len(buffer)))
        if not part:
            break
        buffer += part
    return buffer
