#!/usr/bin/env bash
# bench/rendezvous_tcp_rate.sh [BINDIR] [ROUNDS] [SECONDS]
#
# Rendezvous TCP message rates on one core (issue 7, the TCP half of
# bench/rendezvous_rate.sh): the server pinned to core 0, the generator
# (punchline-msg-load, bench/msg_load_tcp.c) to core 1, loopback, rounds
# alternating the servers.
#   register   whole registrations per second (connect, ServerHello, Register
#              signed by the generator, RegisterResult, close), 64 in flight;
#              the server verifies one ECDSA P-256 signature per registration
#   keepalive  TCP Keepalive echoes per second: 256 registered control
#              connections, one Keepalive in flight on each
#   stun-tcp   coturn turnserver answering STUN Binding requests over TCP,
#              same 256 connections x 1 in flight: coturn's closest to a
#              keepalive on a TCP connection (coturn has no registration)
# Server and generator CPU seconds are taken over exactly the measured
# seconds (the generator reads /proc/$BENCH_SERVER_PID/stat itself), so the
# reader sees which side was the bottleneck (a side at ~SECONDS is saturated).
# Needs coturn and two cores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
rounds=${2:-3}
secs=${3:-5}
for t in turnserver taskset; do
    command -v "$t" >/dev/null || { echo "rendezvous_tcp_rate.sh: needs $t (apt-get install coturn util-linux)" >&2; exit 2; }
done
for b in punchline-rendezvous punchline-msg-load; do
    [ -x "$bindir/$b" ] || { echo "rendezvous_tcp_rate.sh: no $bindir/$b; build first" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "rendezvous_tcp_rate.sh: needs 2 cores" >&2; exit 2; }

work=$(mktemp -d)
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=lib.sh
. "$here/lib.sh"


field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

run() { # run SERVER MODE ARGS... -> "rate server_cpu gen_cpu extra"
    local srv=$1 port out; shift
    port=$(bench_free_port)
    bench_start_server "$srv" "$port"
    out=$(BENCH_SERVER_PID=$srv_pid taskset -c 1 "$bindir/punchline-msg-load" "127.0.0.1:$port" "$secs" "$@")
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
    echo "$(field rate <<<"$out") $(field server_cpu_s <<<"$out") $(field gen_cpu_s <<<"$out") $(field sign_us <<<"$out")"
}

us() { awk -v c="$1" -v r="$2" -v s="$secs" 'BEGIN { printf "%.1f", c * 1e6 / (r * s) }'; }

echo "machine: $(nproc) cpu, $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r); $(date -u +%F)"
printf '%-5s %-9s %-9s %10s %10s %10s %14s %s\n' round server mode msg/s srv_cpu_s gen_cpu_s srv_us/msg notes
for r in $(seq 1 "$rounds"); do
    read -r rate scpu gcpu sign < <(run punchline register 64)
    printf '%-5s %-9s %-9s %10s %10s %10s %14s %s\n' "$r" punchline register "$rate" "$scpu" "$gcpu" \
        "$(us "$scpu" "$rate")" "generator sign_us=$sign"
    read -r krate scpu gcpu _ < <(run punchline keepalive 256 1)
    printf '%-5s %-9s %-9s %10s %10s %10s %14s\n' "$r" punchline keepalive "$krate" "$scpu" "$gcpu" \
        "$(us "$scpu" "$krate")"
    read -r crate scpu gcpu _ < <(run coturn stun-tcp 256 1)
    printf '%-5s %-9s %-9s %10s %10s %10s %14s %s\n' "$r" coturn stun-tcp "$crate" "$scpu" "$gcpu" \
        "$(us "$scpu" "$crate")" \
        "keepalive/stun-tcp $(awk -v a="$krate" -v b="$crate" 'BEGIN { printf "%.2f", a / b }')"
done
