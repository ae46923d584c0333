#!/usr/bin/env bash
# bench/punch_time.sh [BINDIR] [RUNS] [TRANSPORTS]
#
# Time from punch-start to an established direct path, through two real
# port-restricted NATs in network namespaces (tests/natlab/lib.sh):
#
#   alice 10.0.1.10 -- ra [port-restricted] 203.0.113.11 --+
#                                                          +-- 203.0.113.1 rendezvous
#   bob   10.0.2.10 -- rb [port-restricted] 203.0.113.12 --+
#
# For each transport in TRANSPORTS (default "tcp udp"), RUNS times (default
# 20), alternating transports run by run so drift hits both alike: bob
# registers and waits, alice calls with --transport T -v; the figure is the
# library's own "N ms after punch start" on alice's "connected to" line
# (punch-start received -> first path verified, measured with the event
# loop's clock). Both chats read /dev/null, so they close and exit right
# after connecting. Prints every sample, then min/p50/p95/max per transport.
#
# BINDIR defaults to build/bin. Needs root (namespaces). No internet: the lab
# is private namespaces only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
runs=${2:-20}
transports=${3:-tcp udp}
# shellcheck source=../tests/natlab/lib.sh
. "$here/../tests/natlab/lib.sh"

case $runs in '' | *[!0-9]* | 0) echo "RUNS must be a positive integer" >&2; exit 2 ;; esac
for t in $transports; do
    case $t in udp | tcp | auto) ;; *) echo "unknown transport '$t' (udp, tcp, auto)" >&2; exit 2 ;; esac
done
for b in punchline-chat punchline-rendezvous; do
    [ -x "$bindir/$b" ] || { echo "no $bindir/$b; build first (cmake --build build)" >&2; exit 2; }
done
if ! natlab_init; then
    echo "needs root and network namespaces" >&2
    exit 77
fi
work=$(mktemp -d)
export XDG_CONFIG_HOME="$work/config"  # identity keys stay in the scratch dir
cleanup() { natlab_cleanup; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10

bench_lab_rendezvous

# one_run T I: prints the punch time in ms, or "fail".
one_run() {
    local t=$1 i=$2 b="b$i$t" a="a$i$t" bpid apid ms
    natlab_exec bob "$bindir/punchline-chat" --server 203.0.113.1:7350 --name "$b" \
        --timeout 20 </dev/null >/dev/null 2>"$work/$b.err" &
    bpid=$!
    if ! bench_wait_grep "$work/$b.err" registered 100; then
        kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
        echo fail; return
    fi
    natlab_exec alice "$bindir/punchline-chat" --server 203.0.113.1:7350 --name "$a" --peer "$b" \
        --transport "$t" --timeout 20 -v </dev/null >/dev/null 2>"$work/$a.err" &
    apid=$!
    wait "$apid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
    ms=$(sed -n 's/.*path up to [^ ]* via direct-[a-z]* .*; \([0-9]*\) ms after punch start).*/\1/p' "$work/$a.err" | head -n1)
    echo "${ms:-fail}"
}

declare -A samples=()
for ((i = 1; i <= runs; i++)); do
    for t in $transports; do
        ms=$(one_run "$t" "$i")
        samples[$t]="${samples[$t]:-} $ms"
        printf 'run %2d %-4s %s\n' "$i" "$t" "$ms"
    done
done
kill "$rz_pid" 2>/dev/null || true
wait "$rz_pid" 2>/dev/null || true

echo
printf '%-9s %5s %5s %5s %5s %5s %5s\n' transport runs fail min p50 p95 max
for t in $transports; do
    # shellcheck disable=SC2086 # the sample list is space separated on purpose
    printf '%s\n' ${samples[$t]} | awk -v t="$t" '
        /^[0-9]+$/ { v[n++] = $1; next }
        { fail++ }
        END {
            if (n == 0) { printf "%-9s %5d %5d %5s %5s %5s %5s\n", "direct-" t, n + fail, fail, "-", "-", "-", "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            # nearest-rank percentiles
            p50 = v[int((50 * n + 99) / 100) - 1]; p95 = v[int((95 * n + 99) / 100) - 1]
            printf "%-9s %5d %5d %5d %5d %5d %5d\n", "direct-" t, n + fail, fail + 0, v[0], p50, p95, v[n - 1]
        }'
done
