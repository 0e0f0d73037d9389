"""Atomic file writes and downloads from a list of mirrors (private).

A file only ever appears under its final name complete and verified: it is written to a
temporary file in the destination folder and renamed into place with :func:`os.replace`.
Whatever goes wrong before that, including ``KeyboardInterrupt``, the temporary files are
removed.
"""

from __future__ import annotations

import http.client
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ._version import __version__
from .errors import DownloadError

__all__ = ["Buffer", "fetch_verified", "write_atomic"]

Buffer = bytes | bytearray | memoryview

_CHUNK = 1 << 20
_USER_AGENT = f"fastgd/{__version__} (Python urllib)"


def write_atomic(target: Path, parts: Iterable[Buffer]) -> None:
    """Write ``parts`` one after the other to ``target``, atomically.

    The data goes to a temporary file next to ``target``, is flushed to disk, then renamed
    over ``target``; on failure the temporary file is removed and the exception propagates.
    """
    temp = _create_temp(target, "tmp")
    try:
        with open(temp, "wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def fetch_verified(
    urls: Sequence[str],
    target: Path,
    verify: Callable[[Path], Iterable[Buffer]],
    *,
    timeout: float,
    max_bytes: int,
) -> None:
    """Download the first of ``urls`` that works, verify it, and store it as ``target``.

    Each URL is tried in turn until one gives a download that passes ``verify``. A URL fails
    on any network or HTTP error, a timeout, a response shorter than its ``Content-Length``
    or longer than ``max_bytes``, or when ``verify`` raises ``ValueError`` (for instance
    :class:`~fastgd.errors.ChecksumError`).

    Parameters
    ----------
    urls : sequence of str
        Where the file can be downloaded from, in order of preference.
    target : pathlib.Path
        The file to create; its folder must exist.
    verify : callable
        Called with the path of the downloaded temporary file; returns the bytes to store as
        ``target`` (one or more buffers, written one after the other), or raises
        ``ValueError`` if the download is not acceptable.
    timeout : float
        Seconds to wait for the server to connect or send more data.
    max_bytes : int
        Largest acceptable download.

    Raises
    ------
    DownloadError
        If every URL failed; the message lists each URL with the reason it failed.
    """
    failures = []
    for url in urls:
        try:
            download = _create_temp(target, "download")
        except OSError as exc:
            raise DownloadError(f"cannot create a file in {target.parent}: {exc}") from exc
        try:
            with open(download, "wb") as file:
                _fetch(url, file.write, timeout=timeout, max_bytes=max_bytes)
            parts = verify(download)
            write_atomic(target, parts)
            return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # it holds the connection open
            failures.append(f"  - {url}: {_describe(exc)}")
        finally:
            download.unlink(missing_ok=True)
    tried = "\n".join(failures) if failures else "  (no mirrors are configured)"
    raise DownloadError(f"could not download {target.name}; tried:\n{tried}")


def _fetch(url: str, write: Callable[[bytes], object], *, timeout: float, max_bytes: int) -> None:
    """Stream the body at ``url`` into ``write``, checking its length."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        header = response.headers.get("Content-Length", "")
        declared = int(header) if header.strip().isdigit() else None
        if declared is not None and declared > max_bytes:
            raise DownloadError(
                f"the server announces {declared:,} bytes, more than the {max_bytes:,} expected"
            )
        received = 0
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise DownloadError(f"the server sent more than the {max_bytes:,} bytes expected")
            write(chunk)
    if declared is not None and received != declared:
        raise DownloadError(
            f"the connection ended after {received:,} of the {declared:,} bytes announced"
        )


def _create_temp(target: Path, purpose: str) -> Path:
    """Create a new, empty, hidden file next to ``target`` and return its path.

    Unlike :func:`tempfile.mkstemp`, the file gets the usual permissions (``0o666`` minus
    the umask), which it keeps when it is renamed to ``target``.
    """
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.{purpose}")
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temp


def _describe(exc: BaseException) -> str:
    """A short, readable reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
