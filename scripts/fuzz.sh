#!/usr/bin/env bash
# scripts/fuzz.sh - build the libFuzzer targets of tests/fuzz and fuzz them.
#
#   scripts/fuzz.sh [--minutes N | --runs N] [--merge] [TARGET...]
#   scripts/fuzz.sh --build-only
#   scripts/fuzz.sh --seeds          rewrite the generated seeds in tests/fuzz/corpus (gcc build)
#   scripts/fuzz.sh --list
#
# Fuzzes each TARGET (default: all) in turn, one process at a time, for N
# minutes each (default 5) or N executions, under ASan + UBSan
# (-fsanitize=fuzzer,address,undefined), niced.  The committed corpus
# tests/fuzz/corpus/<target> seeds a working copy in $PL_FUZZ_DIR/corpus/<target>,
# which keeps growing across runs; crashes are written to
# $PL_FUZZ_DIR/crashes/<target>/ and stop that target.  --merge adds the inputs
# that reach new coverage to the committed corpus (keep it small: review
# before committing).  At the end one line per target gives the figures
# docs/SECURITY.md "Fuzzing" records.
#
# Needs clang-14 and libclang-rt-14-dev (installed with apt-get when root),
# and the protobuf-c source (Debian's libprotobuf-c is not instrumented, so
# its runtime is compiled in from the source package: `apt-get source`, which
# needs a deb-src entry; added when root and missing).  Nothing here is
# needed by ./scripts/test.sh, which replays the corpora with gcc.
#
#   PL_FUZZ_DIR    work folder (default build-fuzz/ in the repository; git ignores it)
#   PL_FUZZ_JOBS   build jobs (default 2)
#   PL_FUZZ_NICE   nice level of the fuzzing processes (default 10)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
work=${PL_FUZZ_DIR:-$root/build-fuzz}
jobs=${PL_FUZZ_JOBS:-2}
nicelvl=${PL_FUZZ_NICE:-10}
targets_all=(frame udp_demux envelope_tcp envelope_udp envelope_inner stun relay_header names
    peer_id token chat_text share_msg stream)

minutes=5 runs= merge=0 mode=fuzz targets=()
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) minutes=$2; runs=; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    --build-only) mode=build; shift ;;
    --seeds) mode=seeds; shift ;;
    --list) printf '%s\n' "${targets_all[@]}"; exit 0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${targets_all[@]}")
for t in "${targets[@]}"; do
    [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz.sh: no target $t (--list)" >&2; exit 2; }
done

# --seeds: the generator is plain C; any normal build dir will do.
if [ "$mode" = seeds ]; then
    b=$work/seeds-build
    cmake -S . -B "$b" -DPUNCHLINE_EXAMPLES=OFF -DPUNCHLINE_BENCH=OFF >/dev/null
    cmake --build "$b" -j"$jobs" --target fuzz-gen-corpus
    # overwrites the generated files, keeps the others (regression inputs)
    "$b/bin/fuzz-gen-corpus" tests/fuzz/corpus
    echo "fuzz.sh: seeds rewritten in tests/fuzz/corpus ($(find tests/fuzz/corpus -type f | wc -l) files); git status shows what changed"
    exit 0
fi

need_pkgs=()
command -v clang-14 >/dev/null || need_pkgs+=(clang-14)
compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null ||
    need_pkgs+=(libclang-rt-14-dev)
command -v dpkg-source >/dev/null || need_pkgs+=(dpkg-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzz.sh: missing ${need_pkgs[*]}; as root: apt-get install ${need_pkgs[*]}" >&2
        exit 1
    fi
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}"
fi

# protobuf-c runtime source, the version of the installed libprotobuf-c-dev.
pbc_version=$(dpkg-query -W -f='${source:Version}' libprotobuf-c-dev)
pbc_upstream=${pbc_version%-*}
pbc_upstream=${pbc_upstream#*:}
pbc_src=$work/protobuf-c-$pbc_upstream
if [ ! -f "$pbc_src/protobuf-c/protobuf-c.c" ]; then
    mkdir -p "$work/src-download"
    get_source() {
        (cd "$work/src-download" &&
            apt-get source --download-only "protobuf-c=$pbc_version" >/dev/null 2>&1)
    }
    if ! get_source; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "fuzz.sh: apt-get source protobuf-c failed; add a deb-src entry (as root) and retry" >&2
            exit 1
        fi
        # the Debian 12 image lists binary packages only: add their sources
        cat >/etc/apt/sources.list.d/punchline-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update >/dev/null
        get_source || { echo "fuzz.sh: apt-get source protobuf-c failed" >&2; exit 1; }
    fi
    rm -rf "$pbc_src"
    (cd "$work/src-download" &&
        dpkg-source --no-check -x protobuf-c_"${pbc_version#*:}".dsc "$pbc_src" >/dev/null)
fi

build=$work/build
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPUNCHLINE_FUZZ=ON -DPUNCHLINE_PROTOBUF_C_SOURCE="$pbc_src" \
    -DPUNCHLINE_TESTS=OFF -DPUNCHLINE_EXAMPLES=OFF -DPUNCHLINE_BENCH=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target fuzz-all
[ "$mode" = build ] && { echo "fuzz.sh: targets in $build/bin"; exit 0; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$root/tests/fuzz/ubsan.supp}
summary=()
status=0
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t crashes=$work/crashes/$t log=$work/logs/$t-$(date +%Y%m%d-%H%M%S).log
    mkdir -p "$corpus" "$crashes" "$work/logs"
    cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    limit=(-max_total_time=$((minutes * 60)))
    [ -n "$runs" ] && limit=(-runs="$runs")
    # per-target libFuzzer flags, one per line (e.g. -max_len=512)
    opts=()
    [ -f "tests/fuzz/$t.options" ] && mapfile -t opts < "tests/fuzz/$t.options"
    echo "==> $t: ${limit[*]} (log $log)"
    t0=$SECONDS
    rc=0
    nice -n "$nicelvl" "$build/bin/fuzz-$t" "${limit[@]}" "${opts[@]}" -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$corpus" tests/fuzz/corpus/"$t" >"$log" 2>&1 || rc=$?
    secs=$((SECONDS - t0))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    ncorp=$(find "$corpus" -type f | wc -l)
    verdict=ok
    if [ "$rc" -ne 0 ]; then
        verdict="CRASH (exit $rc): $(ls -t "$crashes" | head -1)"
        status=1
        tail -40 "$log"
    fi
    summary+=("$t: ${execs:-?} execs in ${secs}s (${eps:-?}/s), ${cov:-cov ?}, corpus $ncorp, $verdict")
    if [ "$merge" = 1 ] && [ "$rc" -eq 0 ]; then
        nice -n "$nicelvl" "$build/bin/fuzz-$t" -merge=1 tests/fuzz/corpus/"$t" "$corpus" \
            >>"$log" 2>&1
    fi
done
echo
echo "==================== fuzz.sh summary ($(date -u +%Y-%m-%d)) ===================="
printf '  %s\n' "${summary[@]}"
exit $status
