#!/usr/bin/env bash
# Memory safety of fastgd's C++ core (README, "What fastgd guarantees"; issue 6):
#
#   1. a throwaway virtual environment in a temporary folder (nothing outside it is installed to:
#      not the interpreter's site-packages, not anyone's editable install, not the repo's build/);
#   2. fastgd built from this checkout with -Ccmake.define.FASTGD_SANITIZE=ON (AddressSanitizer +
#      UndefinedBehaviorSanitizer, RelWithDebInfo for file:line in reports) and the test extras;
#   3. the test suite (-m "not slow") under the sanitizers, every backend included; then the C++
#      backend's tests again with each other instruction set this CPU runs (FASTGD_ISA), since
#      the baseline, AVX2 and AVX-512 kernels are separate builds with different block sizes;
#   4. fastgd rebuilt without sanitizers (the Release build users get) in the same environment,
#      and tests/memory_growth.py: 10,000 fit/predict iterations must not grow RSS or tracemalloc.
#
# Usage:  tests/sanitize.sh               (FASTGD_DATA=/path/to/mnist runs the real-data tests too)
# Environment (all optional):
#   FASTGD_DATA              passed through to the tests
#   PYTHON                   interpreter the virtual environment is made from (default python3)
#   CXX                      compiler whose sanitizer runtimes are preloaded (default g++; must be
#                            the one CMake builds with)
#   SANITIZE_WORKDIR         reuse this folder (venv, build trees) for fast incremental re-runs;
#                            default: a new temporary folder, deleted afterwards if all passed
#   SANITIZE_KEEP=1          keep the temporary folder even when all passed
#   SANITIZE_TEST_TIMEOUT    seconds allowed for each pytest run (default 1800)
#
# Exit status: 0 when every test passed, no sanitizer reported anything and memory did not grow;
# 1 on any finding (the summary at the end says which); 2 when the harness itself failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
CXX_FOR_RUNTIME=${CXX:-g++}
TEST_TIMEOUT=${SANITIZE_TEST_TIMEOUT:-1800}
t_start=$SECONDS

die() { echo "sanitize.sh: $*" >&2; exit 2; }
phase() { printf '\n== %s\n' "$*"; }
elapsed() { echo $((SECONDS - $1)); }

# ---- work folder ---------------------------------------------------------------------------
if [[ -n ${SANITIZE_WORKDIR:-} ]]; then
  work=$(mkdir -p "$SANITIZE_WORKDIR" && cd "$SANITIZE_WORKDIR" && pwd)
  remove_work=0
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/fastgd-sanitize.XXXXXX")
  remove_work=1
fi
[[ ${SANITIZE_KEEP:-0} == 1 ]] && remove_work=0
status=2  # until the summary decides
# shellcheck disable=SC2317  # (called by the EXIT trap)
cleanup() {
  if [[ $status == 0 && $remove_work == 1 ]]; then
    rm -rf "$work"
  else
    echo "sanitize.sh: work folder kept: $work" >&2
  fi
}
trap cleanup EXIT
venv="$work/venv"
vpy="$venv/bin/python"
logs="$work/logs"
sanlogs="$work/sanitizer-reports"
rm -rf "$logs" "$sanlogs" "$work/junit" "$work/cache"
mkdir -p "$logs" "$sanlogs" "$work/junit" "$work/cache"

# A clean, non-interactive environment: nothing from the caller's Python setup leaks in.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE PIP_USER PIP_TARGET PIP_PREFIX VIRTUAL_ENV
unset FASTGD_BACKEND FASTGD_ISA FASTGD_EXPECT_BACKENDS LD_PRELOAD
export PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off PIP_REQUIRE_VIRTUALENV=1
export FASTGD_CACHE_DIR="$work/cache" NUMBA_CACHE_DIR="$work/cache/numba"
if [[ -n ${FASTGD_DATA:-} ]]; then
  export FASTGD_DATA
  [[ -d $FASTGD_DATA ]] || die "FASTGD_DATA=$FASTGD_DATA is not a folder"
fi

# ---- sanitizer runtimes ----------------------------------------------------------------------
# Python is not linked against ASan, so its runtime must be preloaded. libstdc++ is preloaded
# with it: ASan resolves the real __cxa_throw when it starts, and without libstdc++ already
# loaded at that point the first C++ exception (every ValueError the bindings raise) aborts with
# "CHECK failed: ... real___cxa_throw". libubsan needs no preloading: it is a DT_NEEDED of _core.
runtime() {
  local f
  f=$("$CXX_FOR_RUNTIME" -print-file-name="$1") || die "$CXX_FOR_RUNTIME -print-file-name=$1 failed"
  [[ $f == /* && -e $f ]] || die "$CXX_FOR_RUNTIME does not ship $1 (install its sanitizer runtime, e.g. libasan8)"
  readlink -f "$f"
}
command -v "$CXX_FOR_RUNTIME" >/dev/null || die "no C++ compiler $CXX_FOR_RUNTIME"
command -v readelf >/dev/null || die "readelf (binutils) is needed"
libasan=$(runtime libasan.so)
libstdcxx=$(runtime libstdc++.so)
PRELOAD="$libasan:$libstdcxx"
# detect_leaks=0: CPython does not free everything at exit. allocator_may_return_null=1: a huge
# allocation fails as it does without ASan (MemoryError), which the tests check. abort_on_error:
# a report kills the process with SIGABRT, so faulthandler names the running test. ASan writes
# its reports to files (log_path), subprocesses' included; UBSan ignores log_path in this
# combination and writes to file descriptor 2, which run_pytest therefore leaves uncaptured.
ASAN_OPTS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
ASAN_OPTS+=":detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
ASAN_OPTS+=":log_path=$sanlogs/asan"
UBSAN_OPTS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
# PYTHONMALLOC=malloc lets ASan see Python objects too, so an overflow from C++ into one is caught.
SAN_ENV=(LD_PRELOAD="$PRELOAD" ASAN_OPTIONS="$ASAN_OPTS" UBSAN_OPTIONS="$UBSAN_OPTS" PYTHONMALLOC=malloc)
sanitized() { env "${SAN_ENV[@]}" "$@"; }

revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')
[[ -z $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
  revision+=", with uncommitted changes"
echo "fastgd sanitizer run"
echo "  repo:       $root ($revision)"
echo "  work:       $work"
echo "  python:     $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
echo "  compiler:   $("$CXX_FOR_RUNTIME" --version | head -1)"
echo "  preload:    $PRELOAD"
echo "  FASTGD_DATA=${FASTGD_DATA:-(unset: the real-MNIST tests skip)}"

# ---- 1. virtual environment ------------------------------------------------------------------
phase "1. virtual environment"
[[ -x $vpy ]] || "$PYTHON" -m venv "$venv"
echo "$("$vpy" -c 'import sys; print(sys.prefix)') ($("$vpy" -m pip --version | cut -d' ' -f1-2))"

# ---- 2. sanitized build ----------------------------------------------------------------------
phase "2. build and install fastgd[test] with FASTGD_SANITIZE=ON (RelWithDebInfo)"
t=$SECONDS
if ! "$vpy" -m pip install "${root}[test]" \
     -Cbuild-dir="$work/build-sanitize" \
     -Ccmake.define.FASTGD_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo >"$logs/build-sanitize.log" 2>&1; then
  tail -40 "$logs/build-sanitize.log"; die "the sanitized build failed (log: $logs/build-sanitize.log)"
fi
t_build_san=$(elapsed $t)
echo "built in ${t_build_san} s"

check_install() {  # $1 = sanitized|plain: the installed extension is the one just built
  local so dyn need have syms run=()
  [[ $1 == sanitized ]] && run=(env "${SAN_ENV[@]}")
  so=$("${run[@]}" "$vpy" -c 'import fastgd._core as c; print(c.__file__)') || die "fastgd._core does not import"
  [[ $so == "$venv"/* ]] || die "fastgd._core was imported from $so, not from the throwaway environment"
  dyn=$(readelf -d "$so")
  if [[ $1 == sanitized ]]; then
    need=$(sed -n 's/.*NEEDED.*\[\(libasan[^]]*\)\].*/\1/p' <<<"$dyn")
    [[ -n $need ]] || die "$so is not linked against libasan: FASTGD_SANITIZE had no effect"
    grep -q 'NEEDED.*libubsan' <<<"$dyn" || die "$so is not linked against libubsan"
    have=$(readelf -d "$libasan" | sed -n 's/.*SONAME.*\[\(.*\)\].*/\1/p')
    [[ $need == "$have" ]] || die "$so needs $need but $CXX_FOR_RUNTIME's runtime is $have: set CXX to the compiler CMake used"
    syms=$(nm -D "$so")
    echo "instrumented: $(basename "$so") needs $need and libubsan; imports $(grep -c '__asan_report' <<<"$syms") ASan" \
      "report functions and $(grep -c '__ubsan_handle' <<<"$syms") UBSan handlers"
  else
    ! grep -q 'NEEDED.*libasan' <<<"$dyn" || die "$so is still the sanitized build"
    echo "not instrumented: $(basename "$so")"
  fi
}
check_install sanitized

# ---- self-check: a report must fail the run and be recorded ----------------------------------
phase "sanitizer self-check (a deliberate heap overflow through ctypes must be caught)"
canary='import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p
a, b = libc.malloc(16), libc.malloc(64); ctypes.memmove(b, a, 32); print("not caught")'
if (cd "$work" && sanitized "$vpy" -c "$canary") >"$logs/canary.log" 2>&1; then
  die "the canary's heap overflow was not caught: the sanitizer harness does not work"
fi
grep -qs 'heap-buffer-overflow' "$sanlogs"/asan.* || die "the canary was not reported in $sanlogs"
rm -f "$sanlogs"/*
echo "caught (heap-buffer-overflow reported, process aborted)"

# ---- 3. the tests under the sanitizers -------------------------------------------------------
declare -a run_names=() run_counts=() run_rcs=() run_secs=() run_logs=()
counts() {  # junit xml -> "P passed, F failed, E errors, S skipped" (stdlib only, no preload)
  "$vpy" - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("no result (the run crashed or timed out)"); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(f"{n['tests'] - n['failures'] - n['errors'] - n['skipped']} passed, {n['failures']} failed, "
      f"{n['errors']} errors, {n['skipped']} skipped")
PY
}
run_pytest() {  # name, extra env (k=v ...), --, pytest arguments
  local name=$1; shift
  local -a envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local slug=${name//[^A-Za-z0-9]/_} t=$SECONDS rc=0
  local xml="$work/junit/$slug.xml" log="$logs/pytest-$slug.log"
  echo "-- $name"
  # --capture=sys, not pytest's default fd capture: UBSan writes its reports to file descriptor 2
  # (it ignores log_path next to ASan here), and a report written into pytest's capture file is
  # lost when the process aborts.
  (cd "$root" && timeout --signal=INT --kill-after=30 "$TEST_TIMEOUT" env "${envs[@]}" "${SAN_ENV[@]}" \
     "$vpy" -m pytest -p no:cacheprovider -q --capture=sys --junitxml="$xml" "$@") 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  run_names+=("$name"); run_rcs+=("$rc"); run_secs+=($((SECONDS - t))); run_counts+=("$(counts "$xml")")
  run_logs+=("$log")
}

phase "3. the test suite under ASan + UBSan"
isa_info=$(sanitized "$vpy" -c 'import fastgd._core as c; i = c.build_info(); print(i["isa"], *i["isas_supported"])')
read -r active_isa supported_isas <<<"$isa_info"
echo "instruction sets: active $active_isa; supported: $supported_isas"
run_pytest "full suite, isa $active_isa" FASTGD_EXPECT_BACKENDS=cpp,numba,numpy -- tests -m "not slow"
cpp_tests=(tests/test_bindings.py tests/test_backends_reference.py tests/test_gradcheck.py tests/test_network.py)
for isa in $supported_isas; do
  [[ $isa == "$active_isa" ]] && continue
  got=$(sanitized env FASTGD_ISA="$isa" "$vpy" -c 'import fastgd._core as c; print(c.build_info()["isa"])')
  [[ $got == "$isa" ]] || die "FASTGD_ISA=$isa gave $got"
  run_pytest "cpp tests, isa $isa" FASTGD_ISA="$isa" FASTGD_EXPECT_BACKENDS=cpp -- \
    "${cpp_tests[@]}" -m "not slow" -k "not numba and not numpy"
done

# ---- 4. memory growth on the normal build ----------------------------------------------------
# The normal build, not the sanitized one: ASan keeps freed memory in quarantine and pads every
# allocation, so RSS under it says little about the build users run.
phase "4. rebuild without sanitizers (Release) and run tests/memory_growth.py"
t=$SECONDS
if ! "$vpy" -m pip install --no-deps --force-reinstall "$root" \
     -Cbuild-dir="$work/build-plain" >"$logs/build-plain.log" 2>&1; then
  tail -40 "$logs/build-plain.log"; die "the normal build failed (log: $logs/build-plain.log)"
fi
t_build_plain=$(elapsed $t)
echo "built in ${t_build_plain} s"
check_install plain
t=$SECONDS
mem_rc=0
(cd "$work" && "$vpy" "$root/tests/memory_growth.py") 2>&1 | tee "$logs/memory.log" || mem_rc=${PIPESTATUS[0]}
t_mem=$(elapsed $t)

# ---- summary ---------------------------------------------------------------------------------
brief() {  # the gist of a sanitizer report on stdin: what, the first frames, ASan's summary line
  awk '/ERROR: AddressSanitizer|runtime error:|Sanitizer CHECK failed/ { print; n = 8; next }
       n > 0 && /^ +#[0-9]+ / { print; n--; next }
       /^SUMMARY: / { print }' | cut -c1-240
}
reports=()
for f in "$sanlogs"/*; do [[ -e $f ]] && reports+=("$f"); done
in_output=$(cat "${run_logs[@]}" /dev/null | grep -c -E 'ERROR: AddressSanitizer|runtime error:|Sanitizer CHECK failed' || true)
phase "summary"
failed=0
echo "sanitized build: ${t_build_san} s; normal build: ${t_build_plain} s"
for k in "${!run_names[@]}"; do
  verdict=ok
  if [[ ${run_rcs[$k]} != 0 ]]; then
    failed=1
    verdict="FAILED (exit ${run_rcs[$k]})"
    # A sanitizer abort kills pytest: name the test that was running (from faulthandler's traceback).
    crashed=$(grep -A40 '^Fatal Python error' "${run_logs[$k]}" | grep -m1 -o 'tests/test_[^"]*", line [0-9]* in [A-Za-z0-9_]*' || true)
    [[ -z $crashed ]] || verdict+="; crashed in $crashed"
  fi
  printf 'tests under ASan+UBSan, %s: %s in %s s: %s\n' "${run_names[$k]}" "${run_counts[$k]}" "${run_secs[$k]}" "$verdict"
done
if ((${#reports[@]} == 0 && in_output == 0)); then
  echo "sanitizer reports: none"
else
  failed=1
  echo "sanitizer reports: ${#reports[@]} ASan report file(s), $in_output report(s) in the test output (UBSan's):"
  for f in "${reports[@]}"; do echo "---- $f"; brief <"$f"; done
  for f in "${run_logs[@]}"; do
    grep -q -E 'ERROR: AddressSanitizer|runtime error:|Sanitizer CHECK failed' "$f" || continue
    echo "---- $f"; brief <"$f"
  done
fi
grep '^memory: \(RSS\|tracemalloc\)' "$logs/memory.log" | sed 's/^memory: /memory (normal build, 10,000 iterations): /' || true
if [[ $mem_rc == 0 ]]; then
  echo "memory growth check: ok in ${t_mem} s"
else
  echo "memory growth check: FAILED (exit $mem_rc) in ${t_mem} s"
  failed=1
fi
echo "total: $(elapsed $t_start) s (logs: $logs)"
if ((failed)); then
  echo "RESULT: FAIL"
  status=1
else
  echo "RESULT: PASS"
  status=0
fi
exit $status
