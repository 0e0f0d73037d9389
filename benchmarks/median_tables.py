"""The README's performance tables: ``fastgd bench --roofline`` in pairs of runs (one thread, then
every core the process may use), repeated, each table cell the median over the pairs.

The machine behind the README is shared with other tenants, and one run can be off by 1.5x in
any cell. A cell's median over ten pairs moves far less; the ranges printed with it show how much
single runs spread. Each run's time is divided by the bound from its own run's GEMM peak before
the median is taken.

Usage::

    python benchmarks/median_tables.py --pairs 10 --out runs/      # run, then summarise (about 5 minutes)
    python benchmarks/median_tables.py --summarize runs/           # summarise pairs already run

Each run is ``python -m fastgd bench --roofline --backends cpp,numba --batch-sizes 1,10,100,1000
--runs 5 --json ...``, first with ``FASTGD_NUM_THREADS=1 NUMBA_NUM_THREADS=1``, then without them;
pair ``i`` is written to ``one_i.json`` and ``all_i.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

THREAD_VARIABLES = ("FASTGD_NUM_THREADS", "NUMBA_NUM_THREADS")
BATCH_SIZES = (1, 10, 100, 1000)


def run_pairs(out: Path, pairs: int, bench_args: Sequence[str]) -> None:
    """Run ``pairs`` pairs of ``fastgd bench --roofline <bench_args>`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    every_core = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    one_thread = {**every_core, **dict.fromkeys(THREAD_VARIABLES, "1")}
    for i in range(1, pairs + 1):
        for name, env in (("one", one_thread), ("all", every_core)):
            path = out / f"{name}_{i}.json"
            cmd = [sys.executable, "-m", "fastgd", "bench", "--roofline", *bench_args, "--json", str(path)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"median_tables: {' '.join(cmd)} failed:\n{res.stderr}")
        print(f"pair {i} of {pairs} done", file=sys.stderr, flush=True)


def load_pairs(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The one-thread and every-core runs in ``out``, in pair order (pairs missing either run are left out)."""
    one, every = [], []
    numbers = sorted(int(p.stem.split("_")[1]) for p in out.glob("one_*.json") if p.stem.split("_")[1].isdigit())
    for i in numbers:
        if (out / f"all_{i}.json").is_file():
            one.append(json.loads((out / f"one_{i}.json").read_text()))
            every.append(json.loads((out / f"all_{i}.json").read_text()))
    if not one:
        raise SystemExit(f"median_tables: no pairs (one_N.json with all_N.json) in {out}")
    return one, every


def _cell(run: dict[str, Any], backend: str, dtype: str, batch: int | None) -> dict[str, Any] | None:
    rows = run["fit"] if batch is not None else run["predict"]
    for r in rows:
        if r["backend"] == backend and r["dtype"] == dtype and (batch is None or r["batch_size"] == batch):
            return r
    return None


def _multiple(run: dict[str, Any], cores: str, cell: dict[str, Any]) -> float:
    """The cell's time over its compute bound at this run's GEMM peak (``cores``: "single" or "multi")."""
    peak = run["roofline"][cores][cell["dtype"]]["gflops"]
    return cell["seconds"] / (cell["flops"] / (peak * 1e9))


def cell_medians(runs: list[dict[str, Any]], cores: str, backend: str, dtype: str,
                 batch: int | None) -> tuple[float, float, float, float] | None:  # fmt: skip
    """Median seconds, then the median, lowest and highest multiple of the bound, over the runs that have
    the cell (``batch`` None: predict)."""
    secs, mults = [], []
    for run in runs:
        cell = _cell(run, backend, dtype, batch)
        if cell is not None:
            secs.append(cell["seconds"])
            mults.append(_multiple(run, cores, cell))
    if not secs:
        return None
    return statistics.median(secs), statistics.median(mults), min(mults), max(mults)


def _seconds(s: float) -> str:
    return f"{s * 1000:.2f} ms" if s < 0.01 else f"{s:.3g} s"


def table(runs: list[dict[str, Any]], cores: str) -> str:
    """A markdown table like the README's: per backend and dtype, each batch size and predict, the median
    seconds and the median multiple of the bound."""
    order = ("cpp", "numba", "numpy")
    backends = sorted({r["backend"] for run in runs for r in run["fit"]},
                      key=lambda b: (order.index(b) if b in order else len(order), b))  # fmt: skip
    dtypes = sorted({r["dtype"] for run in runs for r in run["fit"]})
    batches = sorted({r["batch_size"] for run in runs for r in run["fit"]})
    lines = ["| backend | dtype | " + " | ".join(f"batch {b}" for b in batches) + " | predict |",
             "| --- | --- | " + " | ".join("---:" for _ in batches) + " | ---: |"]  # fmt: skip
    for backend in backends:
        for dtype in dtypes:
            cells = []
            for batch in [*batches, None]:
                m = cell_medians(runs, cores, backend, dtype, batch)
                cells.append("-" if m is None else f"{_seconds(m[0])} ({m[1]:.1f}x)")
            lines.append(f"| {backend} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cell_ratios(runs: list[dict[str, Any]], slow: str = "numba",
                fast: str = "cpp") -> dict[tuple[str, int], list[float]]:  # fmt: skip
    """``slow``'s epoch time over ``fast``'s per (dtype, batch size) both have, one value per run."""
    out: dict[tuple[str, int], list[float]] = {}
    for run in runs:
        times = {(r["backend"], r["dtype"], r["batch_size"]): r["seconds"] for r in run["fit"]}
        for (backend, dtype, batch), seconds in times.items():
            if backend == slow and (fast, dtype, batch) in times:
                out.setdefault((dtype, batch), []).append(seconds / times[(fast, dtype, batch)])
    return out


def ratios(one: list[dict[str, Any]], every: list[dict[str, Any]]) -> list[float]:
    """Numba's epoch time over C++'s, for every run and every cell both have."""
    return [x for runs in (one, every) for values in cell_ratios(runs).values() for x in values]


def summarize(one: list[dict[str, Any]], every: list[dict[str, Any]]) -> str:
    """The two tables, the GEMM peaks, the spread of the C++ float32 cells and the Numba/C++ ratios."""
    parts = [f"{len(one)} pairs; each cell: median seconds (median multiple of the run's own bound)", ""]
    for runs, cores, title in ((one, "single", "One thread"), (every, "multi", "Every core")):
        peaks = {dt: statistics.median(run["roofline"][cores][dt]["gflops"] for run in runs)
                 for dt in runs[0]["roofline"][cores]}  # fmt: skip
        parts.append(f"{title} (GEMM peak medians: " + ", ".join(f"{dt} {p:.0f} GFLOP/s" for dt, p in peaks.items())
                     + ")")  # fmt: skip
        parts += [table(runs, cores), ""]
        spread = []
        for batch in [*sorted({r["batch_size"] for run in runs for r in run["fit"]}), None]:
            m = cell_medians(runs, cores, "cpp", "float32", batch)
            if m is not None:
                spread.append(f"{'predict' if batch is None else f'batch {batch}'} {m[2]:.2f}-{m[3]:.2f}x")
        if spread:
            parts += ["cpp float32 over the runs: " + ", ".join(spread), ""]
    r = ratios(one, every)
    if r:
        per_cell = [statistics.median(x) for runs in (one, every) for x in cell_ratios(runs).values()]
        parts.append(f"numba / cpp epoch time: median {statistics.median(r):.2f}, highest {max(r):.2f}, "
                     f"{sum(x > 2 for x in r)} of {len(r)} above 2; per-cell medians "
                     f"{min(per_cell):.2f}-{max(per_cell):.2f}")  # fmt: skip
        parts += ["", "numba / cpp per cell: median (runs above 2)", "| threads | dtype | batch | ratio |",
                  "| --- | --- | ---: | ---: |"]
        for runs, title in ((one, "one"), (every, "every core")):
            for (dtype, batch), x in sorted(cell_ratios(runs).items()):
                parts.append(f"| {title} | {dtype} | {batch} | {statistics.median(x):.2f} ({sum(v > 2 for v in x)}) |")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=10, help="pairs of runs (default: 10)")
    p.add_argument("--out", type=Path, help="folder for the runs' JSON files")
    p.add_argument("--summarize", type=Path, metavar="DIR", help="only summarise the pairs already in DIR")
    p.add_argument("--backends", default="cpp,numba", help="(default: cpp,numba)")
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="(default: 1,10,100,1000)")
    p.add_argument("--runs", type=int, default=5, help="timed epochs per cell and run (default: 5)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (default: all)")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST (default: $FASTGD_DATA, then the cache)")
    p.add_argument("--gemm-sizes", default=None, help="passed to fastgd bench (default: its own)")
    args = p.parse_args(argv)
    if args.summarize is None:
        if args.out is None:
            p.error("--out is required unless --summarize is given")
        if args.pairs < 1:
            p.error("--pairs must be at least 1")
        bench_args = ["--backends", args.backends, "--batch-sizes", args.batch_sizes, "--runs", str(args.runs)]
        if args.limit:
            bench_args += ["--limit", str(args.limit)]
        if args.data_dir:
            bench_args += ["--data-dir", args.data_dir]
        if args.gemm_sizes:
            bench_args += ["--gemm-sizes", args.gemm_sizes]
        run_pairs(args.out, args.pairs, bench_args)
    print(summarize(*load_pairs(args.summarize or args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
