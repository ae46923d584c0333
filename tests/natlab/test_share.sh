#!/usr/bin/env bash
# tests/natlab/test_share.sh BINDIR
# punchline-share through real NATs:
#
#   alice 10.0.1.10 -- ra [port-restricted] 203.0.113.11 --+
#   bob   10.0.2.10 -- rb [port-restricted] 203.0.113.12 --+-- internet 203.0.113.1
#                                                              (rendezvous :7350)
# alice sends, bob receives, a random file of SHARE_LAB_MB MiB (default 100):
#  a. --transport udp with 2% random loss on ra (`numgen random mod 100 < 2
#     drop` first in its forward chain: both directions of everything it
#     routes): path=direct-udp on both sides, hashes match;
#  b. --transport tcp, no loss: path=direct-tcp;
#  c. --transport relay: path=relay-udp (through the rendezvous);
#  d. resume: a SHARE_LAB_CUT_MB MiB file (default 24) over direct-udp with
#     2% loss, the sender throttled (PUNCHLINE_SHARE_TEST_RATE, test only)
#     and killed with SIGKILL once bob holds a quarter; bob exits 1 keeping
#     the part file; the same file again, now over direct-tcp, resumes at
#     bob's offset and ends with the right hash.
# Each case logs its time ("info: ID: both sides exited after N s").
# Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab_test.sh
. "$here/lab_test.sh" "${1:-}"
# shellcheck source=../integration/share_common.sh
. "$here/../integration/share_common.sh"
MB=${SHARE_LAB_MB:-100}
CUT_MB=${SHARE_LAB_CUT_MB:-24}
LOSS=${SHARE_LAB_LOSS:-2}
SHARE_T_XFER=${SHARE_T_XFER:-240}
share_setup
RZ=203.0.113.1:7350

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10
chat_log "lab $NATLAB_PREFIX: alice behind ra 203.0.113.11, bob behind rb 203.0.113.12 (both port-restricted)"

if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on $RZ"
    exit 1
fi
chat_pass "rendezvous listening on $RZ"

# loss_on / loss_off: LOSS% random drop of everything ra forwards, both
# directions (inserted first in lib.sh's forward chain). loss_on prints the
# rule handle for loss_off.
loss_on() {
    natlab_exec ra nft -e -a insert rule ip filt forward numgen random mod 100 "<" "$LOSS" counter drop |
        sed -n 's/.*# handle \([0-9]*\).*/\1/p'
}
loss_off() { natlab_exec ra nft delete rule ip filt forward handle "$1"; }
# drops_of HANDLE: packets the loss rule dropped so far
drops_of() {
    natlab_exec ra nft -a list chain ip filt forward |
        sed -n "s/.*counter packets \([0-9]*\) .*# handle $1\$/\1/p"
}

src="$CHAT_WORK/src"
mkdir -p "$src"
share_random_file "$src/big.bin" "$MB"
share_random_file "$src/cut.bin" "$CUT_MB"
chat_log "files: big.bin $MB MiB, cut.bin $CUT_MB MiB"
times=()

chat_log "--- a: $MB MiB over direct-udp, $LOSS% loss on ra"
h=$(loss_on)
mkdir -p "$CHAT_WORK/out-a"
share_transfer a alice bob "$RZ" "$src/big.bin" "$CHAT_WORK/out-a" direct-udp --transport udp || true
chat_log "info: a: ra dropped $(drops_of "$h") packets"
times+=("a direct-udp ${LOSS}% loss: ${SHARE_SECONDS:-failed} s")
loss_off "$h"

chat_log "--- b: $MB MiB over direct-tcp"
mkdir -p "$CHAT_WORK/out-b"
share_transfer b alice bob "$RZ" "$src/big.bin" "$CHAT_WORK/out-b" direct-tcp --transport tcp || true
times+=("b direct-tcp: ${SHARE_SECONDS:-failed} s")

chat_log "--- c: $MB MiB over the relay"
mkdir -p "$CHAT_WORK/out-c"
share_transfer c alice bob "$RZ" "$src/big.bin" "$CHAT_WORK/out-c" relay-udp --transport relay || true
times+=("c relay-udp: ${SHARE_SECONDS:-failed} s")

chat_log "--- d: interrupted on direct-udp ($LOSS% loss), resumed on direct-tcp"
out="$CHAT_WORK/out-d"
mkdir -p "$out"
h=$(loss_on)
size=$(stat -c %s "$src/cut.bin")
PUNCHLINE_SHARE_TEST_RATE=$((size / 4)) \
    share_interrupt d1 alice bob "$RZ" "$src/cut.bin" "$out" $((size / 4)) --transport udp || true
loss_off "$h"
if [ -s "$out/.cut.bin.punchline-part" ]; then
    share_transfer d2 alice bob "$RZ" "$src/cut.bin" "$out" direct-tcp --transport tcp &&
        share_check_resumed d2 || true
    times+=("d resumed on direct-tcp: ${SHARE_SECONDS:-failed} s")
fi

for t in "${times[@]}"; do chat_log "info: time: $t"; done
chat_exit
