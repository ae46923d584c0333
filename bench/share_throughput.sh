#!/usr/bin/env bash
# bench/share_throughput.sh [BINDIR] [--mb M] [--runs R] [--loss PCT] [--no-lab] [--no-loopback]
#
# File-transfer throughput of punchline-share per path, next to raw iperf3
# and the mbedTLS AEAD ceiling measured in the same run (docs/BENCHMARKS.md,
# issue 6).  A file of M MB (default 1000, random bytes) in tmpfs
# (/dev/shm, so the disk is out of the picture) goes from alice to bob:
#
#   loopback (127.0.0.1): direct-udp, direct-tcp, relay-udp;
#                         iperf3 TCP and UDP (-b 0 -l 1200) for 5 s each;
#   NAT lab (root; tests/natlab/lib.sh): alice behind ra, bob behind rb, both
#                         port-restricted, the rendezvous at 203.0.113.1:
#                         direct-udp, direct-tcp and relay-udp without loss,
#                         direct-udp and direct-tcp again with PCT% (default
#                         2) loss each way between the two routers
#                         (`nft ... numgen random mod 100 < PCT drop` on ra,
#                         for packets to and from rb); iperf3 TCP alice ->
#                         203.0.113.1 (through ra) with and without the loss
#                         rule (aimed at 203.0.113.1 then).  All of it twice:
#                         "lab" with the kernel's segmentation offloads (a
#                         GSO/TSO batch crosses the routers, and the loss
#                         rule, as one packet) and "lab-perpkt" with
#                         gso_max_segs 1 on the hosts (per-packet, as on a
#                         real network);
#   punchline-secure-bench aead 1200 3: ChaCha20-Poly1305 and AES-128-GCM
#                         seal and open of 1200-byte records, one core.
#
# Per transfer: the MBps figure each side prints on its final line (bytes /
# seconds from the moment the transfer started to the hash verdict, MB =
# 10^6 bytes), wall seconds from starting the sender to its exit, and CPU
# seconds of each side.  Both ends' hashes must match the file.  The
# rendezvous runs with its relay rate limits off (--relay-session-rate 0
# --relay-bandwidth 0) so the relay figure is the path, not the policy.
#
# Needs iperf3 (Debian package iperf3; the script says so if missing) and
# GNU time.  Loopback needs no root; the lab part is skipped without it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bindir=$here/../build/bin
mb=1000
runs=1
loss=2
do_lab=1
do_loop=1
while [ $# -gt 0 ]; do
    case $1 in
    --mb) mb=${2:-}; shift 2 ;;
    --runs) runs=${2:-}; shift 2 ;;
    --loss) loss=${2:-}; shift 2 ;;
    --no-lab) do_lab=0; shift ;;
    --no-loopback) do_loop=0; shift ;;
    -h | --help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) bindir=$1; shift ;;
    esac
done
for v in "$mb" "$runs" "$loss"; do
    case $v in '' | *[!0-9]*) echo "--mb, --runs and --loss take integers" >&2; exit 2 ;; esac
done
[ "$mb" -gt 0 ] && [ "$runs" -gt 0 ] || { echo "--mb and --runs must be positive" >&2; exit 2; }
bindir=$(cd "$bindir" && pwd)
for b in punchline-share punchline-rendezvous punchline-secure-bench; do
    [ -x "$bindir/$b" ] || { echo "no $bindir/$b; build first (cmake --build build)" >&2; exit 2; }
done
command -v iperf3 >/dev/null ||
    { echo "needs iperf3: apt-get install iperf3 (Debian package)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 2; }

work=$(mktemp -d /dev/shm/punchline-share-bench.XXXXXX)
export XDG_CONFIG_HOME="$work/config" # identity keys stay in the scratch dir
pids=()
lab_up=0
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "$lab_up" = 1 ] && natlab_cleanup
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -r), $(nproc) cores, $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# file: $mb MB of random bytes in $work"
head -c "$((mb * 1000000))" /dev/urandom >"$work/file"
want=$(sha256sum "$work/file" | cut -d' ' -f1)

# run NS CMD...: CMD on the host (NS = -) or in a lab namespace.
run() {
    local ns=$1
    shift
    if [ "$ns" = - ]; then "$@"; else natlab_exec "$ns" "$@"; fi
}

# xfer SETTING TRANSPORT SERVER NS_SEND NS_RECV: one transfer; prints a
# result line and appends it to $work/results.
xfer() {
    local setting=$1 t=$2 server=$3 nss=$4 nsr=$5 tag rpid rc=0 line
    tag="x$RANDOM"
    rm -rf "$work/out"
    mkdir -p "$work/out"
    run "$nsr" /usr/bin/time -f "cpu %U %S" -o "$work/recv.time" "$bindir/punchline-share" recv \
        --server "$server" --name "b$tag" --out "$work/out" --identity "$work/bob.pem" \
        --timeout 60 >"$work/recv.out" 2>"$work/recv.err" &
    rpid=$!
    if ! bench_wait_grep "$work/recv.err" 'waiting for a file' 100; then
        echo "receiver did not register:" >&2
        cat "$work/recv.err" >&2
        kill "$rpid" 2>/dev/null || true
        return 0
    fi
    local t0 t1
    t0=$(date +%s%N)
    run "$nss" /usr/bin/time -f "cpu %U %S" -o "$work/send.time" "$bindir/punchline-share" send \
        "$work/file" --server "$server" --name "a$tag" --peer "b$tag" --transport "$t" \
        --identity "$work/alice.pem" --timeout 60 >"$work/send.out" 2>"$work/send.err" || rc=$?
    t1=$(date +%s%N)
    wait "$rpid" 2>/dev/null || rc=$((rc + 100))
    local sent recvd path smb rmb scpu rcpu ok=bad
    sent=$(grep '^sent ' "$work/send.out" || true)
    recvd=$(grep '^received ' "$work/recv.out" || true)
    path=$(sed -n 's/.* path=\([^ ]*\).*/\1/p' <<<"$sent")
    smb=$(sed -n 's/.* MBps=\([0-9.]*\).*/\1/p' <<<"$sent")
    rmb=$(sed -n 's/.* MBps=\([0-9.]*\).*/\1/p' <<<"$recvd")
    scpu=$(awk '/^cpu/ {print $2 + $3}' "$work/send.time" 2>/dev/null || echo -)
    rcpu=$(awk '/^cpu/ {print $2 + $3}' "$work/recv.time" 2>/dev/null || echo -)
    if [ "$rc" = 0 ] && grep -q "sha256=$want" <<<"$sent" && grep -q "sha256=$want" <<<"$recvd" &&
        cmp -s "$work/file" "$work/out/file"; then
        ok=ok
    fi
    line=$(printf 'xfer setting=%s transport=%s path=%s MBps_recv=%s MBps_send=%s wall_s=%.2f cpu_send_s=%s cpu_recv_s=%s check=%s' \
        "$setting" "$t" "${path:--}" "${rmb:--}" "${smb:--}" "$(((t1 - t0) / 1000000))e-3" "$scpu" "$rcpu" "$ok")
    echo "$line" | tee -a "$work/results"
    if [ "$ok" != ok ]; then
        echo "  transfer failed (rc=$rc):" >&2
        tail -n 5 "$work/send.err" "$work/recv.err" >&2
    fi
    rm -rf "$work/out"
}

# iperf NS_CLIENT NS_SERVER SERVER_IP SETTING tcp|udp: 5 s of iperf3.
iperf() {
    local nsc=$1 nss=$2 ip=$3 setting=$4 proto=$5 port json mbps
    port=$(bench_free_port)
    run "$nss" iperf3 -s -1 -B "$ip" -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    sleep 0.5
    if [ "$proto" = udp ]; then
        json=$(run "$nsc" iperf3 -c "$ip" -p "$port" -t 5 -u -b 0 -l 1200 -J 2>/dev/null || true)
    else
        json=$(run "$nsc" iperf3 -c "$ip" -p "$port" -t 5 -J 2>/dev/null || true)
    fi
    mbps=$(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
e = d["end"]
if "sum_received" in e:
    print("%.1f" % (e["sum_received"]["bits_per_second"] / 8e6))
else:
    s = e["sum"]
    print("%.1f loss=%.1f%%" % (s["bits_per_second"] * (1 - s["lost_percent"] / 100) / 8e6, s["lost_percent"]))
' <<<"$json" 2>/dev/null || echo -)
    echo "iperf3 setting=$setting proto=$proto MBps=$mbps" | tee -a "$work/results"
}

echo "--- AEAD ceiling (punchline-secure-bench aead 1200 3, one core)"
"$bindir/punchline-secure-bench" aead 1200 3 | tee -a "$work/results"

if [ "$do_loop" = 1 ]; then
    echo "--- loopback"
    port=$(bench_free_port)
    "$bindir/punchline-rendezvous" --listen "127.0.0.1:$port" --relay-session-rate 0 \
        --relay-bandwidth 0 2>"$work/rz-loop.err" &
    pids+=($!)
    bench_wait_listen "$port" t || { echo "rendezvous did not start" >&2; exit 1; }
    for ((r = 1; r <= runs; r++)); do
        for t in udp tcp relay; do
            xfer loopback "$t" "127.0.0.1:$port" - -
        done
        iperf - - 127.0.0.1 loopback tcp
        iperf - - 127.0.0.1 loopback udp
    done
fi

if [ "$do_lab" = 1 ]; then
    # shellcheck source=../tests/natlab/lib.sh
    . "$here/../tests/natlab/lib.sh"
    NATLAB_BIN_DIR=$bindir
    if ! natlab_init; then
        echo "--- NAT lab skipped: needs root and network namespaces"
    else
        lab_up=1
        echo "--- NAT lab: ra/rb port-restricted; loss rule $loss% each way between ra and rb"
        natlab_add_internet
        natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
        natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
        natlab_add_host alice ra 10.0.1.10
        natlab_add_host bob rb 10.0.2.10
        bench_lab_rendezvous --relay-session-rate 0 --relay-bandwidth 0
        pids+=("$rz_pid")
        loss_on() { # loss_on PEER_IP: drop PCT% of what ra forwards to and from PEER_IP
            natlab_exec ra nft insert rule ip filt forward ip daddr "$1" numgen random mod 100 '<' "$loss" drop
            natlab_exec ra nft insert rule ip filt forward ip saddr "$1" numgen random mod 100 '<' "$loss" drop
        }
        loss_clear() { # back to the router's own rules: delete what loss_on inserted
            natlab_exec ra nft -a list chain ip filt forward | sed -n 's/.*numgen random.* # handle \([0-9]*\)$/\1/p' |
                while read -r h; do natlab_exec ra nft delete rule ip filt forward handle "$h"; done
        }
        # Two rounds: "lab" with the kernel's offloads as they are (UDP GSO
        # batches and TCP TSO segments cross the routers as one packet each,
        # so the loss rule drops whole batches); "lab-perpkt" with
        # gso_max_segs 1 on alice's and bob's interfaces, so every datagram
        # and every TCP segment crosses the routers, and meets the loss
        # rule, on its own (as on a real network).
        for mode in lab lab-perpkt; do
            if [ "$mode" = lab-perpkt ]; then
                natlab_exec alice ip link set dev eth0 gso_max_segs 1
                natlab_exec bob ip link set dev eth0 gso_max_segs 1
            fi
            for ((r = 1; r <= runs; r++)); do
                xfer "$mode" udp 203.0.113.1:7350 alice bob
                xfer "$mode" tcp 203.0.113.1:7350 alice bob
                xfer "$mode" relay 203.0.113.1:7350 alice bob
                iperf alice inet 203.0.113.1 "$mode" tcp
                loss_on 203.0.113.12
                xfer "$mode-loss$loss" udp 203.0.113.1:7350 alice bob
                xfer "$mode-loss$loss" tcp 203.0.113.1:7350 alice bob
                loss_on 203.0.113.1
                iperf alice inet 203.0.113.1 "$mode-loss$loss" tcp
                loss_clear
            done
        done
    fi
fi

echo
echo "medians over $runs run(s):"
python3 - "$work/results" <<'EOF'
import re, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("xfer "):
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        key = "%-12s %-6s %-11s" % (f["setting"], f["transport"], f["path"])
        if f["check"] == "ok" and f["MBps_recv"] != "-":
            rows.setdefault(key, []).append(float(f["MBps_recv"]))
    elif line.startswith("iperf3 "):
        f = dict(kv.split("=", 1) for kv in line.split()[1:4])
        key = "%-12s iperf3 %s" % (f["setting"], f["proto"])
        try:
            rows.setdefault(key, []).append(float(f["MBps"]))
        except ValueError:
            pass
for k in sorted(rows):
    v = rows[k]
    print("  %-40s %8.1f MB/s  (n=%d, min %.1f, max %.1f)" % (k, statistics.median(v), len(v), min(v), max(v)))
EOF
