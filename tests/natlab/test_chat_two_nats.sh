#!/usr/bin/env bash
# tests/natlab/test_chat_two_nats.sh BINDIR
# punchline-chat across two real NATs (nftables in network namespaces):
#
#   alice 10.0.1.10 -- ra [port-restricted] 203.0.113.11 --+
#                                                          +-- internet 203.0.113.1 (rendezvous :7350)
#   bob   10.0.2.10 -- rb [port-restricted] 203.0.113.12 --+
#
# Both must connect with path=direct-udp, each seeing the other's public
# mapping (router WAN address), then talk both ways and exit 0 on EOF.
# Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lab_test.sh
. "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10
chat_log "lab $NATLAB_PREFIX: alice 10.0.1.10 behind ra 203.0.113.11, bob 10.0.2.10 behind rb 203.0.113.12"

if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on 203.0.113.1:7350"
    exit 1
fi
chat_pass "rendezvous listening on 203.0.113.1:7350"

# alice must reach bob's public mapping on rb, bob alice's on ra.
chat_conversation 203.0.113.1:7350 bob alice "$(natlab_wan_ip rb)" "$(natlab_wan_ip ra)" || true
chat_exit
