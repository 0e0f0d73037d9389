"""MNIST and Fashion-MNIST: finding, downloading, verifying and loading them.

:func:`load_mnist` and :func:`load_fashion_mnist` return ``(X, y)``: the images as a
C-contiguous float array of shape ``(n, 784)`` scaled to [0, 1], and the labels as uint8.
:func:`load_raw` returns the pixels as uint8 instead, and :func:`read_idx` reads a single IDX
file.

Where the files are looked for
------------------------------
1. The ``data_dir`` argument, else the ``FASTGD_DATA`` environment variable. Such a folder
   may hold the dataset's files itself or in a subfolder named after the dataset
   (``mnist`` or ``fashion-mnist``). A folder named this way is the only place looked in:
   if the files are missing there, or broken, that is an error; nothing is downloaded into
   it (call :func:`download` for that).
2. Otherwise the per-user cache folder, ``cache_dir() / dataset``, then the system folders in
   :data:`KNOWN_DIRS` (``/usr/share/datasets/fashion-mnist``, where the Debian package
   ``dataset-fashion-mnist`` installs Fashion-MNIST). Files missing from all of them are
   downloaded into the cache folder from the mirrors in :data:`MIRRORS`.

A file may be named as in the original distribution (``train-images-idx3-ubyte.gz``),
uncompressed (``train-images-idx3-ubyte``) or with a dot (``train-images.idx3-ubyte``,
optionally ``.gz``); whether it is gzip-compressed is read from its content.

Verification
------------
Every file is checked as an IDX file (magic number, dimensions, size, labels in 0-9) and its
decompressed content against a known SHA-256 sum, on every load. To keep repeated loads fast,
the decompressed content of a gzip-compressed file is kept in the cache folder (under
``unpacked/``), under a name derived from the source file's path, size and timestamps, so a
changed or broken source is never masked by an old copy. That copy is checked against the
same SHA-256 sum when it is read. If the cache folder cannot be written, loads still work,
only without the copy. Downloaded files are stored decompressed for the same reason.

Environment variables
---------------------
``FASTGD_DATA``
    Folder holding the datasets (see above).
``FASTGD_CACHE_DIR``
    Overrides the cache folder, which is otherwise ``$XDG_CACHE_HOME/fastgd`` or
    ``~/.cache/fastgd`` on Linux, ``~/Library/Caches/fastgd`` on macOS and
    ``%LOCALAPPDATA%\\fastgd\\Cache`` on Windows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _download, _idx
from .errors import ChecksumError, DataError, DatasetNotFoundError, DownloadError, IDXFormatError

__all__ = [
    "KNOWN_DIRS",
    "MIRRORS",
    "cache_dir",
    "download",
    "load_fashion_mnist",
    "load_mnist",
    "load_raw",
    "read_idx",
]

_log = logging.getLogger(__name__)

Split = Literal["train", "test"]
StrPath = str | os.PathLike[str]

_SPLITS: tuple[Split, ...] = ("train", "test")
_IMAGE_SHAPE = (28, 28)
_NUM_CLASSES = 10
_DOWNLOAD_TIMEOUT = 30.0
_FLOAT_DTYPES: tuple[np.dtype[np.floating[Any]], ...] = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class _FileSpec:
    """One file of a dataset: its canonical name and its decompressed size and SHA-256."""

    stem: str
    nbytes: int
    sha256: str

    @property
    def kind(self) -> _idx.Kind:
        return "images" if "-images-" in self.stem else "labels"

    @property
    def names(self) -> tuple[str, ...]:
        """File names accepted for this file, in order of preference."""
        dotted = self.stem.replace("-idx", ".idx", 1)
        return (self.stem, f"{self.stem}.gz", dotted, f"{dotted}.gz")


@dataclass(frozen=True)
class _DatasetSpec:
    """A dataset in the MNIST layout: for each split, its image and label files."""

    name: str
    title: str
    splits: Mapping[str, tuple[_FileSpec, _FileSpec]]


def _mnist_layout(name: str, title: str, sha256: Sequence[str]) -> _DatasetSpec:
    """The four files of an MNIST-shaped dataset, given their SHA-256 sums in the order
    train images, train labels, test images, test labels."""
    files = [
        _FileSpec("train-images-idx3-ubyte", 47_040_016, sha256[0]),
        _FileSpec("train-labels-idx1-ubyte", 60_008, sha256[1]),
        _FileSpec("t10k-images-idx3-ubyte", 7_840_016, sha256[2]),
        _FileSpec("t10k-labels-idx1-ubyte", 10_008, sha256[3]),
    ]
    return _DatasetSpec(name, title, {"train": (files[0], files[1]), "test": (files[2], files[3])})


_DATASETS: dict[str, _DatasetSpec] = {
    # The sums are of the decompressed files, identical to the original distribution.
    "mnist": _mnist_layout(
        "mnist",
        "MNIST",
        [
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ],
    ),
    # Computed from the files of the Debian package dataset-fashion-mnist
    # (0.0~git20200523.55506a9-1), which are recompressed, but decompress to the same bytes
    # as Zalando's originals.
    "fashion-mnist": _mnist_layout(
        "fashion-mnist",
        "Fashion-MNIST",
        [
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ],
    ),
}

#: Base URLs each dataset is downloaded from, tried in order; a file's URL is the base URL
#: followed by its original name (``train-images-idx3-ubyte.gz``, ...). Add your own mirror
#: at the front to prefer it; downloads are verified whatever their source.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}

#: System folders where a dataset may be installed, looked in after the cache folder.
KNOWN_DIRS: dict[str, tuple[StrPath, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


def load_mnist(
    split: Split = "train", data_dir: StrPath | None = None, dtype: npt.DTypeLike = "float32"
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.uint8]]:
    """Load MNIST, the handwritten digits, with pixels scaled to [0, 1].

    Parameters
    ----------
    split : {"train", "test"}, default "train"
        The 60,000 training or the 10,000 test images.
    data_dir : str or os.PathLike, optional
        Folder holding the files (directly or in an ``mnist`` subfolder). If omitted, the
        ``FASTGD_DATA`` environment variable, then the cache folder; see the module's
        documentation for the details and for downloads.
    dtype : {"float32", "float64"} or numpy float dtype, default "float32"
        The dtype of ``X``.

    Returns
    -------
    X : ndarray of shape (n, 784), float32 or float64
        C-contiguous; row ``i`` is image ``i``, row by row, each pixel divided by 255
        (0 is background).
    y : ndarray of shape (n,), uint8
        The digit shown by each image, 0-9.

    Raises
    ------
    DataError
        If ``split`` or ``dtype`` is not one of the values above (a ``ValueError``).
    DatasetNotFoundError
        If the files are not where they were looked for and cannot be downloaded (an
        ``OSError``); the message lists where fastgd looked.
    IDXFormatError, ChecksumError
        If a file is malformed or has the wrong content (``ValueError``).
    """
    return _load_scaled("mnist", split, data_dir, dtype)


def load_fashion_mnist(
    split: Split = "train", data_dir: StrPath | None = None, dtype: npt.DTypeLike = "float32"
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.uint8]]:
    """Load Fashion-MNIST, Zalando's images of clothes, with pixels scaled to [0, 1].

    The same as :func:`load_mnist`, for Fashion-MNIST: 60,000 training and 10,000 test
    images of 28x28 pixels in 10 classes (0 T-shirt/top, 1 trouser, 2 pullover, 3 dress,
    4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot). Besides the places
    :func:`load_mnist` looks in, it finds the files installed by the Debian package
    ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``.

    Parameters
    ----------
    split : {"train", "test"}, default "train"
        The training or the test images.
    data_dir : str or os.PathLike, optional
        Folder holding the files (directly or in a ``fashion-mnist`` subfolder).
    dtype : {"float32", "float64"} or numpy float dtype, default "float32"
        The dtype of ``X``.

    Returns
    -------
    X : ndarray of shape (n, 784), float32 or float64
        C-contiguous, pixels divided by 255.
    y : ndarray of shape (n,), uint8
        The class of each image, 0-9.

    Raises
    ------
    DataError, DatasetNotFoundError, IDXFormatError, ChecksumError
        As for :func:`load_mnist`.
    """
    return _load_scaled("fashion-mnist", split, data_dir, dtype)


def load_raw(
    dataset: str, split: Split = "train", data_dir: StrPath | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Load a dataset's images and labels as uint8, without scaling.

    Parameters
    ----------
    dataset : {"mnist", "fashion-mnist"}
        Which dataset.
    split : {"train", "test"}, default "train"
        Which part of it.
    data_dir : str or os.PathLike, optional
        Folder holding the files; see :func:`load_mnist`.

    Returns
    -------
    images : ndarray of shape (n, 784), uint8
        C-contiguous and writable; pixel values 0-255 as stored in the files.
    labels : ndarray of shape (n,), uint8
        Values 0-9.

    Raises
    ------
    DataError, DatasetNotFoundError, IDXFormatError, ChecksumError
        As for :func:`load_mnist`.
    """
    spec = _dataset_spec(dataset)
    _check_split(split)
    images_spec, labels_spec = spec.splits[split]
    images_path, labels_path = _locate(spec, split, data_dir)
    labels = _load_file(spec, labels_spec, labels_path)
    images = _load_file(spec, images_spec, images_path)
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds "
            f"{len(labels):,} labels; they must hold as many"
        )
    n, rows, cols = images.shape
    return images.reshape(n, rows * cols), labels


def read_idx(
    path: StrPath,
    *,
    image_shape: tuple[int, int] | None = _IMAGE_SHAPE,
    num_classes: int | None = _NUM_CLASSES,
) -> npt.NDArray[np.uint8]:
    """Read one IDX file of images or labels, gzip-compressed or not, after validating it.

    Validates the magic number (2051 for images, 2049 for labels, data type unsigned byte),
    the dimensions, the size the header declares against the real length (before reading
    the data, so a header claiming gigabytes fails fast), and that nothing follows the data.
    Whether the file is gzip-compressed is read from its first bytes, not from its name. Its
    checksum is not verified; the ``load_*`` functions do that.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    image_shape : tuple of two ints or None, default (28, 28)
        The ``(rows, cols)`` an image file must have; ``None`` accepts any.
    num_classes : int or None, default 10
        Labels must lie in ``0 .. num_classes - 1``; ``None`` accepts any byte.

    Returns
    -------
    ndarray of uint8
        Shape ``(n, rows, cols)`` for an image file, ``(n,)`` for a label file; writable.

    Raises
    ------
    IDXFormatError
        If the file is not a valid IDX file as described; the message names the file and
        the problem (a ``ValueError``).
    OSError
        If the file cannot be opened or read.
    """
    return _idx.read_idx_content(path, image_shape=image_shape, num_classes=num_classes).array


def download(
    dataset: str,
    data_dir: StrPath | None = None,
    *,
    split: Split | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = _DOWNLOAD_TIMEOUT,
) -> Path:
    """Download the files of a dataset that a folder does not have yet.

    Each file is tried from each mirror in turn; a download is verified (IDX format and
    SHA-256 of the content) before it is stored, decompressed, under its canonical name
    (``train-images-idx3-ubyte``, ...). Files already in the folder, under any accepted name,
    are left alone; they are verified when loaded.

    Parameters
    ----------
    dataset : {"mnist", "fashion-mnist"}
        Which dataset.
    data_dir : str or os.PathLike, optional
        Folder to download into, created if needed; by default the dataset's cache folder,
        ``cache_dir() / dataset``. ``FASTGD_DATA`` is not used here.
    split : {"train", "test"}, optional
        Download only this split's files; by default both splits.
    mirrors : sequence of str, optional
        Base URLs to download from, in order; by default ``MIRRORS[dataset]``.
    timeout : float, default 30
        Seconds to wait for a server to connect or send more data.

    Returns
    -------
    pathlib.Path
        The folder holding the files.

    Raises
    ------
    DownloadError
        If a file could not be downloaded from any mirror, or the folder cannot be created
        (an ``OSError``); the message lists each URL tried and why it failed.
    DataError
        If ``dataset`` or ``split`` is not one of the values above.
    """
    spec = _dataset_spec(dataset)
    if split is not None:
        _check_split(split)
    folder = Path(data_dir).expanduser() if data_dir is not None else cache_dir() / spec.name
    files = [f for s in _SPLITS if split in (None, s) for f in spec.splits[s]]
    missing = [f for f in files if _find(f, [folder]) is None]
    if mirrors is None:
        mirrors = MIRRORS.get(spec.name, ())
    _fetch(spec, missing, folder, mirrors, timeout)
    return folder


def cache_dir() -> Path:
    """The per-user folder where fastgd keeps downloads and decompressed copies.

    Returns
    -------
    pathlib.Path
        ``$FASTGD_CACHE_DIR`` if set; otherwise ``$XDG_CACHE_HOME/fastgd`` or
        ``~/.cache/fastgd`` on Linux and other Unix systems, ``~/Library/Caches/fastgd`` on
        macOS, and ``%LOCALAPPDATA%\\fastgd\\Cache`` on Windows. It may not exist yet.
    """
    configured = os.environ.get("FASTGD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else Path.home() / "AppData" / "Local") / "fastgd" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "fastgd"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification says to ignore a relative path.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "fastgd"


def _load_scaled(
    dataset: str, split: Split, data_dir: StrPath | None, dtype: npt.DTypeLike
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.uint8]]:
    """Load a dataset with pixels divided by 255, as ``dtype``."""
    float_dtype = _check_dtype(dtype)
    images, labels = load_raw(dataset, split, data_dir)
    X = np.empty(images.shape, dtype=float_dtype)
    np.divide(images, float_dtype.type(255), out=X)
    return X, labels


def _dataset_spec(dataset: str) -> _DatasetSpec:
    spec = _DATASETS.get(dataset) if isinstance(dataset, str) else None
    if spec is None:
        known = " or ".join(repr(name) for name in _DATASETS)
        raise DataError(f"dataset must be {known}, got {dataset!r}")
    return spec


def _check_split(split: object) -> None:
    if split not in _SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")


def _check_dtype(dtype: npt.DTypeLike) -> np.dtype[np.floating[Any]]:
    try:
        resolved = np.dtype(dtype) if dtype is not None else None
    except (TypeError, ValueError):
        resolved = None
    for candidate in _FLOAT_DTYPES:
        # numpy's dtype comparison would take None for float64
        if resolved is not None and resolved == candidate:
            return candidate
    raise DataError(f"dtype must be float32 or float64, got {dtype!r}")


def _find(file: _FileSpec, folders: Sequence[Path]) -> Path | None:
    """The first file present under one of ``file``'s accepted names, folder by folder."""
    for folder in folders:
        for name in file.names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def _locate(spec: _DatasetSpec, split: str, data_dir: StrPath | None) -> tuple[Path, Path]:
    """Find (or download into the cache) a split's image and label files."""
    if data_dir is not None:
        return _locate_in(spec, split, Path(data_dir).expanduser(), "the data_dir argument")
    from_env = os.environ.get("FASTGD_DATA")
    if from_env:
        return _locate_in(spec, split, Path(from_env).expanduser(), "FASTGD_DATA")

    files = spec.splits[split]
    cache = cache_dir() / spec.name
    folders = [cache, *(Path(folder) for folder in KNOWN_DIRS.get(spec.name, ()))]
    found = {file: _find(file, folders) for file in files}
    missing = [file for file, path in found.items() if path is None]
    if missing:
        try:
            _fetch(spec, missing, cache, MIRRORS.get(spec.name, ()), _DOWNLOAD_TIMEOUT)
        except DownloadError as exc:
            raise DatasetNotFoundError(
                _not_found_message(spec, split, folders, missing, exc)
            ) from exc
    images, labels = (found[file] or cache / file.stem for file in files)
    return images, labels


def _locate_in(spec: _DatasetSpec, split: str, base: Path, origin: str) -> tuple[Path, Path]:
    """Find a split's files in a folder the user named; no fallback, no download."""
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"{spec.title} ({split}): {base}, given by {origin}, is not a folder"
        )
    folders = [base / spec.name, base]
    images_spec, labels_spec = spec.splits[split]
    images, labels = _find(images_spec, folders), _find(labels_spec, folders)
    if images is not None and labels is not None:
        return images, labels
    missing = [f for f, path in ((images_spec, images), (labels_spec, labels)) if path is None]
    undo = "leave data_dir unset" if origin.startswith("the data_dir") else "unset FASTGD_DATA"
    raise DatasetNotFoundError(
        f"{spec.title} ({split}): the folder {base}, given by {origin}, does not have "
        f"{' or '.join(f.stem for f in missing)}. Looked in {folders[0]} and {base} for "
        f"{_names_text(missing)}. fastgd does not download into a folder you name: copy the "
        f"files there, download them with fastgd.data.download({spec.name!r}, "
        f"data_dir={str(base)!r}), or {undo} to use the cache folder {cache_dir() / spec.name}."
    )


def _fetch(
    spec: _DatasetSpec,
    files: Sequence[_FileSpec],
    folder: Path,
    mirrors: Sequence[str],
    timeout: float,
) -> None:
    """Download ``files`` into ``folder``, each verified and stored decompressed."""
    if not files:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the folder {folder}: {exc}") from exc
    for file in files:

        def verify(path: Path, file: _FileSpec = file) -> list[_download.Buffer]:
            content = _read_verified(spec, file, path)
            return [content.header, content.array.data.cast("B")]

        urls = [mirror.rstrip("/") + f"/{file.stem}.gz" for mirror in mirrors]
        # A mirror may serve the file uncompressed; deflate never grows data by more.
        max_bytes = file.nbytes + file.nbytes // 64 + 65_536
        _log.info("downloading %s %s into %s", spec.title, file.stem, folder)
        _download.fetch_verified(
            urls, folder / file.stem, verify, timeout=timeout, max_bytes=max_bytes
        )


def _load_file(spec: _DatasetSpec, file: _FileSpec, path: Path) -> npt.NDArray[np.uint8]:
    """Read and verify one file, through a verified decompressed copy if it is compressed."""
    if not _idx.is_gzip(path):
        return _read_verified(spec, file, path).array
    copy = _unpacked_copy(spec, file, path)
    if copy.is_file():
        try:
            return _read_verified(spec, file, copy).array
        except (OSError, DataError) as exc:
            _log.warning("ignoring the broken decompressed copy %s: %s", copy, exc)
            _remove_quietly(copy)
    content = _read_verified(spec, file, path)
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        _download.write_atomic(copy, [content.header, content.array.data.cast("B")])
    except OSError as exc:
        _log.debug("cannot keep a decompressed copy of %s in %s: %s", path, copy, exc)
    else:
        for stale in copy.parent.glob(f"{file.stem}-*"):
            if stale != copy:
                _remove_quietly(stale)
    return content.array


def _unpacked_copy(spec: _DatasetSpec, file: _FileSpec, source: Path) -> Path:
    """Where the decompressed copy of ``source`` is kept.

    The name encodes the source's path, size, inode and timestamps, so that a source that
    changes, even to a broken file, is read again instead of being masked by the copy.
    """
    stat = source.stat()
    identity = (
        f"{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}"
        f"\0{stat.st_ino}\0{stat.st_dev}"
    )
    key = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_dir() / "unpacked" / spec.name / f"{file.stem}-{key}"


def _read_verified(spec: _DatasetSpec, file: _FileSpec, path: Path) -> _idx.IDXContent:
    """Read an IDX file and check it is exactly ``file`` of ``spec``."""
    content = _idx.read_idx_content(
        path,
        kind=file.kind,
        expected_nbytes=file.nbytes,
        image_shape=_IMAGE_SHAPE,
        num_classes=_NUM_CLASSES,
    )
    if content.sha256 != file.sha256:
        other = _identify(content.sha256)
        raise ChecksumError(
            f"{path}: the SHA-256 of its decompressed content is {content.sha256}, but "
            f"{spec.title}'s {file.stem} has {file.sha256}; "
            + (f"this is {other}." if other else "the file is corrupt or from another dataset.")
        )
    return content


def _identify(sha256: str) -> str | None:
    """Name the known file with this SHA-256, if any (helps with swapped datasets)."""
    for spec in _DATASETS.values():
        for pair in spec.splits.values():
            for file in pair:
                if file.sha256 == sha256:
                    return f"{spec.title}'s {file.stem}"
    return None


def _names_text(files: Sequence[_FileSpec]) -> str:
    return "; ".join(", ".join(f.names) for f in files)


def _not_found_message(
    spec: _DatasetSpec,
    split: str,
    folders: Sequence[Path],
    missing: Sequence[_FileSpec],
    error: DownloadError,
) -> str:
    looked = "\n".join(f"  - {folder}" for folder in folders)
    return (
        f"{spec.title} ({split}) was not found and could not be downloaded.\n"
        f"Looked for {_names_text(missing)} in:\n{looked}\n"
        f"Downloading into {folders[0]} failed: {error}\n"
        "To use files you already have, pass data_dir='/path/to/folder' or set the "
        "environment variable FASTGD_DATA=/path/to/folder; fastgd looks in that folder and "
        f"in its {spec.name!r} subfolder."
    )


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        _log.debug("cannot remove %s: %s", path, exc)
