#!/usr/bin/env bash
# tests/natlab/selftest.sh - check the NAT lab itself, without punchline.
#
# Builds the lab with lib.sh and uses tiny python3 UDP programs to check that:
#  1. two hosts behind two port-restricted routers can hole-punch to each
#     other's public mapping (learned from a UDP echo in the internet ns), even
#     when one side's punches arrive before the other side has sent anything;
#  2. port-restricted routers really filter: an unsolicited packet to a
#     mapping is dropped;
#  3. two hosts behind one router reach each other on the LAN, but not through
#     the router's public mapping (no hairpinning);
#  4. a symmetric router maps one socket to different ports per destination;
#  5. a hairpinning router delivers a LAN host's packet sent to another LAN
#     host's public mapping, from the router's public address;
#  6. natlab_set_delay: 25 ms on a router puts 50 ms (two crossings) on the
#     RTT of a host behind it, 100% loss drops everything, and turning it off
#     restores the link. The delay part is skipped (logged) when the
#     natlab-nfq-delay binary is missing.
# Usage: selftest.sh [BINDIR]  (BINDIR: where natlab-nfq-delay is; default
# build/bin, or $NATLAB_NFQ_DELAY). Exit 0 pass, 1 fail, 77 skip (not root /
# no netns).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
if [ -n "${1:-}" ]; then
    NATLAB_BIN_DIR=$1
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: python3 not found"
    exit 77
fi
if ! natlab_init; then
    echo "SKIP: needs root and network namespaces"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/natlab-selftest.XXXXXX")
failures=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$rc" -ne 0 ] || [ "$failures" -ne 0 ]; then
        natlab_dump || true
        for f in "$work"/*.log; do
            [ -e "$f" ] || continue
            echo "--- $(basename "$f")"
            cat "$f"
        done
    fi
    natlab_cleanup
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() { # check DESCRIPTION CMD... : run CMD, record PASS/FAIL
    local what=$1
    shift
    if "$@"; then
        echo "PASS: $what"
    else
        echo "FAIL: $what"
        failures=$((failures + 1))
    fi
}

# UDP echo: replies to each datagram with the sender's "ip:port" as seen here.
cat >"$work/echo.py" <<'EOF'
import socket, sys, selectors
sel = selectors.DefaultSelector()
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(port)))
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        data, addr = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(("%s:%d" % addr).encode(), addr)
EOF

# Punch peer: learn own mapping from the echo server, publish it in a file,
# read the other's, then send to it until we have both heard from the peer and
# been acknowledged. args: NAME ECHO_IP ECHO_PORT MYFILE PEERFILE DELAY [TARGET]
# TARGET overrides the peer address (used for the LAN test).
cat >"$work/punch.py" <<'EOF'
import os, socket, sys, time
name, eip, eport, myfile, peerfile, delay = sys.argv[1:7]
target = sys.argv[7] if len(sys.argv) > 7 else None
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40000))
s.settimeout(0.2)
for _ in range(25):
    s.sendto(b"?", (eip, int(eport)))
    try:
        data, _ = s.recvfrom(2048)
        break
    except socket.timeout:
        pass
else:
    sys.exit("%s: no answer from echo" % name)
mine = data.decode()
print("%s: mapped to %s" % (name, mine), flush=True)
with open(myfile + ".tmp", "w") as f:
    f.write(mine)
os.rename(myfile + ".tmp", myfile)
deadline = time.time() + 10
while not os.path.exists(peerfile):
    if time.time() > deadline:
        sys.exit("%s: peer never published its mapping" % name)
    time.sleep(0.05)
peer = target or open(peerfile).read()
pip, pport = peer.rsplit(":", 1)
paddr = (pip, int(pport))
time.sleep(float(delay))
heard = acked = False
deadline = time.time() + 8
while time.time() < deadline and not (heard and acked):
    s.sendto(("hello from %s%s" % (name, " ack" if heard else "")).encode(), paddr)
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    if addr != paddr:
        print("%s: ignoring packet from %s:%d" % (name, addr[0], addr[1]), flush=True)
        continue
    heard = True
    acked = acked or data.endswith(b" ack")
# linger so the peer gets our ack too
for _ in range(5):
    s.sendto(("hello from %s ack" % name).encode(), paddr)
    time.sleep(0.05)
print("%s: heard=%s acked=%s from %s" % (name, heard, acked, peer), flush=True)
sys.exit(0 if heard and acked else 1)
EOF

# Unsolicited sender / silent receiver for the filtering check.
cat >"$work/send.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"unsolicited", (sys.argv[1], int(sys.argv[2])))
EOF
cat >"$work/listen.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
try:
    data, addr = s.recvfrom(2048)
    print("got %r from %s:%d" % (data, addr[0], addr[1]))
    sys.exit(0)
except socket.timeout:
    print("nothing received")
    sys.exit(1)
EOF

# Mapping probe: one socket on LPORT asks the echo server on each PORT and
# prints the mappings. args: LPORT ECHO_IP PORT...
cat >"$work/probe.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(1)
out = []
for port in sys.argv[3:]:
    s.sendto(b"?", (sys.argv[2], int(port)))
    out.append(s.recvfrom(2048)[0].decode())
print(" ".join(out))
EOF

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_router rs 203.0.113.13 10.0.3.0/24 symmetric
natlab_add_router rh 203.0.113.14 10.0.4.0/24 hairpin
natlab_add_host alice ra 10.0.1.10
natlab_add_host carol ra 10.0.1.11
natlab_add_host bob rb 10.0.2.10
natlab_add_host sam rs 10.0.3.10
natlab_add_host dan rh 10.0.4.10
natlab_add_host erin rh 10.0.4.11

natlab_exec inet timeout 60 python3 -u "$work/echo.py" 203.0.113.1 3478 3479 >"$work/echo.log" 2>&1 &
for _ in $(seq 50); do
    grep -q ready "$work/echo.log" 2>/dev/null && break
    sleep 0.1
done

# 1. two port-restricted NATs; bob starts punching 1 s before alice does.
punch_pair() { # punch_pair A B [A_TARGET B_TARGET]
    local a=$1 b=$2 rc_a=0 rc_b=0
    rm -f "$work/$a.map" "$work/$b.map"
    natlab_exec "$a" timeout 20 python3 -u "$work/punch.py" "$a" 203.0.113.1 3478 \
        "$work/$a.map" "$work/$b.map" 1 ${3:+"$3"} >"$work/$a-$b.$a.log" 2>&1 &
    local pa=$!
    natlab_exec "$b" timeout 20 python3 -u "$work/punch.py" "$b" 203.0.113.1 3478 \
        "$work/$b.map" "$work/$a.map" 0 ${4:+"$4"} >"$work/$a-$b.$b.log" 2>&1 &
    local pb=$!
    wait "$pa" || rc_a=$?
    wait "$pb" || rc_b=$?
    cat "$work/$a-$b.$a.log" "$work/$a-$b.$b.log"
    [ "$rc_a" -eq 0 ] && [ "$rc_b" -eq 0 ]
}
check "hole punch alice(ra) <-> bob(rb) through two port-restricted NATs" punch_pair alice bob
check "alice's mapping is port-preserving on ra's WAN address" \
    grep -qx '203.0.113.11:40000' "$work/alice.map"

# 2. filtering: carol gets a mapping by talking to the echo server only; a
#    packet from bob to that mapping is unsolicited and must be dropped.
#    (expect_silence LISTENER LPORT SENDER: map LISTENER:LPORT, then SENDER
#    sends to the mapping; succeed if nothing arrives.)
expect_silence() {
    local listener=$1 lport=$2 sender=$3 map pl
    map=$(natlab_exec "$listener" timeout 10 python3 "$work/probe.py" "$lport" 203.0.113.1 3478) || return 1
    echo "$listener:$lport is mapped to $map; $sender sends to it"
    natlab_exec "$listener" timeout 10 python3 -u "$work/listen.py" "$lport" 2 >"$work/listen-$lport.log" 2>&1 &
    pl=$!
    sleep 0.3
    natlab_exec "$sender" python3 "$work/send.py" "${map%:*}" "${map##*:}"
    ! wait "$pl"
}
check "port-restricted router drops unsolicited inbound" expect_silence carol 40002 bob

# 3. same NAT: LAN addresses work; the public mapping does not (no hairpin).
check "alice <-> carol on the LAN behind one router" \
    punch_pair alice carol 10.0.1.11:40000 10.0.1.10:40000
check "no hairpinning through ra's public address" expect_silence carol 40003 alice

# 4. symmetric: same socket, two destinations -> two different mapped ports.
symmetric_maps() {
    local out m1 m2
    out=$(natlab_exec sam timeout 10 python3 "$work/probe.py" 40000 203.0.113.1 3478 3479) || return 1
    echo "sam mappings: $out"
    read -r m1 m2 <<<"$out"
    [ "${m1%:*}" = 203.0.113.13 ] && [ "$m1" != "$m2" ]
}
check "symmetric router maps per destination" symmetric_maps

# 5. hairpin: erin reaches dan through dan's public mapping on rh, and dan
#    sees the packet come from rh's public address (not erin's LAN address).
hairpin() {
    local map pl
    map=$(natlab_exec dan timeout 10 python3 "$work/probe.py" 40004 203.0.113.1 3478) || return 1
    echo "dan:40004 is mapped to $map; erin sends to it"
    natlab_exec dan timeout 10 python3 -u "$work/listen.py" 40004 2 >"$work/hairpin.log" 2>&1 &
    pl=$!
    sleep 0.3
    natlab_exec erin python3 "$work/send.py" "${map%:*}" "${map##*:}"
    wait "$pl" || return 1
    cat "$work/hairpin.log"
    grep -q "from 203.0.113.14:" "$work/hairpin.log"
}
check "hairpin router loops LAN traffic to a public mapping back inside" hairpin

# 6. delay and loss. rtt.py: N probes to the echo server, one at a time
#    (1 s timeout each); prints the RTTs; exit 0 if all were answered.
cat >"$work/rtt.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
rtts = []
for i in range(int(sys.argv[3])):
    t0 = time.monotonic()
    s.sendto(b"?", (sys.argv[1], int(sys.argv[2])))
    try:
        s.recvfrom(2048)
        rtts.append((time.monotonic() - t0) * 1000)
    except socket.timeout:
        pass
print("answered %d of %s, RTT ms: %s" % (len(rtts), sys.argv[3], " ".join("%.1f" % r for r in rtts)))
sys.exit(0 if len(rtts) == int(sys.argv[3]) else 1)
EOF
delay_rtt() { # 25 ms on ra, crossed twice per RTT: want 50 <= RTT < 200
    local out
    natlab_set_delay ra 25 || return 1
    out=$(natlab_exec alice timeout 20 python3 "$work/rtt.py" 203.0.113.1 3478 5) || { echo "$out"; return 1; }
    echo "alice -> 203.0.113.1 with 25 ms on ra: $out"
    natlab_set_delay ra 0 || return 1
    awk '{ for (i = 7; i <= NF; i++) if ($i < 50 || $i >= 200) exit 1 }' <<<"$out"
}
loss_all() { # 100% loss on ra: nothing gets through; off again: all do
    local out
    natlab_set_delay ra 0 100 || return 1
    if out=$(natlab_exec alice timeout 20 python3 "$work/rtt.py" 203.0.113.1 3478 3); then
        echo "with 100% loss on ra: $out (expected none)"
        natlab_set_delay ra 0
        return 1
    fi
    echo "with 100% loss on ra: $out"
    natlab_set_delay ra 0 || return 1
    out=$(natlab_exec alice timeout 20 python3 "$work/rtt.py" 203.0.113.1 3478 3) || { echo "loss off: $out"; return 1; }
    echo "loss off again: $out"
}
if natlab_delay_available 2>"$work/delay-skip.txt"; then
    check "natlab_set_delay: 25 ms on ra gives alice an RTT of 50..200 ms" delay_rtt
else
    echo "SKIP: delay check: $(cat "$work/delay-skip.txt")"
fi
check "natlab_set_delay: 100% loss on ra drops everything, 0% restores it" loss_all

if [ "$failures" -ne 0 ]; then
    echo "natlab selftest: $failures check(s) failed"
    exit 1
fi
echo "natlab selftest: all checks passed"
