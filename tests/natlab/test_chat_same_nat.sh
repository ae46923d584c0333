#!/usr/bin/env bash
# tests/natlab/test_chat_same_nat.sh BINDIR
# punchline-chat between two hosts behind ONE port-restricted NAT that does
# not hairpin (the common case):
#
#   alice 10.0.1.10 --+
#                     +-- ra [port-restricted] 203.0.113.11 -- internet 203.0.113.1 (rendezvous :7350)
#   bob   10.0.1.20 --+
#
# Their public mappings share one address and cannot reach each other, so the
# library must use the LAN addresses: each side's connected line must show the
# other's 10.0.1.x address. Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lab_test.sh
. "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob ra 10.0.1.20
chat_log "lab $NATLAB_PREFIX: alice 10.0.1.10 and bob 10.0.1.20 behind ra 203.0.113.11"

if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on 203.0.113.1:7350"
    exit 1
fi
chat_pass "rendezvous listening on 203.0.113.1:7350"

chat_conversation 203.0.113.1:7350 bob alice "$(natlab_host_ip bob)" "$(natlab_host_ip alice)" || true
chat_exit
