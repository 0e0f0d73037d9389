"""The CPU's fused multiply-add peak, for comparison with the GEMM peak of ``fastgd bench --roofline``.

    python benchmarks/fma_peak.py [--iterations 30000000]

Compiles (with the C compiler ``cc``, into a temporary folder) a loop of twelve independent
chains of vector FMAs on the widest vectors this CPU has (AVX-512, else AVX2 + FMA), runs it on
one core and then on every core at once, and prints GFLOP/s (2 per lane per FMA), float32 and
float64. No matrix multiply on this CPU can beat these numbers; ``fastgd bench --roofline``
uses the GEMM peak (what a real product reaches) as its bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = r"""
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#ifdef __AVX512F__
#define VS __m512
#define VD __m512d
#define SET_S _mm512_set1_ps
#define SET_D _mm512_set1_pd
#define FMA_S _mm512_fmadd_ps
#define FMA_D _mm512_fmadd_pd
#define ADD_S _mm512_add_ps
#define ADD_D _mm512_add_pd
#define LANES 16
#else
#define VS __m256
#define VD __m256d
#define SET_S _mm256_set1_ps
#define SET_D _mm256_set1_pd
#define FMA_S _mm256_fmadd_ps
#define FMA_D _mm256_fmadd_pd
#define ADD_S _mm256_add_ps
#define ADD_D _mm256_add_pd
#define LANES 8
#endif
#define CHAINS(V, SET, FMA, ADD, lanes)                                                         \
    {                                                                                         \
        V x = SET(1.0000001), y = SET(seed * 1e-9);                                           \
        V a0 = SET(0), a1 = SET(1), a2 = SET(2), a3 = SET(3), a4 = SET(4), a5 = SET(5);      \
        V a6 = SET(6), a7 = SET(7), a8 = SET(8), a9 = SET(9), a10 = SET(10), a11 = SET(11);  \
        double best = 0;                                                                      \
        for (int rep = 0; rep < 5; ++rep) {                                                   \
            double t0 = now();                                                                \
            for (long k = 0; k < n; ++k) {                                                    \
                a0 = FMA(a0, x, y); a1 = FMA(a1, x, y); a2 = FMA(a2, x, y); a3 = FMA(a3, x, y);  \
                a4 = FMA(a4, x, y); a5 = FMA(a5, x, y); a6 = FMA(a6, x, y); a7 = FMA(a7, x, y);  \
                a8 = FMA(a8, x, y); a9 = FMA(a9, x, y); a10 = FMA(a10, x, y); a11 = FMA(a11, x, y); \
            }                                                                                 \
            double r = n * 12.0 * 2 * (lanes) / (now() - t0) / 1e9;                           \
            if (r > best) best = r;                                                           \
        }                                                                                     \
        V s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));             \
        s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                          \
        sink += ((double*)&s)[0];                                                             \
        printf("%.1f\n", best);                                                               \
    }
int main(int argc, char** argv) {
    long n = atol(argv[1]);
    double seed = argc, sink = 0;
    CHAINS(VS, SET_S, FMA_S, ADD_S, LANES)
    CHAINS(VD, SET_D, FMA_D, ADD_D, LANES / 2)
    return sink == 12345.0;
}
"""


def build(folder: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        sys.exit("fma_peak: no C compiler (cc, gcc or clang) found")
    src, exe = folder / "fma_peak.c", folder / "fma_peak"
    src.write_text(SOURCE)
    flags = ["-O2", "-mavx2", "-mfma"]
    if "avx512f" in Path("/proc/cpuinfo").read_text(errors="replace"):
        flags.append("-mavx512f")
    subprocess.run([cc, *flags, str(src), "-o", str(exe)], check=True)
    return exe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=30_000_000, help="loop trips per timing (default 3e7)")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        cmd = [str(exe), str(args.iterations)]
        one = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(cores)]
        every = [proc.communicate()[0].split() for proc in procs]
    isa = "AVX-512" if "avx512f" in Path("/proc/cpuinfo").read_text(errors="replace") else "AVX2"
    print(f"vector FMA peak, GFLOP/s ({isa}):")
    for k, name in enumerate(("float32", "float64")):
        total = sum(float(e[k]) for e in every)
        print(f"  {name}  1 core {float(one[k]):7.1f}   all {cores} cores {total:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
