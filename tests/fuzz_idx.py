#!/usr/bin/env python3
"""Coverage-guided fuzzing of fastgd's IDX reader (``fastgd.read_idx``) with atheris.

Every input is written to a file and read with :func:`fastgd.read_idx`, or (one input in eight)
with the private reader the dataset loaders use, which also requires a kind and a size. The
first byte of an input picks the options, the rest is the file. The fuzzer starts from small
valid files, images and labels, gzip-compressed and not, and mutates them.

A reader given an untrusted file may only return an array matching its header or raise one of
fastgd's own errors (:class:`fastgd.FastgdError` subclasses: here ``IDXFormatError``). Anything
else (another exception, a crash, a wrong array) is a finding: atheris stops, prints the
traceback and saves the input as ``crash-<sha1>`` in the current folder.

Usage (needs ``pip install atheris``, or the ``fuzz`` extra)::

    python tests/fuzz_idx.py --runs 100000         # or any libFuzzer flag, e.g. -atheris_runs=100000
    python tests/fuzz_idx.py --runs 100000 --keep-going   # record findings instead of stopping at the first
    python tests/fuzz_idx.py crash-1234abcd        # replay one saved input

At the end it prints the number of inputs, the wall time and how often each outcome occurred.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from fuzz_common import instrument, main, scratch_dir  # noqa: E402

import fastgd  # noqa: E402
from fastgd import _idx  # noqa: E402

FILE = scratch_dir("fuzz-idx") / "input"


def image_file(n: int, rows: int, cols: int) -> bytes:
    pixels = np.random.default_rng(n * rows * cols).integers(0, 256, n * rows * cols, dtype=np.uint8)
    return bytes([0, 0, 8, 3]) + struct.pack(">3I", n, rows, cols) + pixels.tobytes()


def label_file(labels: list[int]) -> bytes:
    return bytes([0, 0, 8, 1]) + struct.pack(">I", len(labels)) + bytes(labels)


def seeds() -> dict[str, bytes]:
    """Small valid files, raw and gzip-compressed, each behind a few option bytes."""
    files = {
        "images-2x3x4": image_file(2, 3, 4),
        "images-1x28x28": image_file(1, 28, 28),
        "images-0x28x28": image_file(0, 28, 28),
        "labels-5": label_file([0, 9, 3, 7, 1]),
        "labels-0": label_file([]),
        "labels-200": label_file([0, 200, 255]),
    }
    files.update({f"{name}.gz": gzip.compress(content, mtime=0) for name, content in list(files.items())})
    return {f"{name}-{opt}": bytes([opt]) + content for name, content in files.items() for opt in (0, 1, 2, 4, 0xF8)}


def check(data: bytes) -> str:
    if not data:
        return "empty input"
    options, content = data[0], data[1:]
    FILE.write_bytes(content)
    image_shape = None if options & 1 else (28, 28) if options & 2 else (3, 4)
    num_classes = None if options & 4 else 10
    try:
        if options & 0xE0 == 0xE0:  # as the dataset loaders call it
            kind = "images" if options & 8 else "labels"
            expected = len(content) if options & 16 else 12 + 784
            parsed = _idx.read_idx_content(
                FILE, kind=kind, expected_nbytes=expected, image_shape=image_shape, num_classes=num_classes
            )
            array = parsed.array
            assert len(parsed.header) in (8, 16) and len(parsed.sha256) == 64
        else:
            array = fastgd.read_idx(FILE, image_shape=image_shape, num_classes=num_classes)
    except fastgd.FastgdError as exc:
        return type(exc).__name__
    # an accepted file: the array is what the header says, uint8 and writable
    assert array.dtype == np.uint8 and array.flags.writeable and array.flags.c_contiguous
    assert array.ndim in (1, 3) and array.size <= len(content) * 1100 + 1  # gzip expands at most ~1032x
    if array.ndim == 3 and image_shape is not None:
        assert array.shape[1:] == image_shape
    if array.ndim == 1 and num_classes is not None and array.size:
        assert array.max() < num_classes
    return "accepted"


if __name__ == "__main__":
    instrument(("fastgd", "gzip"))
    main("fuzz_idx", check, seeds(), sys.argv)
