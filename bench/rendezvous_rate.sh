#!/usr/bin/env bash
# bench/rendezvous_rate.sh [BINDIR] [ROUNDS] [SECONDS]
#
# Rendezvous message rate on one core, next to coturn in the same run: the
# server pinned to core 0, the generator (punchline-msg-load, bench/msg_load.c)
# to core 1, rounds alternating the servers.
#   stun      STUN Binding requests answered per second: punchline-rendezvous
#             and coturn's turnserver (Binding needs no credentials)
#   udpbind   punchline's UDP keepalive (UdpBind refresh -> UdpBound) per
#             second; coturn has no equivalent message
# Also prints each server's CPU seconds over the run (utime + stime, all
# threads), so an idle-bound figure shows as CPU well under the run time.
# Needs coturn and two cores. Loopback only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
rounds=${2:-3}
secs=${3:-5}
for t in turnserver taskset; do
    command -v "$t" >/dev/null || { echo "rendezvous_rate.sh: needs $t (apt-get install coturn util-linux)" >&2; exit 2; }
done
for b in punchline-rendezvous punchline-msg-load; do
    [ -x "$bindir/$b" ] || { echo "rendezvous_rate.sh: no $bindir/$b; build first" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "rendezvous_rate.sh: needs 2 cores" >&2; exit 2; }

work=$(mktemp -d)
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
# shellcheck source=lib.sh
. "$here/lib.sh"

run() { # run SERVER MODE -> "rate cpu_s"
    local port out c0 c1
    port=$(bench_free_port)
    bench_start_server "$1" "$port"
    c0=$(bench_cpu_ticks "$srv_pid")
    out=$(taskset -c 1 "$bindir/punchline-msg-load" "127.0.0.1:$port" "$secs" "$2")
    c1=$(bench_cpu_ticks "$srv_pid")
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
    awk -v c=$((c1 - c0)) -v t="$tck" '{ for (i = 1; i <= NF; i++) if ($i ~ /^rate=/) r = substr($i, 6) }
        END { printf "%s %.2f\n", r, c / t }' <<<"$out"
}

printf '%-6s %-10s %-8s %12s %8s\n' round server mode answers/s cpu_s
for r in $(seq 1 "$rounds"); do
    read -r prate pcpu < <(run punchline stun)
    printf '%-6s %-10s %-8s %12s %8s\n' "$r" punchline stun "$prate" "$pcpu"
    read -r crate ccpu < <(run coturn stun)
    printf '%-6s %-10s %-8s %12s %8s   punchline/coturn %s\n' "$r" coturn stun "$crate" "$ccpu" \
        "$(awk -v a="$prate" -v b="$crate" 'BEGIN { printf "%.2f", a / b }')"
    read -r urate ucpu < <(run punchline udpbind)
    printf '%-6s %-10s %-8s %12s %8s\n' "$r" punchline udpbind "$urate" "$ucpu"
done
