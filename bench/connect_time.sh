#!/usr/bin/env bash
# bench/connect_time.sh [BINDIR] [RUNS] [RTTS] [TRANSPORTS]
#
# Connect time under delay: how long from the caller's pl_peer_connect() to
# the first authenticated byte (the encrypted channel up), through two real
# port-restricted NATs of the lab (tests/natlab/lib.sh) with delay added on
# both routers (natlab_set_delay, the NFQUEUE delay line natlab-nfq-delay):
#
#   alice 10.0.1.10 -- ra [port-restricted, +D] 203.0.113.11 --+
#                                                               +-- 203.0.113.1 rendezvous
#   bob   10.0.2.10 -- rb [port-restricted, +D] 203.0.113.12 --+
#
# A router delays every packet it forwards by D in each direction, so
# alice <-> rendezvous crosses one router twice per RTT (+2D) and
# alice <-> bob crosses two routers twice (+4D). RTTS (default "0 20 100")
# are target peer-to-peer RTTs in ms: D = RTT/4, and the rendezvous RTT is
# then RTT/2. Both RTTs are measured (UDP echo, python3) for each setting
# and printed next to the results.
#
# For each setting, RUNS times (default 10), each transport of TRANSPORTS
# (default "udp auto") in turn: bob registers and waits; alice calls with
# --transport T -v and both read /dev/null (so they exit right after
# connecting). From alice's log:
#   hs    "connected to bob via PATH ADDR: encrypted (...) (N ms)": N ms from
#         pl_peer_connect() to the encryption handshake done = time to the
#         first authenticated byte;
#   up    "path up to bob via PATH ADDR (N ms; M ms after punch start)":
#         N ms from pl_peer_connect() to the first path verified.
# Floor = RTT_rz + RTT_p2p + 2*RTT_p2p (one RTT to the rendezvous for the
# connect request and PunchStart, one peer-to-peer RTT for the connectivity
# check, two for the DTLS 1.2 handshake), from the measured p50 RTTs;
# ratio = hs / floor.
#
# BINDIR defaults to build/bin and must hold natlab-nfq-delay too (built
# when libnetfilter-queue-dev is installed). Needs root. No internet.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
runs=${2:-10}
rtts=${3:-0 20 100}
transports=${4:-udp auto}
# shellcheck source=../tests/natlab/lib.sh
. "$here/../tests/natlab/lib.sh"
NATLAB_BIN_DIR=$bindir

case $runs in '' | *[!0-9]* | 0) echo "RUNS must be a positive integer" >&2; exit 2 ;; esac
for r in $rtts; do
    case $r in '' | *[!0-9]*) echo "RTTS must be integers (ms), got '$r'" >&2; exit 2 ;; esac
done
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
if ! natlab_delay_available; then
    echo "cannot add delay (see above)" >&2
    exit 77
fi
work=$(mktemp -d)
export XDG_CONFIG_HOME="$work/config" # identity keys stay in the scratch dir
cleanup() { natlab_cleanup; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10

# UDP echo (ECHO_PORT [OPEN_IP OPEN_PORT]: first send one datagram there, to
# open our own NAT towards a peer) and an RTT probe (LPORT IP PORT N: N
# probes, one at a time, prints the median RTT in ms, or "-").
cat >"$work/echo.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
if len(sys.argv) > 3:
    s.sendto(b"open", (sys.argv[2], int(sys.argv[3])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
EOF
cat >"$work/rtt.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(1.0)
rtts = []
for i in range(int(sys.argv[4])):
    tag = b"%d" % i
    t0 = time.monotonic()
    s.sendto(tag, (sys.argv[2], int(sys.argv[3])))
    try:
        while s.recvfrom(2048)[0] != tag:
            pass
        rtts.append((time.monotonic() - t0) * 1000)
    except socket.timeout:
        pass
rtts.sort()
print("%.1f" % rtts[len(rtts) // 2] if rtts else "-")
EOF
natlab_exec inet timeout 3600 python3 "$work/echo.py" 5000 >/dev/null 2>&1 &

bench_lab_rendezvous

# one_run T TAG: prints "PATH HS_MS UP_MS" (fail: "fail - -").
one_run() {
    local t=$1 b="b$2" a="a$2" bpid apid hs up path
    natlab_exec bob "$bindir/punchline-chat" --server 203.0.113.1:7350 --name "$b" \
        --identity "$work/bob.pem" --timeout 30 </dev/null >/dev/null 2>"$work/$b.err" &
    bpid=$!
    if ! bench_wait_grep "$work/$b.err" registered 150; then
        kill "$bpid" 2>/dev/null || true
        wait "$bpid" 2>/dev/null || true
        echo "fail - -"
        return
    fi
    natlab_exec alice "$bindir/punchline-chat" --server 203.0.113.1:7350 --name "$a" --peer "$b" \
        --identity "$work/alice.pem" --transport "$t" --timeout 30 -v </dev/null >/dev/null 2>"$work/$a.err" &
    apid=$!
    wait "$apid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
    hs=$(sed -n 's/.*connected to [^ ]* via \([^ ]*\) .*: encrypted (.*(\([0-9]*\) ms)$/\1 \2/p' "$work/$a.err" | head -n1)
    up=$(sed -n 's/.*path up to [^ ]* via [^ ]* [^ ]* (\([0-9]*\) ms;.*/\1/p' "$work/$a.err" | head -n1)
    if [ -z "$hs" ]; then
        echo "fail - ${up:--}"
        return
    fi
    path=${hs% *}
    echo "$path ${hs#* } ${up:--}"
}

pct() { # pct P values...: nearest-rank percentile of the numeric values, or -
    local p=$1
    shift
    printf '%s\n' "$@" | { grep -E '^[0-9]+$' || true; } | sort -n | awk -v p="$p" '{ v[n++] = $1 }
        END { if (!n) { print "-"; exit } i = int((p * n + 99) / 100) - 1; print v[i < 0 ? 0 : i] }'
}

results=()
for rtt in $rtts; do
    d=$((rtt / 4))
    natlab_set_delay ra "$d"
    natlab_set_delay rb "$d"
    sleep 0.2
    rz_rtt=$(natlab_exec alice python3 "$work/rtt.py" 5001 203.0.113.1 5000 11)
    # bob's echo first sends to alice's (port-preserved) mapping to open rb
    # for alice's probes from port 6000 (ra drops that one as unsolicited);
    # a fresh one per setting, so rb's conntrack entry never times out.
    natlab_exec bob timeout 20 python3 "$work/echo.py" 6000 203.0.113.11 6000 >/dev/null 2>&1 &
    echo_pid=$!
    sleep 0.5
    p2p_rtt=$(natlab_exec alice python3 "$work/rtt.py" 6000 203.0.113.12 6000 11)
    kill "$echo_pid" 2>/dev/null || true
    wait "$echo_pid" 2>/dev/null || true
    echo "setting ~$rtt ms: $d ms on each router; measured p50 RTT alice->rendezvous $rz_rtt ms, alice->bob $p2p_rtt ms"
    declare -A hsv=() upv=() paths=()
    for ((i = 1; i <= runs; i++)); do
        for t in $transports; do
            read -r path hs up <<<"$(one_run "$t" "$rtt-$i-$t")"
            printf '  run %2d %-4s %-10s handshake %5s ms  path up %5s ms\n' "$i" "$t" "$path" "$hs" "$up"
            hsv[$t]="${hsv[$t]:-} $hs"
            upv[$t]="${upv[$t]:-} $up"
            paths[$t]="${paths[$t]:-} $path"
        done
    done
    for t in $transports; do
        # shellcheck disable=SC2086 # space-separated sample lists
        {
            hs50=$(pct 50 ${hsv[$t]})
            hs95=$(pct 95 ${hsv[$t]})
            up50=$(pct 50 ${upv[$t]})
            up95=$(pct 95 ${upv[$t]})
            summary=$(printf '%s\n' ${paths[$t]} | sort | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')
        }
        floor=$(awk -v a="$rz_rtt" -v b="$p2p_rtt" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.1f", a + 3 * b }')
        ratio() { awk -v x="$1" -v f="$floor" 'BEGIN { if (x == "-" || f == "-" || f + 0 == 0) print "-"; else printf "%.1f", x / f }'; }
        results+=("$(printf '| ~%s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s | %s/%s |' \
            "$rtt" "$d" "$rz_rtt" "$p2p_rtt" "$t" "$summary" "$hs50" "$hs95" \
            "$up50" "$up95" "$floor" "$(ratio "$hs50")" "$(ratio "$hs95")")")
    done
    unset hsv upv paths
done
kill "$rz_pid" 2>/dev/null || true
wait "$rz_pid" 2>/dev/null || true

echo
echo "| RTT setting ms | delay per router ms | RTT alice-rendezvous ms | RTT alice-bob ms | transport | path (runs) | handshake done ms p50/p95 | path up ms p50/p95 | floor ms | handshake / floor p50/p95 |"
echo "|---|---:|---:|---:|---|---|---:|---:|---:|---:|"
printf '%s\n' "${results[@]}"
