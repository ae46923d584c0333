#!/usr/bin/env bash
# tests/natlab/test_lossy.sh BINDIR
# Heavy packet loss on a router (issue 8, faults):
#
#   alice 10.0.1.10 -- ra [port-restricted]                  203.0.113.11 --+
#   bob   10.0.2.10 -- rb [port-restricted, LOSSY_PCT% loss] 203.0.113.12 --+-- internet
#                                                                 (rendezvous 203.0.113.1:7350)
# Once bob has registered, rb drops LOSSY_PCT% (default 20) of every packet
# it receives, on both sides, both directions (natlab_set_delay rb 0 PCT:
# nft numgen before conntrack): the connect request's answer to bob,
# punching, the DTLS handshake and the whole stream cross it.  (Alice
# registers through the lossless ra; a first registration over a lossy
# link is a plain TCP connect with the kernel's 1 s SYN retransmission.)
#  a. --transport udp: direct-udp, the scripted conversation (5 lines each
#     way, half close), both exit 0, every line once and in order;
#  b. --transport tcp: the same on direct-tcp.  TCP punching replaces an
#     unanswered SYN with a new socket (new sequence number) every 50-200
#     ms; when such a SYN is lost before its own NAT, the NAT keeps the old
#     sequence number and drops the simultaneous-open SYN-ACK as INVALID,
#     and up to 1 in 10 punches fail at 20% loss (docs/PROTOCOL.md 4.3):
#     the case tries a second connection then, as an application would,
#     and says so;
#  c. --transport auto: the same on whatever path auto picks;
#  d. punchline-share, LOSSY_MB MiB (default 4), auto: the hashes match.
# Each case logs its time. Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab_test.sh
. "$here/lab_test.sh" "${1:-}"
# shellcheck source=../integration/share_common.sh
. "$here/../integration/share_common.sh"
PCT=${LOSSY_PCT:-20}
MB=${LOSSY_MB:-4}
share_setup
RZ=203.0.113.1:7350

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10
if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on $RZ"
    exit 1
fi
lossy() { natlab_set_delay rb 0 "$PCT"; }
lossless() { natlab_set_delay rb 0 0; }
chat_log "lab $NATLAB_PREFIX: rb drops $PCT% of what it receives once bob registered"

# Every phase needs its retries: punching, the handshake (250 ms doubling),
# the stream's loss recovery.
CHAT_T_CONNECT=30
CHAT_T_LINES=20
CHAT_T_EXIT=20
export CHAT_AFTER_REGISTER=lossy

elapsed() { awk -v ns=$(($(date +%s%N) - $1)) 'BEGIN { printf "%.1f", ns / 1e9 }'; }

chat_log "--- a: --transport udp"
lossless
t0=$(date +%s%N)
CHAT_TRANSPORT=udp CHAT_PATH=direct-udp \
    chat_talk "$RZ" alice a-alice 203.0.113.12 bob a-bob 203.0.113.11 || true
chat_log "info: a: $(elapsed "$t0") s"

chat_log "--- b: --transport tcp"
for try in 1 2; do
    lossless
    t0=$(date +%s%N)
    failures=$CHAT_FAILURES
    CHAT_TRANSPORT=tcp CHAT_PATH=direct-tcp \
        chat_talk "$RZ" alice "b$try-alice" 203.0.113.12 bob "b$try-bob" 203.0.113.11 || true
    chat_log "info: b$try: $(elapsed "$t0") s"
    if [ "$try" = 1 ] && [ "$CHAT_FAILURES" != "$failures" ] &&
        grep -q 'hole punching failed' "$CHAT_WORK/b1-alice.err"; then
        chat_log "info: b: TCP punching failed under loss; a second connection"
        CHAT_FAILURES=$failures
        chat_stop b1-alice || true
        chat_stop b1-bob || true
        continue
    fi
    break
done

chat_log "--- c: --transport auto"
lossless
t0=$(date +%s%N)
CHAT_TRANSPORT=auto CHAT_PATH='direct-udp|direct-tcp|relay-udp|relay-tcp' \
    chat_talk "$RZ" alice c-alice '203.0.113.12|203.0.113.1' bob c-bob '203.0.113.11|203.0.113.1' || true
chat_log "info: c: $(elapsed "$t0") s, final path: $(grep -E '^(connected|path) ' "$CHAT_WORK/c-alice.err" | tail -n1 | sed 's/ id=.*//')"

chat_log "--- d: punchline-share, $MB MiB, auto"
lossless
share_random_file "$CHAT_WORK/d.bin" "$MB"
mkdir -p "$CHAT_WORK/out-d"
if share_start_recv d bob "$RZ" "$CHAT_WORK/out-d"; then
    lossy
    t0=$(date +%s%N)
    share_start_send d alice "$RZ" "$CHAT_WORK/d.bin"
    if share_wait d "$SHARE_T_XFER"; then
        chat_log "info: d: $(elapsed "$t0") s"
        share_check_ok d "$CHAT_WORK/d.bin" "$CHAT_WORK/out-d" 'direct-udp|direct-tcp|relay-udp|relay-tcp' || true
    else
        chat_fail "d: transfer not finished within ${SHARE_T_XFER}s"
    fi
else
    chat_fail "d: receiver did not register"
fi

chat_exit
