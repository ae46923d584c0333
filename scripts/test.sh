#!/usr/bin/env bash
# scripts/test.sh - what CI runs: dependencies, a -Werror build with all tests
# in build/, then the same under AddressSanitizer + UBSan in build-asan/.
#
#   PL_SKIP_ASAN=1   skip the sanitizer build (quick local runs)
#   PL_JOBS=N        parallel build jobs (default 2)
#
# Exits non-zero if any step fails; later steps still run where they make
# sense (an ASan run is useful even when the normal ctest failed), and a short
# summary is printed at the end either way.
set -euo pipefail

cd "$(dirname "$0")/.."

jobs=${PL_JOBS:-2}
steps=()    # "PASS|FAIL|SKIP  description", for the summary
failed=0

summary() {
    local rc=$? s
    trap - EXIT
    echo
    echo "==================== test.sh summary ===================="
    for s in "${steps[@]}"; do
        echo "  $s"
    done
    if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
        echo "  RESULT: FAILED"
        [ "$rc" -ne 0 ] || rc=1
    else
        echo "  RESULT: OK"
    fi
    exit "$rc"
}
trap summary EXIT

# step DESCRIPTION CMD...: run CMD, record the outcome, never abort the script.
step() {
    local what=$1 t0=$SECONDS
    shift
    echo
    echo "==> $what"
    if "$@"; then
        steps+=("PASS  $what ($((SECONDS - t0))s)")
        return 0
    fi
    steps+=("FAIL  $what ($((SECONDS - t0))s)")
    failed=1
    return 1
}
skip() { steps+=("SKIP  $1"); }

# 1. dependencies: nothing else can work without them.
if ! step "dependencies (scripts/deps.sh)" ./scripts/deps.sh; then
    exit 1
fi

# build_and_test DIR LABEL CMAKE_ARGS...: configure, build, ctest.
build_and_test() {
    local dir=$1 label=$2
    shift 2
    if step "$label: configure ($dir)" cmake -S . -B "$dir" "$@" &&
        step "$label: build" cmake --build "$dir" -j"$jobs"; then
        step "$label: ctest" ctest --test-dir "$dir" --output-on-failure || true
    else
        skip "$label: ctest (build failed)"
    fi
}

# 2. normal build, warnings are errors.
build_and_test build "release" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPUNCHLINE_WERROR=ON

# 3. sanitizers: leaks are fatal, UB stops the program with a stack trace.
if [ "${PL_SKIP_ASAN:-0}" = 1 ]; then
    skip "asan: build + ctest (PL_SKIP_ASAN=1)"
else
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    # The release pass moves the NAT-lab share test's full 100 MiB; under
    # the sanitizers the same code paths run on 32 MiB (keeps the suite
    # under 10 minutes).
    export SHARE_LAB_MB=${SHARE_LAB_MB:-32}
    build_and_test build-asan "asan" \
        -DPUNCHLINE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DPUNCHLINE_WERROR=ON
fi

[ "$failed" -eq 0 ]
