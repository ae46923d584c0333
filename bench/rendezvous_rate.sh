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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        [ -z "$(ss -Htuln "sport = :$p")" ] && { echo "$p"; return; }
    done
}
wait_listen() {
    for _ in $(seq 50); do
        [ -n "$(ss -Huln "sport = :$1")" ] && return 0
        sleep 0.1
    done
    return 1
}

start_server() { # start_server punchline|coturn PORT
    if [ "$1" = coturn ]; then
        taskset -c 0 turnserver -n --listening-ip=127.0.0.1 --listening-port="$2" \
            --relay-ip=127.0.0.1 --no-tls --no-dtls --no-cli -m 1 --simple-log \
            --log-file="$work/turn.log" --no-stdout-log >/dev/null 2>&1 &
    else
        # one load generator = one source address: per-source limits off
        taskset -c 0 "$bindir/punchline-rendezvous" --listen "127.0.0.1:$2" --log-level warn --per-ip-rate 1000000 --per-ip-pending 100000 \
            2>"$work/rz.err" &
    fi
    srv_pid=$!
    wait_listen "$2" || { echo "$1 did not start" >&2; exit 1; }
}

run() { # run SERVER MODE -> "rate cpu_s"
    local port out c0 c1
    port=$(free_port)
    start_server "$1" "$port"
    c0=$(cpu_ticks "$srv_pid")
    out=$(taskset -c 1 "$bindir/punchline-msg-load" "127.0.0.1:$port" "$secs" "$2")
    c1=$(cpu_ticks "$srv_pid")
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
