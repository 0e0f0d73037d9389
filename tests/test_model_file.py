"""Saved models: bit-exact round trips, broken and malicious files, failed saves, checkpoints and resume."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import tempfile
import zipfile

import numpy as np
import pytest

import fastgd
from fastgd import ModelFileError, Network, Optimizer
from fastgd._model_file import FORMAT_VERSION, MAX_META_BYTES

SIZES = [12, 7, 5, 3]


def small_data(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZES[0])), rng.integers(0, SIZES[-1], n)


def trained(dtype: str = "float64", momentum: float = 0.0, epochs: int = 3) -> Network:
    X, y = small_data()
    net = Network(SIZES, dtype=dtype, seed=4)
    opt = Optimizer(eta=0.05, momentum=momentum, l2=1e-3, schedule="linear")
    net.fit(X, y, epochs=epochs, batch_size=8, optimizer=opt, validation_data=small_data(30, 1))
    return net


def npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def members_of(path: str) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def meta_of(path: str) -> dict:
    return json.loads(np.load(io.BytesIO(members_of(path)["meta.npy"])).tobytes())


def write_zip(path: str, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> str:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def meta_bytes(meta: dict) -> bytes:
    return npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def same_history(a: fastgd.History, b: fastgd.History) -> bool:
    da, db = a.as_dict(), b.as_dict()
    return da.keys() == db.keys() and all(np.array_equal(da[k], db[k], equal_nan=True) for k in da)


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_round_trip_is_bit_exact(tmp_path, dtype: str, momentum: float) -> None:  # noqa: ANN001
    net = trained(dtype, momentum)
    path = tmp_path / "model.npz"
    net.save(path, data={"dataset": "synthetic", "limit": 90})
    back = fastgd.load(path)
    assert back.theta.dtype == np.dtype(dtype) and back.theta.flags.c_contiguous and back.theta.flags.writeable
    assert np.array_equal(back.theta, net.theta) and back.theta.tobytes() == net.theta.tobytes()
    assert same_history(back.history, net.history) and len(back.history) == 3
    assert (back.sizes, back.activation, back.cost_name, back.init, back.seed, back.dtype) == (
        net.sizes, net.activation, net.cost_name, net.init, net.seed, net.dtype)  # fmt: skip
    st, st0 = back.training_state, net.training_state
    assert st is not None and st0 is not None
    assert (st.epochs, st.done, st.batch_size, st.n_rows, st.optimizer, st.rng_state) == (
        st0.epochs, st0.done, st0.batch_size, st0.n_rows, st0.optimizer, st0.rng_state)  # fmt: skip
    assert st.data == {"dataset": "synthetic", "limit": 90}
    if momentum:
        assert st.velocity is not None and st.velocity.tobytes() == st0.velocity.tobytes()
    else:
        assert st.velocity is None
    X, _ = small_data()
    assert np.array_equal(back.forward(X), net.forward(X))
    # Saving what was loaded gives the same file content.
    back.save(tmp_path / "again.npz", data={"dataset": "synthetic", "limit": 90})
    assert members_of(str(tmp_path / "again.npz")) == members_of(str(path))


def test_untrained_network_round_trip(tmp_path) -> None:  # noqa: ANN001
    net = Network([5, 2], activation="sigmoid", cost="quadratic", init="normal", seed=9, backend="numpy")
    net.save(tmp_path / "m.npz")
    back = fastgd.load(tmp_path / "m.npz")
    assert back.training_state is None and len(back.history) == 0
    assert np.array_equal(back.theta, net.theta) and back.backend == "numpy"
    assert fastgd.load(tmp_path / "m.npz", backend="cpp" if fastgd.backends.available("cpp")[0] else "numpy")


# ---------------------------------------------------------------------------------------------
# Broken and malicious files


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict:  # noqa: ANN001
    folder = tmp_path_factory.mktemp("valid")
    path = str(folder / "valid.npz")
    trained("float32", momentum=0.9).save(path)
    data = (folder / "valid.npz").read_bytes()
    return {"path": path, "bytes": data, "members": members_of(path), "meta": meta_of(path)}


def _with_meta(valid: dict, **changes) -> dict[str, bytes]:  # noqa: ANN003
    meta = json.loads(json.dumps(valid["meta"]))
    for key, value in changes.items():
        if value is _DROP:
            del meta[key]
        else:
            meta[key] = value
    return {**valid["members"], "meta.npy": meta_bytes(meta)}


_DROP = object()
N_PARAMS = sum(SIZES[i] * SIZES[i + 1] + SIZES[i + 1] for i in range(len(SIZES) - 1))


def _training(valid: dict, **changes) -> dict:  # noqa: ANN003
    t = json.loads(json.dumps(valid["meta"]["training"]))
    t.update(changes)
    return t


def _forged_header(shape: tuple, descr: str = "<f4") -> bytes:
    """A .npy header claiming ``shape`` followed by only a few bytes of data."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 64


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", b"\x00" * (200 * 2**20))  # 200 MB of zeros in about 200 kB
        zf.writestr("theta.npy", b"")
    return buf.getvalue()


CASES = {
    # name: (builder(valid, folder) -> path, text the error must contain)
    "empty file": (lambda v, d: _file(d, b""), "empty"),
    "random bytes": (lambda v, d: _file(d, np.random.default_rng(0).bytes(5000)), "not a zip"),
    "foreign zip": (lambda v, d: write_zip(f"{d}/f.npz", {"readme.txt": b"hello"}), "unexpected member"),
    "foreign npz": (lambda v, d: write_zip(f"{d}/f.npz", {"a.npy": npy(np.arange(3)), "b.npy": npy(np.ones(2))}),
                    "unexpected member"),  # fmt: skip
    "missing theta": (lambda v, d: write_zip(f"{d}/f.npz", {"meta.npy": v["members"]["meta.npy"]}),
                      "'theta.npy' is missing"),  # fmt: skip
    "missing meta": (lambda v, d: write_zip(f"{d}/f.npz", {"theta.npy": v["members"]["theta.npy"]}),
                     "'meta.npy' is missing"),  # fmt: skip
    "pickled object array": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.array([{"x": 1}, os.system], dtype=object), allow_pickle=True)}), "'|O'"),  # fmt: skip
    "pickle in meta": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "meta.npy": npy(
        np.array([valid_pickle()], dtype=object), allow_pickle=True)}), "'|O'"),  # fmt: skip
    "gigantic theta shape": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": _forged_header(
        (10**12,))}), "holds 1,000,000,000,000 values, expected"),  # fmt: skip
    "gigantic meta shape": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "meta.npy": _forged_header(
        (10**12,), "|u1")}), "claims 1,000,000,000,000 values"),  # fmt: skip
    "2-D theta": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.zeros((1, N_PARAMS), np.float32))}), "1-dimensional"),  # fmt: skip
    "gigantic sizes": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, sizes=[100000, 100000, 10])),
                       "too many parameters"),  # fmt: skip
    "zip bomb member": (lambda v, d: _file(d, _zip_bomb()), "compressed"),
    "wrong dtype (float64 for float32)": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.zeros(N_PARAMS, np.float64))}), "expected '<f4'"),  # fmt: skip
    "wrong dtype (int64)": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.zeros(N_PARAMS, np.int64))}), "expected '<f4'"),  # fmt: skip
    "big-endian theta": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.zeros(N_PARAMS, ">f4"))}), "expected '<f4'"),  # fmt: skip
    "wrong length": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.zeros(N_PARAMS - 1, np.float32))}), f"expected {N_PARAMS:,}"),  # fmt: skip
    "NaN parameter": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "theta.npy": npy(
        np.full(N_PARAMS, np.nan, np.float32))}), "must be finite"),  # fmt: skip
    "bad JSON": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "meta.npy": npy(
        np.frombuffer(b"{not json", np.uint8))}), "not valid JSON"),  # fmt: skip
    "deeply nested JSON": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "meta.npy": npy(
        np.frombuffer(b"[" * 200000, np.uint8))}), "not valid JSON"),  # fmt: skip
    "JSON list": (lambda v, d: write_zip(f"{d}/f.npz", {**v["members"], "meta.npy": meta_bytes([1, 2])}),
                  "not a JSON object"),  # fmt: skip
    "foreign format": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, format="other")), "foreign"),
    "wrong format version": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, format_version=FORMAT_VERSION + 1)),
                             "format version"),  # fmt: skip
    "string sizes": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, sizes="12-7-5-3")), "'sizes' must be list"),
    "negative size": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, sizes=[12, -7, 5, 3])), "'sizes' is invalid"),
    "sizes disagree with theta": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, sizes=[12, 8, 5, 3])),
                                  "expected"),  # fmt: skip
    "unknown activation": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, activation="swish")), "'activation'"),
    "missing cost": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, cost=_DROP)), "'cost' is missing"),
    "bool seed": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, seed=True)), "'seed' must be int"),
    "history of strings": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, history={
        **v["meta"]["history"], "train_cost": ["a", "b", "c"]})), "history.train_cost"),  # fmt: skip
    "ragged history": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, history={
        **v["meta"]["history"], "eta": [0.1]})), "different lengths"),  # fmt: skip
    "training done > epochs": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, training=_training(v, done=99))),
                               "'training.done'"),  # fmt: skip
    "training bad optimizer": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, training=_training(
        v, optimizer={**v["meta"]["training"]["optimizer"], "momentum": 5.0}))), "optimizer is invalid"),  # fmt: skip
    "training bad generator": (lambda v, d: write_zip(f"{d}/f.npz", _with_meta(v, training=_training(
        v, rng={"bit_generator": "MT19937", "state": {}})), ), "PCG64"),  # fmt: skip
    "velocity missing": (lambda v, d: write_zip(f"{d}/f.npz", {k: b for k, b in v["members"].items()
                                                               if k != "velocity.npy"}), "velocity"),  # fmt: skip
    "duplicate member": (lambda v, d: _duplicate(v, d), "twice"),
}


def valid_pickle() -> bytes:
    return pickle.dumps("harmless")


def _file(folder: str, data: bytes) -> str:
    path = os.path.join(folder, "f.npz")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _duplicate(valid: dict, folder: str) -> str:
    path = os.path.join(folder, "f.npz")
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in valid["members"].items():
            zf.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("theta.npy", valid["members"]["theta.npy"])
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_or_malicious_file_is_refused(valid, tmp_path, case: str) -> None:  # noqa: ANN001
    build, message = CASES[case]
    path = build(valid, str(tmp_path))
    with pytest.raises(ModelFileError) as info:
        fastgd.load(path)
    text = str(info.value)
    assert path in text or repr(path) in text
    assert message in text, text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.9995])
def test_truncated_file_is_refused(valid, tmp_path, fraction: float) -> None:  # noqa: ANN001
    data = valid["bytes"]
    path = _file(str(tmp_path), data[: max(1, int(len(data) * fraction))])
    with pytest.raises(ModelFileError, match="is not a valid fastgd model file"):
        fastgd.load(path)


def test_every_flipped_byte_is_caught_or_harmless(valid, tmp_path) -> None:  # noqa: ANN001
    """Flip bytes all over a valid file: each load is refused with ModelFileError or gives finite parameters."""
    data = bytearray(valid["bytes"])
    rng = np.random.default_rng(1)
    refused = 0
    for k in rng.choice(len(data), size=150, replace=False):
        broken = bytearray(data)
        broken[k] ^= 0xFF
        path = _file(str(tmp_path), bytes(broken))
        try:
            net = fastgd.load(path)
        except ModelFileError:
            refused += 1
        else:
            assert np.isfinite(net.theta).all() and net.theta.shape == (N_PARAMS,)
    assert refused > 100  # the CRC of each member catches any change to its bytes


def test_directory_and_missing_file(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ModelFileError, match="is a directory"):
        fastgd.load(tmp_path)
    with pytest.raises(OSError, match="cannot open the model file") as info:
        fastgd.load(tmp_path / "nope.npz")
    assert info.value.errno == errno.ENOENT and "nope.npz" in str(info.value)


def test_metadata_size_cap_is_enforced(valid, tmp_path) -> None:  # noqa: ANN001
    huge = npy(np.zeros(MAX_META_BYTES + 1, np.uint8))
    path = write_zip(str(tmp_path / "f.npz"), {**valid["members"], "meta.npy": huge})
    with pytest.raises(ModelFileError, match="at most"):
        fastgd.load(path)


# ---------------------------------------------------------------------------------------------
# Failed saves leave the previous file intact


def _no_temp_files(folder) -> bool:  # noqa: ANN001
    return sorted(os.listdir(folder)) == ["model.npz"]


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk_leaves_previous_file(tmp_path, monkeypatch, where: str) -> None:  # noqa: ANN001
    path = tmp_path / "model.npz"
    Network(SIZES, seed=1).save(path)
    before = path.read_bytes()
    net = trained()

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        real_fdopen = os.fdopen

        class Full(io.BufferedWriter):
            def write(self, b):  # noqa: ANN001, ANN202
                full()

        monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real_fdopen(fd, "wb", buffering=0)))
    else:
        monkeypatch.setattr(os, where, full)
    with pytest.raises(OSError, match="No space left on device") as info:
        net.save(path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)
    assert np.array_equal(fastgd.load(path).theta, Network(SIZES, seed=1).theta)


def test_read_only_folder_leaves_previous_file(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "model.npz"
    Network(SIZES, seed=1).save(path)
    before = path.read_bytes()

    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # what a read-only folder does to the temporary file
    with pytest.raises(OSError, match="Permission denied") as info:
        trained().save(path)
    monkeypatch.undo()
    assert info.value.errno == errno.EACCES and str(path) in str(info.value)
    assert path.read_bytes() == before and _no_temp_files(tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(OSError, match="cannot save the model") as info:
        Network(SIZES).save(tmp_path / "no" / "such" / "model.npz")
    assert "model.npz" in str(info.value)


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "model.npz"
    Network(SIZES, seed=1).save(path)
    before = path.read_bytes()

    def interrupt(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        trained().save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and _no_temp_files(tmp_path)


def test_bad_data_description_is_refused(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="data must map names"):
        trained().save(tmp_path / "m.npz", data={"x": [1, 2]})
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------------------
# Checkpoints and resume


def interrupt_after(rows: int):  # noqa: ANN201
    """A progress hook that raises KeyboardInterrupt once ``rows`` rows of the run have been trained."""
    seen = {"rows": 0, "last": 0}

    def hook(done: int, total: int) -> None:
        seen["rows"] += done - seen["last"] if done > seen["last"] else done
        seen["last"] = done % total
        if seen["rows"] >= rows:
            raise KeyboardInterrupt

    return hook


@pytest.mark.parametrize("backend_name", fastgd.backends.NAMES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_interrupt_mid_epoch_then_resume_is_bit_exact(tmp_path, backend_name: str, momentum: float) -> None:  # noqa: ANN001, E501
    from helpers import require_backend

    require_backend(backend_name)
    X, y = small_data(12000)
    val = small_data(50, 1)
    opt = Optimizer(eta=0.05, momentum=momentum, l2=1e-3, schedule="linear")
    kwargs = dict(epochs=4, batch_size=30, optimizer=opt, validation_data=val, seed=11)
    ref = Network(SIZES, backend=backend_name, seed=2)
    ref.fit(X, y, **kwargs)

    net = Network(SIZES, backend=backend_name, seed=2)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, progress=interrupt_after(2 * 12000 + 5000), **kwargs)  # in the third epoch
    state = net.training_state
    assert state is not None and state.done == 2 and not state.finished and len(net.history) == 2
    path = tmp_path / "ckpt.npz"
    net.save(path, data={"dataset": "synthetic"})
    resumed = fastgd.load(path)
    assert resumed.backend == backend_name
    history = resumed.resume_fit(X, y, validation_data=val)
    assert len(history) == 2 and resumed.history.epoch == [1, 2, 3, 4]
    assert resumed.training_state is not None and resumed.training_state.finished
    assert np.array_equal(resumed.theta, ref.theta)
    assert np.array_equal(resumed.history.val_cost, ref.history.val_cost)
    # In the same process, without a file.
    net.resume_fit(X, y, validation_data=val)
    assert np.array_equal(net.theta, ref.theta)


def _stop_after(history, k: int) -> None:  # noqa: ANN001
    if len(history) == k:
        raise KeyboardInterrupt


def test_interrupt_restores_parameters_to_the_start_of_the_epoch() -> None:
    X, y = small_data(12000)
    kwargs = dict(epochs=3, batch_size=5, optimizer="sgd", eta=0.5, seed=1)
    ref = Network(SIZES, seed=2)
    with pytest.raises(KeyboardInterrupt):
        ref.fit(X, y, callback=lambda n, h: _stop_after(h, 1), **kwargs)
    after_one = ref.theta.copy()
    net = Network(SIZES, seed=2)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, progress=interrupt_after(12000 + 5000), **kwargs)
    assert np.array_equal(net.theta, after_one) and net.training_state.done == 1


def test_progress_hook_does_not_change_the_result() -> None:
    X, y = small_data(12437)
    calls: list[tuple[int, int]] = []
    a = Network(SIZES, seed=3)
    ha = a.fit(X, y, epochs=2, batch_size=4, progress=lambda d, n: calls.append((d, n)))
    b = Network(SIZES, seed=3)
    hb = b.fit(X, y, epochs=2, batch_size=4)
    assert np.array_equal(a.theta, b.theta)
    assert np.allclose(ha.train_cost, hb.train_cost, rtol=1e-12)
    assert calls[-1] == (12437, 12437) and len(calls) == 6 and calls[2] == (12437, 12437)
    assert all(d % 4 == 0 or d == 12437 for d, _ in calls)


def test_resume_checks_its_data() -> None:
    net = Network(SIZES)
    with pytest.raises(ValueError, match="no training state"):
        net.resume_fit(*small_data())
    net.fit(*small_data(), epochs=1, batch_size=5)
    with pytest.raises(fastgd.DataError, match="used 90"):
        net.resume_fit(*small_data(50))
    assert net.resume_fit(*small_data()).epoch == []  # a finished call has nothing left to run
