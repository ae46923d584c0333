#!/usr/bin/env bash
# bench/rendezvous_load.sh [BINDIR] [PEERS] [CONNECTS_PER_S] [SECONDS] [REGS_PER_S] [PROCS]
#
# Bounded load on one punchline-rendezvous over loopback (issue 8, "Load"):
# PEERS peers (default 10000) register for real (TCP control connection,
# ServerHello, signed Register, UdpBind from their own UDP socket with the
# challenge round trip) at REGS_PER_S (default 200: ~70% of what one core
# verifies, docs/BENCHMARKS.md); once all are registered, CONNECTS_PER_S
# (default 1000) connect exchanges per second for SECONDS (default 60): a
# ConnectRequest from one peer to another drawn at random, answered with
# IncomingConnection, Candidates and PunchStart to both sides; all peers
# keep their registration alive meanwhile (TCP Keepalive + UdpBind every
# 15 s). PROCS (default 2) generator processes (punchline-rz-load,
# bench/rz_load.c) share the peers: each holds two sockets per peer and the
# open-file limit is 20000 per process.
#
# Checks (exit 1 if any fails): every peer registered, none failed or was
# dropped; every ConnectRequest got its PunchStart at the caller, and every
# session id reached the caller once and the callee once; no error answers,
# no unexpected message. Prints registration latency (connect start ->
# UdpBound) and connect latency (ConnectRequest -> the caller's PunchStart)
# percentiles over all processes, the server's CPU per phase and its memory.
# The server is pinned to core 0, the generators to core 1 (2 cores).
#
#   bench/rendezvous_load.sh build/bin                       # full size, ~2 min
#   bench/rendezvous_load.sh build/bin 200 100 3 100 2       # a few seconds (ctest)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
peers=${2:-10000}
rate=${3:-1000}
secs=${4:-60}
regrate=${5:-200}
procs=${6:-2}
for b in punchline-rendezvous punchline-rz-load; do
    [ -x "$bindir/$b" ] || { echo "rendezvous_load.sh: no $bindir/$b; build first" >&2; exit 2; }
done
pin_srv=() pin_gen=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_srv=(taskset -c 0) pin_gen=(taskset -c 1)
fi

work=$(mktemp -d)
srv_pid=""
gen_pids=()
cleanup() {
    local p
    for p in "${gen_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=lib.sh
. "$here/lib.sh"

# the server's fds: one per peer and a few; its own limit is what the shell has
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port=$(bench_free_port)
"${pin_srv[@]}" "$bindir/punchline-rendezvous" --listen "127.0.0.1:$port" --log-level warn \
    --per-ip-rate 1000000 --per-ip-pending 100000 --max-peers $((peers + 100)) \
    --max-conns $((peers + 1000)) 2>"$work/rz.err" &
srv_pid=$!
bench_wait_listen "$port" t || { echo "rendezvous did not start:" >&2; cat "$work/rz.err" >&2; exit 1; }

cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$srv_pid/stat"; }
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$srv_pid/status"; }
# server_snapshot: "CPU_S RSS_MB REGISTERED" (the count from its SIGUSR1 stats)
server_snapshot() {
    local c r
    c=$(cpu_s)
    r=$(rss_mb)
    kill -USR1 "$srv_pid"
    sleep 0.3
    echo "$c $r $(sed -n 's/.*stats: peers registered=\([0-9]*\),.*/\1/p' "$work/rz.err" | tail -n1)"
}

per=$((peers / procs))
echo "machine: $(nproc) cpu, $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r); $(date -u '+%F %H:%M UTC')"
echo "load: $peers peers at $regrate registrations/s, then $rate connects/s for $secs s; $procs generator processes"
t_start=$SECONDS
for ((k = 0; k < procs; k++)); do
    n=$per
    [ "$k" -lt $((procs - 1)) ] || n=$((peers - per * (procs - 1)))
    "${pin_gen[@]}" "$bindir/punchline-rz-load" "127.0.0.1:$port" --prefix ld- --first $((k * per)) \
        --count "$n" --total "$peers" \
        --reg-rate "$(awk -v r="$regrate" -v p="$procs" 'BEGIN { print r / p }')" \
        --connect-rate "$(awk -v r="$rate" -v p="$procs" 'BEGIN { print r / p }')" \
        --seconds "$secs" --go "$work/go" --end "$work/end" --out "$work/g$k.out" >"$work/g$k.log" 2>"$work/g$k.err" &
    gen_pids+=($!)
done

# phase 1: until every process has registered its peers
limit=$((peers * 3 / regrate + 60))
while [ "$(cat "$work"/g*.log 2>/dev/null | grep -c '^ready ')" -lt "$procs" ]; do
    for p in "${gen_pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "a generator died while registering:" >&2; cat "$work"/g*.err >&2; exit 1; }
    done
    [ $((SECONDS - t_start)) -lt "$limit" ] || { echo "registration not done after $limit s" >&2; cat "$work"/g*.err >&2; exit 1; }
    sleep 0.2
done
reg_wall=$((SECONDS - t_start))
read -r cpu1 rss1 registered < <(server_snapshot)
touch "$work/go"

# phase 2: connects, until every process printed its counters (and stays
# registered until we have counted the server's peers)
while [ "$(cat "$work"/g*.log | grep -c '^done ')" -lt "$procs" ]; do
    for p in "${gen_pids[@]}"; do
        kill -0 "$p" 2>/dev/null || break 2
    done
    sleep 0.2
done
read -r cpu2 rss2 registered2 < <(server_snapshot)
touch "$work/end"
rc=0
for p in "${gen_pids[@]}"; do wait "$p" || rc=1; done
gen_pids=()

# sum a counter over the processes' "done" lines
sum() { grep -h '^done ' "$work"/g*.log | tr ' ' '\n' | sed -n "s/^$1=//p" | awk '{ s += $1 } END { print s + 0 }'; }
# pcts LETTER: p50 p95 p99 max (ms) of the merged samples
pcts() {
    grep -h "^$1 " "$work"/g*.out | awk '{print $2}' | sort -n |
        awk '{ a[NR] = $1 } END { if (!NR) { print "- - - -"; exit }
             printf "%.2f %.2f %.2f %.2f\n", a[int((NR - 1) * 0.50) + 1], a[int((NR - 1) * 0.95) + 1],
                    a[int((NR - 1) * 0.99) + 1], a[NR] }'
}
connects=$(sum connects)
caller=$(sum punch_caller)
callee=$(sum punch_callee)
checks=0 fails=()
check() { # check OK_EXPR DESCRIPTION
    checks=$((checks + 1))
    if eval "$1"; then :; else fails+=("$2"); fi
}
check '[ "$(sum reg_ok)" = "$peers" ]' "registered $(sum reg_ok) of $peers"
check '[ "$(sum reg_fail)" = 0 ]' "$(sum reg_fail) registrations failed"
check '[ "${registered:-0}" = "$peers" ]' "the server counted ${registered:-?} registered peers after phase 1"
check '[ "${registered2:-0}" = "$peers" ]' "the server counted ${registered2:-?} registered peers at the end"
check '[ "$(sum closed)" = 0 ]' "$(sum closed) registered peers lost their connection"
check '[ "$(sum unexpected)" = 0 ]' "$(sum unexpected) unexpected messages"
check '[ "$(sum errors)" = 0 ]' "$(sum errors) error answers ($(grep -ho ' err[0-9]*=[0-9]*' "$work"/g*.log | tr '\n' ' '))"
check '[ "$connects" -gt 0 ] && [ "$caller" = "$connects" ] && [ "$(sum unanswered)" = 0 ]' \
    "$caller PunchStarts at callers for $connects ConnectRequests"
check '[ "$callee" = "$connects" ]' "$callee PunchStarts at callees for $connects ConnectRequests"
grep -h '^C ' "$work"/g*.out | sort >"$work/c.sids"
grep -h '^E ' "$work"/g*.out | sed 's/^E/C/' | sort >"$work/e.sids"
check '[ -z "$(uniq -d "$work/c.sids")" ] && cmp -s "$work/c.sids" "$work/e.sids"' \
    "the session ids seen by callers and by callees differ (or repeat)"

read -r r50 r95 r99 rmax < <(pcts r)
read -r c50 c95 c99 cmax < <(pcts c)
echo
printf '%-44s %s\n' "peers registered (server count)" "$(sum reg_ok) ($registered, at the end $registered2)"
printf '%-44s %s\n' "registration phase, wall s (offered rate)" "$reg_wall ($regrate/s)"
printf '%-44s %s\n' "registration latency ms p50/p95/p99/max" "$r50 / $r95 / $r99 / $rmax"
printf '%-44s %s\n' "connect exchanges (PunchStart caller/callee)" "$connects ($caller / $callee)"
printf '%-44s %s\n' "connect->punch-start ms p50/p95/p99/max" "$c50 / $c95 / $c99 / $cmax"
printf '%-44s %s\n' "relay offered (of the connects)" "$(sum relay_offered)"
printf '%-44s %s\n' "keepalives sent/echoed, UdpBind sent/bound" "$(sum keepalives)/$(sum echoed), $(sum udpbind)/$(sum udpbound)"
printf '%-44s %s\n' "server CPU s: registration / connect phase" "$cpu1 / $(awk -v a="$cpu1" -v b="$cpu2" 'BEGIN { printf "%.2f", b - a }')"
printf '%-44s %s\n' "server RSS MB: after registration / end" "$rss1 / $rss2"
grep -h '^done ' "$work"/g*.log | sed 's/^/generator: /' | cut -c1-400
if [ "${#fails[@]}" -gt 0 ] || [ "$rc" != 0 ]; then
    for f in "${fails[@]}"; do echo "FAIL: $f"; done
    [ "$rc" = 0 ] || echo "FAIL: a generator exited non-zero"
    head -n 20 "$work"/g*.err "$work/rz.err" >&2
    exit 1
fi
echo "PASS: all $checks checks"
