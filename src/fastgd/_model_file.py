"""Saved models: :meth:`fastgd.Network.save` and :func:`fastgd.load`.

A model file is an uncompressed ``.npz`` (a zip archive of ``.npy`` arrays) with a fixed schema:

``theta.npy``
    The flat parameter vector, the network's dtype (little-endian float32 or float64), shape
    ``(n_params,)`` with ``n_params`` given by the layer sizes.
``meta.npy``
    A JSON record stored as a uint8 array (UTF-8): ``format`` (``"fastgd-model"``),
    ``format_version``, ``fastgd_version``, ``sizes``, ``activation``, ``cost``, ``init``,
    ``dtype``, ``seed``, ``backend`` (the backend asked for), ``history`` (the training history)
    and ``training`` (``null``, or where a ``fit`` call stands, for resuming it: see
    :class:`fastgd.network.TrainingState`).
``velocity.npy``
    Only in a training record with momentum: the optimizer's velocity, laid out like ``theta``.

Files are read without trusting them: the zip directory (member names, declared sizes, no
compression), every ``.npy`` header (dtype, shape) and the JSON record (size, every field's type
and range) are checked before any data is read, and nothing is unpickled. Anything wrong raises
:class:`~fastgd.errors.ModelFileError` naming the file. Files are written to a temporary file in
the same folder, flushed to disk and renamed over the target, so a failed save leaves any
previous file intact.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backends
from ._version import __version__
from .errors import ModelFileError

if TYPE_CHECKING:
    from .network import Network, TrainingState

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastgd-model"
FORMAT_VERSION = 1
MAX_META_BYTES = 16 * 2**20  # the JSON record: a history of 10,000 epochs takes about 1.5 MB
MAX_NPY_HEADER = 4096  # numpy writes headers of 128 bytes or a few multiples
OPTIMIZER_FIELDS = ("eta", "momentum", "l2", "schedule", "final", "name")
DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_MEMBERS = ("meta.npy", "theta.npy", "velocity.npy")


# ---------------------------------------------------------------------------------------------
# Writing


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def metadata(net: Network, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record describing ``net`` (see the module's docstring)."""
    state = net.training_state
    training = None
    if state is not None:
        training = state.as_dict()
        if data is not None:
            training["data"] = dict(data)
        training["velocity"] = state.velocity is not None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastgd_version": __version__,
        "sizes": list(net.sizes),
        "activation": net.activation,
        "cost": net.cost_name,
        "init": net.init,
        "dtype": net.dtype.name,
        "seed": net.seed,
        "backend": net._backend_request,
        "history": net.history.as_dict(),
        "training": training,
    }


def save(net: Network, path: str | os.PathLike[str], data: Mapping[str, Any] | None = None) -> None:
    """Write ``net`` to ``path`` atomically (see :meth:`fastgd.Network.save`)."""
    path = os.fspath(path)
    if data is not None:
        _check_data(data, "data", ValueError)
    meta = metadata(net, data)
    try:
        text = json.dumps(meta, allow_nan=True, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save the model to {path!r}: its metadata is not JSON ({exc})") from None
    if len(text) > MAX_META_BYTES:
        raise ValueError(f"cannot save the model to {path!r}: its metadata takes {len(text):,} bytes (at most "
                         f"{MAX_META_BYTES:,}; the history is too long)")  # fmt: skip
    members = {"meta.npy": np.frombuffer(text, dtype=np.uint8), "theta.npy": net.theta.astype(DTYPES[net.dtype.name])}
    if net.training_state is not None and net.training_state.velocity is not None:
        members["velocity.npy"] = net.training_state.velocity.astype(DTYPES[net.dtype.name])
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fastgd-", suffix=".npz.tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                for name, arr in members.items():
                    zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), _npy_bytes(arr))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot save the model to {path!r}: {reason}", path) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Checks a model file piece by piece; every failure is a ModelFileError naming it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.path!r} is not a valid fastgd model file: {what}")

    # -- the zip archive ----------------------------------------------------------------------

    def members(self, zf: zipfile.ZipFile, file_size: int) -> dict[str, zipfile.ZipInfo]:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise self.fail("the archive lists a member twice")
        unknown = sorted(set(names) - set(_MEMBERS))
        if unknown:
            raise self.fail(f"unexpected member(s) {', '.join(map(repr, unknown[:5]))} (a model file holds "
                            "meta.npy, theta.npy and optionally velocity.npy)")  # fmt: skip
        for need in ("meta.npy", "theta.npy"):
            if need not in names:
                raise self.fail(f"the member {need!r} is missing")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise self.fail(f"the member {info.filename!r} is compressed (fastgd writes model files uncompressed)")
            if info.file_size != info.compress_size or info.file_size > file_size:
                raise self.fail(f"the member {info.filename!r} declares {info.file_size:,} bytes, more than the "
                                f"file holds ({file_size:,} bytes): it is truncated or forged")  # fmt: skip
            if info.flag_bits & 0x1:
                raise self.fail(f"the member {info.filename!r} is encrypted")
            if info.flag_bits & ~0x808:  # fastgd writes no flags but UTF-8 names (0x800) and data descriptors (0x8)
                raise self.fail(f"the member {info.filename!r} uses zip features fastgd does not write "
                                f"(general purpose flags {info.flag_bits:#06x})")  # fmt: skip
            if not 0 <= info.header_offset <= file_size - 30:  # 30: a zip local header's fixed part
                raise self.fail(f"the member {info.filename!r} starts at byte {info.header_offset:,}, outside the "
                                f"file ({file_size:,} bytes): it is truncated or forged")  # fmt: skip
        return {i.filename: i for i in infos}

    def array(
        self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype[Any], max_count: int, count: int | None
    ) -> np.ndarray:
        """Read a 1-D ``.npy`` member after checking its header: ``dtype``, and ``count`` items
        (or at most ``max_count`` when ``count`` is None)."""
        name = info.filename
        with zf.open(info) as f:
            head = f.read(10)
            if len(head) < 10 or head[:6] != b"\x93NUMPY":
                raise self.fail(f"the member {name!r} is not a .npy array")
            major = head[6]
            if major == 1:
                hlen = struct.unpack("<H", head[8:10])[0]
                extra = b""
            elif major in (2, 3):
                more = f.read(2)
                if len(more) < 2:
                    raise self.fail(f"the member {name!r} is truncated")
                hlen = struct.unpack("<I", head[8:10] + more)[0]
                extra = more
            else:
                raise self.fail(f"the member {name!r} has an unknown .npy version {major}")
            if hlen > MAX_NPY_HEADER:
                raise self.fail(f"the member {name!r} has a {hlen:,}-byte .npy header (at most {MAX_NPY_HEADER})")
            header_bytes = f.read(hlen)
            if len(header_bytes) < hlen:
                raise self.fail(f"the member {name!r} is truncated inside its header")
            try:
                header = ast.literal_eval(header_bytes.decode("utf-8" if major == 3 else "latin1"))
            except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
                raise self.fail(f"the member {name!r} has an unreadable .npy header") from None
            if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
                raise self.fail(f"the member {name!r} has a malformed .npy header")
            descr, shape = header["descr"], header["shape"]
            if descr != dtype.str:
                raise self.fail(f"the member {name!r} holds {descr!r} values, expected {dtype.str!r} "
                                f"({dtype.name})")  # fmt: skip
            if (not isinstance(shape, tuple) or len(shape) != 1 or not isinstance(shape[0], int)
                    or isinstance(shape[0], bool) or shape[0] < 0):  # fmt: skip
                raise self.fail(f"the member {name!r} has shape {shape!r}, expected a 1-dimensional array")
            n = shape[0]
            if count is not None and n != count:
                raise self.fail(f"the member {name!r} holds {n:,} values, expected {count:,}")
            if n > max_count:
                raise self.fail(f"the member {name!r} claims {n:,} values (at most {max_count:,})")
            start = 10 + len(extra) + hlen
            if info.file_size != start + n * dtype.itemsize:
                raise self.fail(f"the member {name!r} holds {info.file_size - start:,} bytes of data, its header "
                                f"declares {n * dtype.itemsize:,}")  # fmt: skip
            body = f.read(n * dtype.itemsize)
        try:
            arr = np.load(io.BytesIO(head + extra + header_bytes + body), allow_pickle=False)
        except ValueError as exc:
            raise self.fail(f"the member {name!r} cannot be read ({exc})") from None
        if arr.dtype != dtype or arr.shape != (n,):
            raise self.fail(f"the member {name!r} does not match its header")
        return arr

    # -- the JSON record ----------------------------------------------------------------------

    def get(self, d: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str = "") -> Any:
        if key not in d:
            raise self.fail(f"the metadata field '{where}{key}' is missing")
        value = d[key]
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(f"the metadata field '{where}{key}' must be {names}, got {type(value).__name__}")
        return value

    def nonneg_int(self, d: Mapping[str, Any], key: str, where: str = "", low: int = 0, high: int = 2**63) -> int:
        value = self.get(d, key, (int,), where)
        if not low <= value <= high:
            raise self.fail(f"the metadata field '{where}{key}' = {value} is out of range [{low}, {high}]")
        return int(value)

    def choice(self, d: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
        value = self.get(d, key, (str,))
        if value not in choices:
            raise self.fail(f"the metadata field {key!r} = {value[:40]!r} is not one of {', '.join(choices)}")
        return str(value)

    def history(self, d: Any) -> dict[str, list[Any]]:
        if not isinstance(d, dict):
            raise self.fail("the metadata field 'history' must be an object")
        out: dict[str, list[Any]] = {}
        length = None
        from .network import History

        for key in History().as_dict():
            values = self.get(d, key, (list,), "history.")
            kinds: tuple[type, ...] = (int,) if key == "epoch" else (int, float)
            for v in values:
                if not isinstance(v, kinds) or isinstance(v, bool):
                    raise self.fail(f"the metadata field 'history.{key}' holds a {type(v).__name__}")
            if length is not None and len(values) != length:
                raise self.fail("the history's lists have different lengths")
            length = len(values)
            out[key] = [int(v) for v in values] if key == "epoch" else [float(v) for v in values]
        return out

    def training(self, d: Any, net: Network, velocity: np.ndarray | None) -> TrainingState | None:
        from .network import TrainingState
        from .optim import Optimizer

        if d is None:
            return None
        if not isinstance(d, dict):
            raise self.fail("the metadata field 'training' must be an object or null")
        w = "training."
        epochs = self.nonneg_int(d, "epochs", w, 0, 2**31)
        done = self.nonneg_int(d, "done", w, 0, epochs)
        n_rows = self.nonneg_int(d, "n_rows", w, 1, 2**40)
        batch_size = self.nonneg_int(d, "batch_size", w, 1, n_rows)
        seed = self.nonneg_int(d, "seed", w, 0, 2**128)
        od = self.get(d, "optimizer", (dict,), w)
        try:
            fields = {k: self.get(od, k, (str,) if k in ("schedule", "name") else (int, float), w + "optimizer.")
                      for k in OPTIMIZER_FIELDS}  # fmt: skip
            optimizer = Optimizer(**fields)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise self.fail(f"the training record's optimizer is invalid ({exc})") from None
        rng = self.get(d, "rng", (dict,), w)
        if self.get(rng, "bit_generator", (str,), w + "rng.") != "PCG64":
            raise self.fail("the training record's shuffling generator is not PCG64")
        inner = self.get(rng, "state", (dict,), w + "rng.")
        rng_state = {
            "bit_generator": "PCG64",
            "state": {"state": self.nonneg_int(inner, "state", w + "rng.state.", 0, 2**128 - 1),
                      "inc": self.nonneg_int(inner, "inc", w + "rng.state.", 0, 2**128 - 1)},
            "has_uint32": self.nonneg_int(rng, "has_uint32", w + "rng.", 0, 1),
            "uinteger": self.nonneg_int(rng, "uinteger", w + "rng.", 0, 2**32 - 1),
        }  # fmt: skip
        has_velocity = self.get(d, "velocity", (bool,), w)
        if has_velocity != (optimizer.momentum != 0) or has_velocity != (velocity is not None):
            raise self.fail("the training record's velocity does not match its optimizer and members")
        data = _check_data(self.get(d, "data", (dict,), w), "the metadata field 'training.data'", self.fail)
        try:
            np.random.Generator(np.random.PCG64()).bit_generator.state = rng_state
        except (ValueError, TypeError, OverflowError):
            raise self.fail("the training record's generator state is invalid") from None
        return TrainingState(epochs=epochs, done=done, batch_size=batch_size, n_rows=n_rows, seed=seed,
                             optimizer=optimizer, rng_state=rng_state, velocity=velocity, data=data)  # fmt: skip


def _check_data(data: Any, name: str, error: Any) -> dict[str, Any]:
    """A flat mapping of str to str, int, float, bool or None (a description of the training data)."""
    if not isinstance(data, Mapping):
        raise error(f"{name} must be a mapping of names to simple values")
    out = {}
    for k, v in data.items():
        if not isinstance(k, str) or not (v is None or isinstance(v, (str, int, float, bool))):
            raise error(f"{name} must map names (str) to str, int, float, bool or None; got {k!r}: {v!r}")
        out[k] = v
    return out


def load(path: str | os.PathLike[str], backend: str | None = None) -> Network:
    """Read a model written by :meth:`fastgd.Network.save`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    backend : str, optional
        Backend to compute with. When not given: the one the model was saved with if it is
        available here, else ``"auto"``.

    Returns
    -------
    Network
        With its parameters, history and (for a checkpoint) :attr:`~fastgd.Network.training_state`
        exactly as saved.

    Raises
    ------
    ModelFileError
        If the file is not a valid model file (corrupt, truncated, foreign, forged), naming the
        file and the problem.
    OSError
        If the file cannot be opened (missing, unreadable, a directory).
    """
    from .network import History, Network, _check_sizes, _param_count

    spath = os.fspath(path)
    r = _Reader(spath)
    try:
        f = open(spath, "rb")  # noqa: SIM115
    except IsADirectoryError:
        raise ModelFileError(f"{spath!r} is a directory, not a model file") from None
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open the model file {spath!r}: {exc.strerror or exc}", spath) from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise r.fail("the file is empty")
            try:
                zf = zipfile.ZipFile(f)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError):
                # (UnicodeDecodeError, a member name flagged UTF-8 that is not, is a ValueError)
                raise r.fail("it is not a zip (.npz) archive, or it is truncated") from None
            with zf:
                infos = r.members(zf, size)
                raw = r.array(zf, infos["meta.npy"], np.dtype(np.uint8), MAX_META_BYTES, None)
                try:
                    meta = json.loads(raw.tobytes().decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    raise r.fail("the metadata record is not valid JSON") from None
                if not isinstance(meta, dict):
                    raise r.fail("the metadata record is not a JSON object")
                if meta.get("format") != FORMAT:
                    raise r.fail(f"the metadata does not name the format {FORMAT!r} (a foreign .npz file?)")
                version = r.get(meta, "format_version", (int,))
                if version != FORMAT_VERSION:
                    raise r.fail(f"format version {version} is not supported (this fastgd "
                                 f"{__version__} reads version {FORMAT_VERSION})")  # fmt: skip
                r.get(meta, "fastgd_version", (str,))
                sizes = r.get(meta, "sizes", (list,))
                ints = all(isinstance(s, int) and not isinstance(s, bool) for s in sizes)
                if not 2 <= len(sizes) <= 1000 or not ints:
                    raise r.fail("the metadata field 'sizes' must list 2 to 1000 integers")
                try:
                    sizes = list(_check_sizes(sizes))
                except (TypeError, ValueError) as exc:
                    raise r.fail(f"the metadata field 'sizes' is invalid ({exc})") from None
                activation = r.choice(meta, "activation", backends.ACTIVATIONS)
                cost = r.choice(meta, "cost", backends.COSTS)
                from .network import INITS

                init = r.choice(meta, "init", INITS)
                dtype_name = r.choice(meta, "dtype", tuple(DTYPES))
                seed = r.nonneg_int(meta, "seed", "", 0, 2**128)
                stored_backend = r.choice(meta, "backend", ("auto", *backends.NAMES))
                history = r.history(meta.get("history"))
                n_params = _param_count(sizes)
                dtype = DTYPES[dtype_name]
                theta = r.array(zf, infos["theta.npy"], dtype, n_params, n_params)
                velocity = None
                if "velocity.npy" in infos:
                    velocity = r.array(zf, infos["velocity.npy"], dtype, n_params, n_params)
                if "training" not in meta:
                    raise r.fail("the metadata field 'training' is missing")
        except (zipfile.BadZipFile, UnicodeDecodeError, NotImplementedError) as exc:
            raise r.fail(f"the archive is damaged or uses zip features fastgd does not write ({exc})") from None
        except (EOFError, struct.error, zlib_error()) as exc:
            raise r.fail(f"the archive is truncated or damaged ({exc})") from None
        except ModelFileError:
            raise
        except OSError as exc:
            raise OSError(exc.errno, f"cannot read the model file {spath!r}: {exc.strerror or exc}", spath) from None
    if not np.isfinite(theta).all():
        k = int(np.flatnonzero(~np.isfinite(theta))[0])
        raise r.fail(f"parameter {k} is {theta[k]} (parameters must be finite)")
    if velocity is not None and not np.isfinite(velocity).all():
        raise r.fail("the velocity holds non-finite values")
    if backend is None:
        backend = stored_backend if stored_backend == "auto" or backends.available(stored_backend)[0] else "auto"
    net = Network(sizes, activation=activation, cost=cost, init=init, seed=seed, dtype=dtype_name, backend=backend)
    net._backend_request = backend
    net.theta = np.array(theta, dtype=dtype_name, order="C")  # a writable, native-order copy
    net.history = History.from_dict(history)
    state = r.training(meta["training"], net, None if velocity is None else np.array(velocity, dtype=dtype_name))
    if state is not None and state.done > 0 and len(net.history) < state.done:
        raise r.fail("the training record counts more finished epochs than the history holds")
    net.training_state = state
    return net


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error
