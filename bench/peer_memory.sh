#!/usr/bin/env bash
# bench/peer_memory.sh [BINDIR] [PEERS] [KINDS] [ROUNDS]
#
# Memory per registered peer at one rendezvous (issue 7): registers N peers
# (PEERS, default "10000 19000"), each with its own TCP control connection
# (KINDS "tcp": registered over TCP only; "udp": also its own UDP socket
# bound with a padded UdpBind and the return-routability challenge), keeps
# them alive (a TCP Keepalive and a UdpBind every 15 s; the server's expiry
# is 60 s), and compares before and after:
#   server  VmRSS, RssAnon (/proc/PID/status): the application's bytes
#   kernel  Slab (/proc/meminfo), TCP/UDP "mem" pages (/proc/net/sockstat),
#           and the slab caches a socket uses (/proc/slabinfo).  These are
#           machine-wide: both ends of every loopback connection, and the
#           generator's UDP sockets, and anything else the shared machine
#           did meanwhile.  The server's own share is 1 TCP socket per peer.
# The holders (punchline-msg-load ... hold, bench/msg_load_tcp.c) need 2 fds
# per peer, so the peers are split over processes of at most PER_PROC
# (default 5000); the server needs 1 fd per peer (its --max-conns and
# --max-peers are raised to fit N).
# Server on core 0, holders on core 1.  Needs root for /proc/slabinfo (the
# slab lines are left out without it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bindir=$(cd "${1:-$here/../build/bin}" && pwd)
peers_list=${2:-"10000 19000"}
kinds=${3:-"tcp udp"}
rounds=${4:-1}
per_proc=${PER_PROC:-5000}
settle=${SETTLE:-5}
for b in punchline-rendezvous punchline-msg-load; do
    [ -x "$bindir/$b" ] || { echo "peer_memory.sh: no $bindir/$b; build first" >&2; exit 2; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
srv_pid=""
gen_pids=()
cleanup() {
    for p in "${gen_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=lib.sh
. "$here/lib.sh"

caches="TCP UDP sock_inode_cache filp dentry eventpoll_epi"
# snapshot FILE: key value lines (kB for status/meminfo, pages for sockstat,
# bytes for slab caches)
snapshot() {
    {
        awk '/^(VmRSS|RssAnon):/ { print $1, $2 }' "/proc/$srv_pid/status"
        awk '/^(Slab|SReclaimable|SUnreclaim):/ { print $1, $2 }' /proc/meminfo
        awk '/^TCP:/ { for (i = 2; i < NF; i++) if ($i == "mem") print "tcp_mem", $(i + 1) }
             /^UDP:/ { for (i = 2; i < NF; i++) if ($i == "mem") print "udp_mem", $(i + 1) }' /proc/net/sockstat
        if [ -r /proc/slabinfo ]; then
            awk -v want=" $caches " 'index(want, " " $1 " ") { print $1, $2 * $4, $2, $4 }
                $1 ~ /^kmalloc-/ { k += $2 * $4 } END { print "kmalloc", k }' /proc/slabinfo
        fi
    } >"$1"
}
val() { awk -v k="$2" '$1 == k || $1 == k ":" { print $2 }' "$1"; }

echo "machine: $(nproc) cpu, $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r); $(date -u +%F); ulimit -n $(ulimit -n)"
printf '%-5s %-4s %6s %-8s %9s %9s %9s %9s %9s %9s  %s\n' round kind peers server \
    rss_B/peer anon_B/peer slab_B/peer tcpmem_B/p udpmem_B/p reg_s "slab caches, bytes/peer (objects/peer)"
for r in $(seq 1 "$rounds"); do
for n in $peers_list; do
for kind in $kinds; do
    port=$(bench_free_port)
    srv=shipped
    # one load generator = one source address: per-source limits off
    taskset -c 0 "$bindir/punchline-rendezvous" --listen "127.0.0.1:$port" --log-level warn --per-ip-rate 1000000 --per-ip-pending 100000 \
        --max-peers $((n + 1000)) --max-conns $((n + 100)) 2>"$work/rz.err" &
    srv_pid=$!
    bench_wait_listen "$port" u || { echo "server did not start" >&2; cat "$work/rz.err" >&2; exit 1; }
    sleep 1
    snapshot "$work/before"
    gen_pids=()
    rm -f "$work"/gen*
    left=$n i=0
    t0=$(date +%s.%N)
    while [ "$left" -gt 0 ]; do
        k=$((left < per_proc ? left : per_proc))
        taskset -c 1 "$bindir/punchline-msg-load" "127.0.0.1:$port" 3600 hold "$k" "$kind" 15 16 \
            >"$work/gen$i.out" 2>"$work/gen$i.err" &
        gen_pids+=($!)
        left=$((left - k)) i=$((i + 1))
    done
    for _ in $(seq 1200); do # 10 minutes at most
        held=$(cat "$work"/gen*.out 2>/dev/null | grep -c '^held=' || true)
        [ "$held" -eq "${#gen_pids[@]}" ] && break
        for p in "${gen_pids[@]}"; do
            kill -0 "$p" 2>/dev/null || { echo "a holder died:" >&2; cat "$work"/gen*.err >&2; exit 1; }
        done
        sleep 0.5
    done
    reg_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
    sleep "$settle"
    snapshot "$work/after"
    kill -USR1 "$srv_pid"; sleep 0.3
    stats=$(grep -o 'peers registered=[0-9]*, connections=[0-9]*' "$work/rz.err" | tail -1)
    for p in "${gen_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    gen_pids=()
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
    per() { # per KEY SCALE: (after - before) * SCALE / n
        awk -v a="$(val "$work/after" "$1")" -v b="$(val "$work/before" "$1")" -v s="$2" -v n="$n" \
            'BEGIN { printf "%.0f", (a - b) * s / n }'
    }
    detail=""
    if [ -r /proc/slabinfo ]; then
        for c in $caches kmalloc; do
            o=$(awk -v a="$(awk -v k="$c" '$1 == k { print $3 }' "$work/after")" \
                    -v b="$(awk -v k="$c" '$1 == k { print $3 }' "$work/before")" -v n="$n" \
                    'BEGIN { if (a != "") printf "(%.2f)", (a - b) / n }')
            detail+="$c $(per "$c" 1)$o "
        done
    fi
    printf '%-5s %-4s %6s %-8s %9s %9s %9s %9s %9s %9s  %s[%s]\n' "$r" "$kind" "$n" "$srv" \
        "$(per VmRSS 1024)" "$(per RssAnon 1024)" "$(per Slab 1024)" "$(per tcp_mem 4096)" \
        "$(per udp_mem 4096)" "$reg_s" "$detail" "$stats"
done
done
done
