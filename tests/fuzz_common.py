"""What the atheris fuzz scripts (``tests/fuzz_*.py``) share: instrumentation, arguments, seeds, report.

A fuzz script defines ``check(data: bytes) -> str``, which feeds one input to a parser and returns
a short name of the outcome ("accepted", or the name of the fastgd error raised) and lets any
other exception out, and a dict of seed inputs; :func:`main` does the rest.
"""

from __future__ import annotations

import collections
import gc
import hashlib
import os
import shutil
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Mapping
from pathlib import Path

try:
    import atheris
except ImportError:  # pragma: no cover
    sys.exit("the fuzz scripts need atheris: pip install atheris (or pip install '.[fuzz]')")


def instrument(prefixes: tuple[str, ...]) -> int:
    """Add coverage instrumentation to every loaded Python function of the named modules.

    ``atheris.instrument_imports`` misses modules loaded through an editable install's custom
    loader, so functions are instrumented after import instead. Returns how many were.
    """
    count = 0
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(prefixes):
            atheris.instrument_func(obj)
            count += 1
    return count


def scratch_dir(name: str) -> Path:
    """A new temporary folder (in memory when ``/dev/shm`` exists), removed at exit."""
    import atexit

    path = Path(tempfile.mkdtemp(prefix=f"fastgd-{name}-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def main(name: str, check: Callable[[bytes], str], seeds: Mapping[str, bytes], argv: list[str]) -> None:
    """Run libFuzzer on ``check`` with ``argv`` (``--runs N`` meaning ``-atheris_runs=N``).

    Without a corpus folder or input file among the arguments, the fuzzer starts from ``seeds``
    (written to a temporary corpus). After the last run it prints the count, the wall time and
    how often each outcome occurred. With ``--keep-going``, an exception other than fastgd's own
    does not stop the run: it is counted as a finding, and the first input of each kind (type
    and place raised) is saved as ``finding-<sha1>``.
    """
    args = [argv[0]]
    keep_going = "--keep-going" in argv
    it = iter(a for a in argv[1:] if a != "--keep-going")
    for arg in it:
        if arg == "--runs":
            arg = f"-atheris_runs={next(it)}"
        elif arg.startswith("--runs="):
            arg = "-atheris_runs=" + arg.split("=", 1)[1]
        args.append(arg)
    limits = [a for a in args if a.startswith(("-atheris_runs=", "-runs="))]
    target = int(limits[-1].split("=", 1)[1]) if limits else -1
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = scratch_dir(name) / "corpus"
        corpus.mkdir()
        for seed_name, content in seeds.items():
            (corpus / seed_name).write_bytes(content)
        args.append(str(corpus))

    outcomes: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    runs = 0

    findings: dict[str, str] = {}

    def one_input(data: bytes) -> None:
        nonlocal runs
        runs += 1
        if not keep_going:
            outcomes[check(data)] += 1
        else:
            try:
                outcomes[check(data)] += 1
            except Exception as exc:  # noqa: BLE001  (a finding: recorded, the input saved)
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                key = f"{type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}"
                outcomes[f"FINDING {key}"] += 1
                if key not in findings:
                    findings[key] = f"finding-{hashlib.sha1(data).hexdigest()}"
                    Path(findings[key]).write_bytes(data)
                    print(f"\n{name}: FINDING {key}: {exc!s:.300} (input saved as {findings[key]})", flush=True)
        if runs == target:
            seconds = time.perf_counter() - start
            verdict = f"{len(findings)} finding(s): {findings}" if findings else "nothing else raised"
            print(f"\n{name}: {runs:,} inputs in {seconds:.1f} s ({runs / seconds:,.0f}/s); outcomes: "
                  f"{dict(outcomes.most_common())}; {verdict}", flush=True)  # fmt: skip

    atheris.Setup(args, one_input)
    atheris.Fuzz()
