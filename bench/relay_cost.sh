#!/usr/bin/env bash
# bench/relay_cost.sh [BINDIR] [ROUNDS]
#
# Relay cost on loopback: server CPU time per relayed packet and saturation
# throughput, punchline-rendezvous next to coturn's turnserver in the same
# run. Each server is pinned to core 0 and its load generator to core 1
# (taskset); rounds alternate the servers so drift hits both alike.
#
# Per round:
#  coturn   turnserver (UDP, long-term credentials, one relay thread) and
#           turnutils_uclient -y (client-to-client: 100 clients pair up and
#           send 3000 messages of 100 bytes each through their allocations).
#           A message from client A to client B crosses the server twice
#           (A -> A's allocation -> B's allocation -> B): the per-message
#           figure covers both, the per-hop figure is half of it.
#  pl-paced punchline-rendezvous with punchline-relay-load at the message rate
#           coturn delivered in this round (one relay hop per message: the
#           rendezvous forwards a peer's datagram straight to the other peer).
#  pl-sat   punchline-relay-load as fast as the relay forwards (window 2048).
#  raw-paced, raw-sat  the same load through punchline-udp-forward (plain
#           recvmmsg/sendmmsg between two addresses, no parsing, no checks):
#           the floor any UDP relay on this kernel pays.
# CPU = utime + stime of the server process (all threads) over the load,
# from /proc/PID/stat; messages = those that arrived.
#
# Needs coturn (turnserver, turnutils_uclient) and two cores. Loopback only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
rounds=${2:-3}
for t in turnserver turnutils_uclient taskset; do
    command -v "$t" >/dev/null || { echo "relay_cost.sh: needs $t (apt-get install coturn util-linux)" >&2; exit 2; }
done
for b in punchline-rendezvous punchline-relay-load punchline-udp-forward; do
    [ -x "$bindir/$b" ] || { echo "relay_cost.sh: no $bindir/$b; build first" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "relay_cost.sh: needs 2 cores" >&2; exit 2; }

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

run_coturn() {
    local port out sent recv secs c0 c1
    port=$(bench_free_port)
    taskset -c 0 turnserver -n --listening-ip=127.0.0.1 --listening-port="$port" --relay-ip=127.0.0.1 \
        --allow-loopback-peers --no-tls --no-dtls --no-cli -m 1 --user=bench:bench --realm=bench \
        --lt-cred-mech --simple-log --log-file="$work/turn.log" --no-stdout-log >/dev/null 2>&1 &
    srv_pid=$!
    bench_wait_listen "$port" u || { echo "turnserver did not start" >&2; exit 1; }
    c0=$(bench_cpu_ticks "$srv_pid")
    out=$(taskset -c 1 turnutils_uclient -y -u bench -w bench -m 100 -n 3000 -l 100 -z 0 -p "$port" 127.0.0.1 2>&1)
    c1=$(bench_cpu_ticks "$srv_pid")
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
    recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\)$/\2/p' <<<"$out" | tail -n1)
    sent=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\)$/\1/p' <<<"$out" | tail -n1)
    secs=$(sed -n 's/.*Total transmit time is \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)
    [ -n "$recv" ] && [ "$recv" -gt 0 ] || { echo "uclient output not understood:" >&2; tail -5 <<<"$out" >&2; exit 1; }
    echo "$sent $recv $secs $((c1 - c0))"
}

run_punchline() { # PPS (0 = saturation) SECONDS
    local port out c0 c1
    port=$(bench_free_port)
    taskset -c 0 "$bindir/punchline-rendezvous" --listen "127.0.0.1:$port" --relay-session-rate 0 \
        --relay-bandwidth 0 --log-level warn 2>"$work/rz.err" &
    srv_pid=$!
    bench_wait_listen "$port" u || { echo "punchline-rendezvous did not start" >&2; exit 1; }
    c0=$(bench_cpu_ticks "$srv_pid")
    out=$(taskset -c 1 "$bindir/punchline-relay-load" "127.0.0.1:$port" "$2" 100 2048 "$1")
    c1=$(bench_cpu_ticks "$srv_pid")
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
    # sent received seconds cputicks
    sed -n 's/^sent=\([0-9]*\) received=\([0-9]*\) seconds=\([0-9.]*\) .*/\1 \2 \3/p' <<<"$out" | tr '\n' ' '
    echo "$((c1 - c0))"
}

run_raw() { # PPS (0 = saturation) SECONDS: the plain UDP forwarder, same load
    local port out c0 c1
    port=$(bench_free_port)
    taskset -c 0 "$bindir/punchline-udp-forward" "127.0.0.1:$port" &
    srv_pid=$!
    bench_wait_listen "$port" u || { echo "punchline-udp-forward did not start" >&2; exit 1; }
    c0=$(bench_cpu_ticks "$srv_pid")
    out=$(taskset -c 1 "$bindir/punchline-relay-load" --raw "127.0.0.1:$port" "$2" 100 2048 "$1")
    c1=$(bench_cpu_ticks "$srv_pid")
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
    sed -n 's/^sent=\([0-9]*\) received=\([0-9]*\) seconds=\([0-9.]*\) .*/\1 \2 \3/p' <<<"$out" | tr '\n' ' '
    echo "$((c1 - c0))"
}

# calc EXPR: floating point arithmetic, 2 decimals
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
us_per() { calc "$1 * 1000000 / $tck / $2"; }

printf '%-6s %-9s %9s %9s %7s %9s %8s %10s\n' round server sent recv secs msg/s cpu_s us/msg
for r in $(seq 1 "$rounds"); do
    read -r cs cr csec cc < <(run_coturn)
    rate=$((cr / (csec > 0 ? csec : 1)))
    printf '%-6s %-9s %9s %9s %7s %9s %8s %10s  (%s us per relay hop)\n' "$r" coturn "$cs" "$cr" "$csec" "$rate" \
        "$(calc "$cc / $tck")" "$(us_per "$cc" "$cr")" "$(calc "$(us_per "$cc" "$cr") / 2")"
    read -r ps pr psec pc < <(run_punchline "$rate" 10)
    printf '%-6s %-9s %9s %9s %7s %9s %8s %10s\n' "$r" pl-paced "$ps" "$pr" "$psec" \
        "$(calc "$pr / $psec")" "$(calc "$pc / $tck")" "$(us_per "$pc" "$pr")"
    read -r ss sr ssec sc < <(run_punchline 0 5)
    printf '%-6s %-9s %9s %9s %7s %9s %8s %10s\n' "$r" pl-sat "$ss" "$sr" "$ssec" \
        "$(calc "$sr / $ssec")" "$(calc "$sc / $tck")" "$(us_per "$sc" "$sr")"
    read -r xs xr xsec xc < <(run_raw "$rate" 10)
    printf '%-6s %-9s %9s %9s %7s %9s %8s %10s\n' "$r" raw-paced "$xs" "$xr" "$xsec" \
        "$(calc "$xr / $xsec")" "$(calc "$xc / $tck")" "$(us_per "$xc" "$xr")"
    read -r ys yr ysec yc < <(run_raw 0 5)
    printf '%-6s %-9s %9s %9s %7s %9s %8s %10s\n' "$r" raw-sat "$ys" "$yr" "$ysec" \
        "$(calc "$yr / $ysec")" "$(calc "$yc / $tck")" "$(us_per "$yc" "$yr")"
done
