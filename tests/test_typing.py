"""The package is typed: py.typed ships, the stub of the compiled module matches the bindings, and one version."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import re
import subprocess
import sys
from pathlib import Path

from helpers import require_backend

import fastgd

STUB = Path(fastgd.__file__).with_name("_core.pyi")
# pybind11's rendering of the C++ argument types in a function's signature line
PYBIND_TYPES = {
    "numpy.ndarray": "array",
    "typing.SupportsInt | typing.SupportsIndex": "int",
    "typing.SupportsFloat | typing.SupportsIndex": "float",
    "object": "object",
    "float": "float",
    "tuple": "tuple",
    "dict": "dict",
}


def stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def stub_kind(annotation: ast.expr | None) -> str:
    """The stub's annotation reduced to the kinds pybind11 reports ("array", "int", "float", ...)."""
    assert annotation is not None
    text = ast.unparse(annotation)
    parts = text.split(" | ")
    if all(re.fullmatch(r"NDArray\[\w+(\.\w+)?\]", p) for p in parts):
        return "array"
    if parts[-1] == "None" and all(re.fullmatch(r"NDArray\[\w+(\.\w+)?\]", p) for p in parts[:-1]):
        return "object"  # an optional array: pybind11 takes a py::object and checks it
    if re.fullmatch(r"tuple\[.+\]", text):
        return "tuple"
    kinds = {
        "SupportsInt | SupportsIndex": "int",
        "SupportsFloat | SupportsIndex": "float",
        "float": "float",
        "dict[str, Any]": "dict",
    }
    assert text in kinds, f"unexpected annotation {text!r} in the stub"
    return kinds[text]


def binding_signature(func: object) -> tuple[list[tuple[str, str]], str]:
    """Argument names and kinds, and the return kind, from pybind11's signature line."""
    doc = func.__doc__ or ""
    name = func.__name__  # type: ignore[attr-defined]
    match = re.match(rf"{name}\((.*)\) -> (.+)$", doc.splitlines()[0])
    assert match, f"no pybind11 signature line in {name}.__doc__: {doc!r}"
    args = []
    for part in filter(None, re.split(r", (?=\w+: )", match.group(1))):
        arg, _, typ = part.partition(": ")
        assert "=" not in typ, f"{name}: the stub has no defaults, the binding gives {arg} one"
        args.append((arg, PYBIND_TYPES[typ]))
    return args, PYBIND_TYPES[match.group(2)]


def test_py_typed_ships() -> None:
    assert importlib.resources.files("fastgd").joinpath("py.typed").is_file()
    assert STUB.is_file()


def test_stub_matches_the_bindings_argument_by_argument() -> None:
    require_backend("cpp")
    core = importlib.import_module("fastgd._core")
    names = sorted(n for n in dir(core) if not n.startswith("__"))  # _pool_check, for the tests, too
    stubs = stub_functions()
    assert sorted(stubs) == names
    for name in names:
        args, returns = binding_signature(getattr(core, name))
        node = stubs[name]
        assert not node.args.defaults and not node.args.kwonlyargs and node.args.vararg is None, name
        assert [(a.arg, stub_kind(a.annotation)) for a in node.args.args] == args, name
        assert stub_kind(node.returns) == returns, name


def test_stubtest_passes() -> None:
    """mypy's stubtest: every name of the stub exists at run time with a compatible kind, and nothing is missing."""
    require_backend("cpp")
    res = subprocess.run([sys.executable, "-m", "mypy.stubtest", "fastgd._core"], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success" in res.stdout


def test_one_version_everywhere() -> None:
    from fastgd import _version

    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", fastgd.__version__)
    assert fastgd.__version__ is _version.__version__
    res = subprocess.run([sys.executable, "-m", "fastgd", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"fastgd {fastgd.__version__}"
    assert fastgd.config()["fastgd"] == fastgd.__version__
    from importlib.metadata import version

    assert version("fastgd") == fastgd.__version__  # what the build read from _version.py
