"""Tests of fastgd.data: the MNIST / Fashion-MNIST loader, its IDX reader and its downloader.

Real MNIST is read from the folder named by FASTGD_DATA; when that variable is set, missing or
broken data fails these tests instead of skipping them. Everything else runs on small IDX files
written by the tests, served over HTTP from 127.0.0.1 where downloads are tested. No test
reaches the internet: every test runs with its own cache folder and with mirrors that point at
a closed port on 127.0.0.1 unless it serves files itself.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fastgd import _download, data
from fastgd.errors import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    DownloadError,
    FastgdError,
    IDXFormatError,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEAD_MIRROR = f"http://127.0.0.1:{_closed_port()}/"


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array with 1 (labels) or 3 (images) dimensions."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write(path: Path, content: bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def image_file(n: int = 3, rows: int = 28, cols: int = 28) -> bytes:
    rng = np.random.default_rng(n)
    return idx_bytes(rng.integers(0, 256, (n, rows, cols), dtype=np.uint8))


def label_file(labels: list[int]) -> bytes:
    return idx_bytes(np.array(labels, dtype=np.uint8))


@dataclass
class Tiny:
    """A small synthetic dataset registered as "mnist" for the duration of a test."""

    files: dict[str, bytes]

    def write_to(self, folder: Path, *, gz: bool = True) -> Path:
        for stem, content in self.files.items():
            write(folder / (f"{stem}.gz" if gz else stem), content, gz=gz)
        return folder

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        prefix = "train" if split == "train" else "t10k"
        images = self.files[f"{prefix}-images-idx3-ubyte"]
        labels = self.files[f"{prefix}-labels-idx1-ubyte"]
        return (
            np.frombuffer(images, np.uint8, offset=16).reshape(-1, 784),
            np.frombuffer(labels, np.uint8, offset=8),
        )


def register_tiny(monkeypatch: pytest.MonkeyPatch, **overrides: bytes) -> Tiny:
    """Register a tiny dataset under the name "mnist"; ``overrides`` replace files by stem
    (with ``-`` written as ``_``), and the registered checksums are those of the files."""
    files = {
        "train-images-idx3-ubyte": image_file(5),
        "train-labels-idx1-ubyte": label_file([0, 1, 2, 9, 5]),
        "t10k-images-idx3-ubyte": image_file(3),
        "t10k-labels-idx1-ubyte": label_file([7, 0, 3]),
    }
    files.update({stem.replace("_", "-"): content for stem, content in overrides.items()})
    specs = {
        stem: data._FileSpec(stem, len(content), hashlib.sha256(content).hexdigest())
        for stem, content in files.items()
    }
    spec = data._DatasetSpec(
        "mnist",
        "Tiny MNIST",
        {
            "train": (specs["train-images-idx3-ubyte"], specs["train-labels-idx1-ubyte"]),
            "test": (specs["t10k-images-idx3-ubyte"], specs["t10k-labels-idx1-ubyte"]),
        },
    )
    monkeypatch.setitem(data._DATASETS, "mnist", spec)
    return Tiny(files)


@dataclass
class Server:
    """An HTTP server on 127.0.0.1 serving ``routes``: path -> (mode, body)."""

    base: str
    routes: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def mirror(self, mode: str, files: dict[str, bytes]) -> str:
        """Serve gzip-compressed ``files`` under /<mode>/ the way ``mode`` says: "ok",
        "truncate" (close the connection half-way), "badlength" (announce more bytes than
        sent) or "corrupt" (send different, valid data)."""
        for stem, content in files.items():
            if mode == "corrupt":
                content = content[:-1] + bytes([content[-1] ^ 1])
            self.routes[f"/{mode}/{stem}.gz"] = (mode, gzip.compress(content, mtime=0))
        return f"{self.base}{mode}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        state = self.server.state
        state.requests.append(self.path)
        mode, body = state.routes.get(self.path, ("missing", b""))
        if mode == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        announced = len(body) + (100 if mode == "badlength" else 0)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: Server


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = Server(f"http://127.0.0.1:{httpd.server_address[1]}/")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Give each test its own cache folder, no system folders and no reachable mirror."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTGD_CACHE_DIR", str(cache))
    for name in data.MIRRORS:
        monkeypatch.setitem(data.MIRRORS, name, (DEAD_MIRROR,))
    for name in data.KNOWN_DIRS:
        monkeypatch.setitem(data.KNOWN_DIRS, name, ())
    return cache


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTGD_DATA", raising=False)


def check_array(a: np.ndarray, shape: tuple[int, ...], dtype: type[np.generic]) -> None:
    assert a.shape == shape
    assert a.dtype == dtype
    assert a.flags.c_contiguous


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder shared by the real-data tests, so MNIST is decompressed only once."""
    if not os.environ.get("FASTGD_DATA"):
        pytest.skip("FASTGD_DATA is not set (point it at a folder holding MNIST)")
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture
def real_mnist(mnist_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FASTGD_CACHE_DIR", str(mnist_cache))
    return Path(os.environ["FASTGD_DATA"])


@pytest.mark.parametrize(
    ("split", "counts"), [("train", MNIST_TRAIN_COUNTS), ("test", MNIST_TEST_COUNTS)]
)
def test_real_mnist(real_mnist: Path, split: str, counts: list[int]) -> None:
    X, y = data.load_mnist(split)
    n = sum(counts)
    check_array(X, (n, 784), np.float32)
    check_array(y, (n,), np.uint8)
    assert X.min() == 0.0
    assert X.max() == 1.0
    assert 0.1 < X.mean() < 0.15  # MNIST is mostly background
    assert np.bincount(y, minlength=10).tolist() == counts

    images, labels = data.load_raw("mnist", split)
    check_array(images, (n, 784), np.uint8)
    np.testing.assert_array_equal(labels, y)
    # np.array_equal: assert_array_equal takes seconds on 47 million pixels
    assert np.array_equal(X, images / np.float32(255))


def test_real_mnist_float64(real_mnist: Path) -> None:
    X64, _ = data.load_mnist("test", dtype="float64")
    check_array(X64, (10_000, 784), np.float64)
    images, _ = data.load_raw("mnist", "test")
    assert np.array_equal(X64 * 255, images)
    X32, _ = data.load_mnist("test", dtype=np.float32)
    np.testing.assert_allclose(X32, X64, rtol=0, atol=1e-7)


def test_real_mnist_repeated_loads_use_a_verified_copy(
    real_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.load_raw("mnist", "test")
    copies = files_in(Path(os.environ["FASTGD_CACHE_DIR"]) / "unpacked" / "mnist")
    assert any(name.startswith("t10k-images-idx3-ubyte-") for name in copies)

    def no_gzip(*args: object, **kwargs: object) -> None:
        raise AssertionError("decompressed again")

    monkeypatch.setattr(gzip, "GzipFile", no_gzip)
    images, labels = data.load_raw("mnist", "test")
    assert images.shape == (10_000, 784)
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS


def test_real_mnist_is_not_fashion_mnist(real_mnist: Path) -> None:
    with pytest.raises(ChecksumError, match="this is MNIST's t10k-labels-idx1-ubyte"):
        data.load_fashion_mnist("test", data_dir=real_mnist)


def test_real_fashion_mnist_from_its_debian_folder(
    monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    """Debian's dataset-fashion-mnist, as a user installs it (CI installs it and sets
    FASTGD_EXPECT_FASHION=1, so that a missing package fails instead of skipping)."""
    if not FASHION_DIR.is_dir():
        if os.environ.get("FASTGD_EXPECT_FASHION") == "1":
            pytest.fail(f"FASTGD_EXPECT_FASHION=1 but {FASHION_DIR} does not exist "
                        "(apt-get install dataset-fashion-mnist)")
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.setitem(data.KNOWN_DIRS, "fashion-mnist", (FASHION_DIR,))
    X, y = data.load_fashion_mnist("test")
    check_array(X, (10_000, 784), np.float32)
    assert X.min() == 0.0
    assert X.max() == 1.0
    assert np.bincount(y, minlength=10).tolist() == [1000] * 10


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_load_from_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gz: bool) -> None:
    tiny = register_tiny(monkeypatch)
    folder = tiny.write_to(tmp_path / "data", gz=gz)
    for split in ("train", "test"):
        images, labels = tiny.arrays(split)
        X, y = data.load_mnist(split, data_dir=folder)
        check_array(X, images.shape, np.float32)
        np.testing.assert_array_equal(X, images / np.float32(255))
        np.testing.assert_array_equal(y, labels)
        raw_images, raw_labels = data.load_raw("mnist", split, data_dir=str(folder))
        check_array(raw_images, images.shape, np.uint8)
        assert raw_images.flags.writeable
        np.testing.assert_array_equal(raw_images, images)
        np.testing.assert_array_equal(raw_labels, labels)


@pytest.mark.parametrize("dtype", ["float64", "f8", np.float64, np.dtype("float64")])
def test_float64(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dtype: object) -> None:
    tiny = register_tiny(monkeypatch)
    X, _ = data.load_mnist("test", data_dir=tiny.write_to(tmp_path), dtype=dtype)
    check_array(X, (3, 784), np.float64)
    np.testing.assert_array_equal(X, tiny.arrays("test")[0] / 255.0)


@pytest.mark.parametrize(
    "names",
    [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz"),
        ("train-images.idx3-ubyte", "train-labels.idx1-ubyte.gz"),
        # gzip is recognised by content, not by name
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte"),
    ],
)
def test_accepted_file_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names: tuple[str, str]
) -> None:
    tiny = register_tiny(monkeypatch)
    write(tmp_path / names[0], tiny.files["train-images-idx3-ubyte"], gz=False)
    write(tmp_path / names[1], tiny.files["train-labels-idx1-ubyte"], gz=True)
    _, y = data.load_raw("mnist", "train", data_dir=tmp_path)
    np.testing.assert_array_equal(y, tiny.arrays("train")[1])


def test_dataset_subfolder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    tiny.write_to(tmp_path / "mnist")
    _, y = data.load_raw("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(y, tiny.arrays("test")[1])


def test_fastgd_data_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    tiny.write_to(tmp_path / "env")
    monkeypatch.setenv("FASTGD_DATA", str(tmp_path / "env"))
    _, y = data.load_raw("mnist", "test")
    np.testing.assert_array_equal(y, tiny.arrays("test")[1])

    # data_dir wins over FASTGD_DATA, and is the only place looked in
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="given by the data_dir argument"):
        data.load_raw("mnist", "test", data_dir=tmp_path / "empty")


def test_fastgd_data_without_the_files_fails_and_downloads_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: Server
) -> None:
    tiny = register_tiny(monkeypatch)
    monkeypatch.setitem(data.MIRRORS, "mnist", (server.mirror("ok", tiny.files),))
    write(tmp_path / "t10k-images-idx3-ubyte.gz", tiny.files["t10k-images-idx3-ubyte"], gz=True)
    monkeypatch.setenv("FASTGD_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        data.load_raw("mnist", "test")
    message = str(excinfo.value)
    assert f"the folder {tmp_path}, given by FASTGD_DATA, does not have t10k-labels" in message
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert "unset FASTGD_DATA" in message
    assert server.requests == []

    monkeypatch.setenv("FASTGD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="nowhere, given by FASTGD_DATA, is not a"):
        data.load_raw("mnist", "test")


def test_broken_file_in_fastgd_data_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    tiny.write_to(tmp_path)
    content = tiny.files["t10k-images-idx3-ubyte"]
    write(tmp_path / "t10k-images-idx3-ubyte.gz", content[:-10], gz=True)
    monkeypatch.setenv("FASTGD_DATA", str(tmp_path))
    with pytest.raises(IDXFormatError, match=r"t10k-images-idx3-ubyte\.gz"):
        data.load_mnist("test")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "validation"}, "split must be 'train' or 'test', got 'validation'"),
        ({"split": None}, "split must be"),
        ({"dtype": "int32"}, "dtype must be float32 or float64, got 'int32'"),
        ({"dtype": np.float16}, "dtype must be float32 or float64"),
        ({"dtype": None}, "dtype must be float32 or float64, got None"),
        ({"dtype": "no such dtype"}, "dtype must be float32 or float64"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str, no_env: None) -> None:
    # checked before looking for any file, so no dataset is needed
    with pytest.raises(DataError, match=match) as excinfo:
        data.load_mnist(**kwargs)  # type: ignore[arg-type]
    assert isinstance(excinfo.value, ValueError)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="dataset must be 'mnist' or 'fashion-mnist'"):
        data.load_raw("cifar10")


def test_cache_dir_follows_platform_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTGD_CACHE_DIR", "/somewhere/else")
    assert data.cache_dir() == Path("/somewhere/else")
    monkeypatch.delenv("FASTGD_CACHE_DIR")
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert data.cache_dir() == Path("/xdg/fastgd")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert data.cache_dir() == Path.home() / ".cache" / "fastgd"
    monkeypatch.setattr("sys.platform", "darwin")
    assert data.cache_dir() == Path.home() / "Library" / "Caches" / "fastgd"
    monkeypatch.setattr("sys.platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", "/appdata")
    assert data.cache_dir() == Path("/appdata") / "fastgd" / "Cache"


# --------------------------------------------------------------------------- the IDX reader


BAD_FILES = {
    "wrong magic": (b"\x00\x00\x08\x02" + bytes(8), "declares 2 dimensions"),
    "float data type": (b"\x00\x00\x0d\x03" + bytes(12), "data type 0x0d is not supported"),
    "not IDX at all": (b"<!DOCTYPE html><html></html>", "not an IDX file"),
    "empty": (b"", "truncated header: 0 bytes"),
    "truncated magic": (b"\x00\x00", "truncated header: 2 bytes"),
    "truncated dimensions": (image_file(2)[:10], "truncated header: 10 bytes"),
    "truncated payload": (image_file(2)[:-1], "truncated payload"),
    "trailing bytes": (image_file(2) + b"\x00", "trailing bytes"),
    "label of 10": (label_file([0, 9, 10, 3]), "label 10 at index 2 is outside 0-9"),
    "images not 28x28": (image_file(2, 32, 32), "images are 32x32 pixels, expected 28x28"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_read_idx_rejects(tmp_path: Path, case: str, gz: bool) -> None:
    content, match = BAD_FILES[case]
    path = write(tmp_path / "file-idx3-ubyte", content, gz=gz)
    with pytest.raises(IDXFormatError, match=match) as excinfo:
        data.read_idx(path)
    assert str(path) in str(excinfo.value)
    assert isinstance(excinfo.value, (FastgdError, ValueError))


def test_read_idx_options(tmp_path: Path) -> None:
    images = write(tmp_path / "images", image_file(2, 32, 20), gz=True)
    assert data.read_idx(images, image_shape=None).shape == (2, 32, 20)
    labels = write(tmp_path / "labels", label_file([0, 200]))
    np.testing.assert_array_equal(data.read_idx(labels, num_classes=None), [0, 200])
    empty = write(tmp_path / "empty", label_file([]))
    assert data.read_idx(empty).shape == (0,)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda gz: gz[: len(gz) // 2], "corrupt or truncated gzip stream"),
        (lambda gz: gz[:-8] + bytes([gz[-8] ^ 1]) + gz[-7:], "corrupt or truncated gzip stream"),
        (lambda gz: gz + b"garbage", "corrupt or truncated gzip stream"),
    ],
    ids=["truncated", "bad CRC", "garbage after the stream"],
)
def test_read_idx_rejects_broken_gzip(tmp_path: Path, mangle: object, match: str) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(mangle(gzip.compress(image_file(50))))  # type: ignore[operator]
    with pytest.raises(IDXFormatError, match=match) as excinfo:
        data.read_idx(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_header_claiming_gigabytes_fails_fast(tmp_path: Path, gz: bool) -> None:
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 28, 28)  # 1.7 TB of pixels
    path = write(tmp_path / "huge", header + bytes(1000), gz=gz)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(IDXFormatError, match="truncated payload") as excinfo:
            data.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 4 * 2**20, f"{peak:,} bytes allocated"
    assert "2147483648 x 28 x 28 images" in str(excinfo.value)


def test_gzip_bomb_is_not_decompressed(tmp_path: Path) -> None:
    # the header declares one image, the stream decompresses to 64 MB
    path = write(tmp_path / "bomb", image_file(1) + bytes(64 * 2**20), gz=True)
    tracemalloc.start()
    try:
        with pytest.raises(IDXFormatError, match="trailing bytes"):
            data.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak:,} bytes allocated"


def test_wrong_size_for_the_dataset_fails_before_reading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tiny = register_tiny(monkeypatch)
    tiny.write_to(tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", image_file(4), gz=True)
    with pytest.raises(IDXFormatError, match="header declares 4 x 28 x 28 images"):
        data.load_raw("mnist", "test", data_dir=tmp_path)


def test_image_and_label_counts_must_match(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch, t10k_labels_idx1_ubyte=label_file([1, 2]))
    tiny.write_to(tmp_path)
    with pytest.raises(IDXFormatError, match=r"holds 3 images but .* holds 2 labels"):
        data.load_raw("mnist", "test", data_dir=tmp_path)


def test_swapped_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    write(tmp_path / "t10k-labels-idx1-ubyte", tiny.files["t10k-images-idx3-ubyte"])
    write(tmp_path / "t10k-images-idx3-ubyte", tiny.files["t10k-labels-idx1-ubyte"])
    with pytest.raises(IDXFormatError, match=r"file of images .* expected labels"):
        data.load_raw("mnist", "test", data_dir=tmp_path)


def test_checksum_mismatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    tiny.write_to(tmp_path)
    path = write(tmp_path / "t10k-labels-idx1-ubyte.gz", label_file([7, 0, 4]), gz=True)
    with pytest.raises(ChecksumError) as excinfo:
        data.load_raw("mnist", "test", data_dir=tmp_path)
    message = str(excinfo.value)
    assert str(path) in message
    assert "corrupt or from another dataset" in message
    expected = hashlib.sha256(tiny.files["t10k-labels-idx1-ubyte"]).hexdigest()
    assert expected in message


# --------------------------------------------------------------------------- decompressed copies


def test_decompressed_copy_is_used_and_verified(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: Path
) -> None:
    tiny = register_tiny(monkeypatch)
    folder = tiny.write_to(tmp_path / "data")
    expected = tiny.arrays("test")
    data.load_raw("mnist", "test", data_dir=folder)
    copies = isolated / "unpacked" / "mnist"
    assert len(files_in(copies)) == 2

    # a corrupt copy is noticed, ignored and replaced
    for copy in copies.iterdir():
        copy.write_bytes(copy.read_bytes()[:-1] + b"\x07")
    images, labels = data.load_raw("mnist", "test", data_dir=folder)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])

    # a good copy is read without decompressing the source
    with monkeypatch.context() as patch:
        patch.setattr(gzip, "GzipFile", None)
        images, _ = data.load_raw("mnist", "test", data_dir=folder)
    np.testing.assert_array_equal(images, expected[0])

    # a source that changes is read again: a broken one is not masked by the copy
    time.sleep(0.01)
    write(folder / "t10k-labels-idx1-ubyte.gz", label_file([7, 0, 3])[:-1], gz=True)
    with pytest.raises(IDXFormatError, match="truncated payload"):
        data.load_raw("mnist", "test", data_dir=folder)
    assert len(files_in(copies)) == 2  # one per file: stale copies are removed


def test_unwritable_cache_still_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    folder = tiny.write_to(tmp_path / "data")
    blocker = write(tmp_path / "not-a-folder", b"")
    monkeypatch.setenv("FASTGD_CACHE_DIR", str(blocker / "cache"))
    for _ in range(2):
        _, labels = data.load_raw("mnist", "train", data_dir=folder)
        np.testing.assert_array_equal(labels, tiny.arrays("train")[1])


def test_read_only_source_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    folder = tiny.write_to(tmp_path / "data")
    before = files_in(folder)
    for path in [*folder.iterdir(), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        _, labels = data.load_raw("mnist", "test", data_dir=folder)
    finally:
        folder.chmod(0o755)
    np.testing.assert_array_equal(labels, tiny.arrays("test")[1])
    assert files_in(folder) == before  # nothing is written next to the source (root could)


# --------------------------------------------------------------------------- downloads


def test_download_tries_the_next_mirror(
    monkeypatch: pytest.MonkeyPatch, server: Server, isolated: Path, no_env: None
) -> None:
    tiny = register_tiny(monkeypatch)
    mirrors = (
        DEAD_MIRROR,
        server.mirror("missing", {}),
        server.mirror("truncate", tiny.files),
        server.mirror("badlength", tiny.files),
        server.mirror("corrupt", tiny.files),
        server.mirror("ok", tiny.files),
    )
    monkeypatch.setitem(data.MIRRORS, "mnist", mirrors)
    images, labels = data.load_raw("mnist", "test")
    np.testing.assert_array_equal(images, tiny.arrays("test")[0])
    np.testing.assert_array_equal(labels, tiny.arrays("test")[1])
    modes = ("missing", "truncate", "badlength", "corrupt")
    assert server.requests[:4] == [f"/{mode}/t10k-images-idx3-ubyte.gz" for mode in modes]
    # stored decompressed under the canonical names, and nothing else
    assert files_in(isolated / "mnist") == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert (isolated / "mnist" / "t10k-labels-idx1-ubyte").read_bytes() == tiny.files[
        "t10k-labels-idx1-ubyte"
    ]
    # the next load finds them and downloads nothing
    count = len(server.requests)
    data.load_raw("mnist", "test")
    assert len(server.requests) == count


@pytest.mark.parametrize("mode", ["truncate", "badlength", "corrupt"])
def test_failed_download_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, server: Server, isolated: Path, no_env: None, mode: str
) -> None:
    tiny = register_tiny(monkeypatch)
    url = server.mirror(mode, tiny.files)
    monkeypatch.setitem(data.MIRRORS, "mnist", (url,))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        data.load_raw("mnist", "train")
    assert isinstance(excinfo.value.__cause__, DownloadError)
    assert f"{url}train-images-idx3-ubyte.gz: " in str(excinfo.value)
    assert files_in(isolated / "mnist") == []


def test_interrupted_download_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register_tiny(monkeypatch)
    attempts = []

    def interrupted(url: str, write: object, **kwargs: object) -> None:
        attempts.append(url)
        write(b"\x1f\x8b partial")  # type: ignore[operator]
        raise KeyboardInterrupt

    monkeypatch.setattr(_download, "_fetch", interrupted)
    target = tmp_path / "downloads"
    with pytest.raises(KeyboardInterrupt):
        data.download("mnist", target, mirrors=["http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/"])
    assert attempts == ["http://127.0.0.1:1/a/train-images-idx3-ubyte.gz"]
    assert files_in(target) == []


def test_download_function(monkeypatch: pytest.MonkeyPatch, server: Server, tmp_path: Path) -> None:
    tiny = register_tiny(monkeypatch)
    url = server.mirror("ok", tiny.files)
    folder = data.download("mnist", tmp_path / "dl", split="test", mirrors=[url])
    assert folder == tmp_path / "dl"
    assert files_in(folder) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    _, labels = data.load_raw("mnist", "test", data_dir=folder)
    np.testing.assert_array_equal(labels, tiny.arrays("test")[1])

    data.download("mnist", folder, mirrors=[url])  # only the train files are missing
    assert len(server.requests) == 4
    assert len(files_in(folder)) == 4

    with pytest.raises(DownloadError, match=r"(?s)train-images-idx3-ubyte.*HTTP error 404"):
        data.download("mnist", tmp_path / "other", mirrors=[server.mirror("missing", {})])
    assert files_in(tmp_path / "other") == []


def test_no_network_error_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: Path, no_env: None
) -> None:
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setitem(data.KNOWN_DIRS, "fashion-mnist", (system,))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        data.load_fashion_mnist("test")
    message = str(excinfo.value)
    assert isinstance(excinfo.value, OSError)
    for expected in (
        "Fashion-MNIST (test) was not found and could not be downloaded",
        str(isolated / "fashion-mnist"),
        str(system),
        "t10k-images-idx3-ubyte.gz",
        f"{DEAD_MIRROR}t10k-images-idx3-ubyte.gz",
        "data_dir=",
        "FASTGD_DATA=",
    ):
        assert expected in message, f"{expected!r} missing from:\n{message}"
