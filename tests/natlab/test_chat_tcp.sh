#!/usr/bin/env bash
# tests/natlab/test_chat_tcp.sh BINDIR
# punchline-chat with --transport tcp (TCP hole punching by simultaneous open)
# through real NATs. One topology, several hosts, one rendezvous:
#
#   alice 10.0.1.10 --+
#   carol 10.0.1.20 --+-- ra [port-restricted] 203.0.113.11 --+
#   bob   10.0.2.10 ----- rb [port-restricted] 203.0.113.12 --+-- internet 203.0.113.1
#   sam   10.0.3.10 ----- rs [symmetric]       203.0.113.13 --+   (rendezvous :7350)
#   pub   203.0.113.50 (public host, no NAT, no firewall) ----+
#   pubfw 203.0.113.51 (public host, no NAT, stateful firewall) +
#
# Cases (every conversation uses its own peer names, e.g. a1-alice, so the
# logs of one case never mix with another's):
#  a. port-restricted pair over direct-tcp, alice calls bob, then bob calls
#     alice: each side's connected line shows path=direct-tcp and the other
#     router's WAN address; lines cross both ways; both exit 0 after EOF.
#  b. public host against a port-restricted host, both directions (b1, b2:
#     a bare host that answers stray SYNs with RST; b3: a public host behind
#     its own stateful firewall).
#  c. two hosts behind the same port-restricted NAT (no hairpin): direct-tcp
#     over the LAN addresses, both directions.
#  d. symmetric NAT against port-restricted NAT: no direct path exists, so the
#     caller must fail cleanly with --transport tcp (exit 1, "hole punching
#     failed", well within 20 s; the punch timeout is 10 s). Run in the
#     background while a-c run. (--transport auto relays such a pair:
#     test_chat_relay.sh.)
# Needs root; exits 77 (skip) otherwise. Runs in about 20 s.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lab_test.sh
. "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"

# Bound for case d: from the caller's start to its exit. The library gives up
# punching after 10 s; 20 s leaves room for slow (sanitizer) builds.
T_FAIL=${CHAT_T_FAIL:-20}
RZ=203.0.113.1:7350

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_router rs 203.0.113.13 10.0.3.0/24 symmetric
natlab_add_host alice ra 10.0.1.10
natlab_add_host carol ra 10.0.1.20
natlab_add_host bob rb 10.0.2.10
natlab_add_host sam rs 10.0.3.10
natlab_add_public_host pub 203.0.113.50
natlab_add_public_host pubfw 203.0.113.51 firewall
chat_log "lab $NATLAB_PREFIX: alice 10.0.1.10 + carol 10.0.1.20 behind ra 203.0.113.11 (port-restricted),"
chat_log "  bob 10.0.2.10 behind rb 203.0.113.12 (port-restricted), sam 10.0.3.10 behind rs 203.0.113.13 (symmetric),"
chat_log "  pub 203.0.113.50 (public, no NAT), pubfw 203.0.113.51 (public, stateful firewall)"

if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on $RZ"
    exit 1
fi
chat_pass "rendezvous listening on $RZ"

ra_wan=$(natlab_wan_ip ra)
rb_wan=$(natlab_wan_ip rb)
pub_ip=$(natlab_host_ip pub)
pubfw_ip=$(natlab_host_ip pubfw)

# ---------------------------------------------------------------------------
# d (started first, checked last): symmetric vs port-restricted must fail.
# Started in the background so its ~10 s punch timeout overlaps cases a-c.
# ---------------------------------------------------------------------------

# fail_start CASE CALLER_WHERE CALLER CALLEE_WHERE CALLEE TRANSPORT:
# start the callee, wait until registered, start the caller; records the
# caller's start time in FAIL_T0[CALLER].
declare -A FAIL_T0=()
fail_start() {
    local case=$1 caller_where=$2 caller=$3 callee_where=$4 callee=$5 transport=$6
    chat_log "--- case $case: $caller ($caller_where) calls $callee ($callee_where), --transport $transport, must fail"
    chat_start_chat "$callee_where" "$callee" --server "$RZ" --name "$callee" --timeout 60 -v
    if ! chat_wait_grep "$callee" err registered "$CHAT_T_REGISTER"; then
        chat_fail "$case: $callee did not print 'registered' within ${CHAT_T_REGISTER}s"
        return 1
    fi
    # --timeout well above the punch timeout: the failure must come from the
    # punch giving up, not from the chat's own connect timer.
    chat_start_chat "$caller_where" "$caller" --server "$RZ" --name "$caller" --peer "$callee" \
        --transport "$transport" --timeout 60 -v
    FAIL_T0[$caller]=$SECONDS
}

# fail_check CASE CALLER CALLEE: the caller exits 1 within T_FAIL seconds of
# its start with "hole punching failed" and no connected line; the callee
# never connects either (if it has exited, it exited 1 with the same message;
# if it still waits for another peer, that is allowed and it is stopped).
fail_check() {
    local case=$1 caller=$2 callee=$3 left took
    left=$((FAIL_T0[$caller] + T_FAIL - SECONDS))
    [ "$left" -gt 0 ] || left=1
    if ! chat_wait_exit "$caller" "$left"; then
        chat_fail "$case: $caller still running ${T_FAIL}s after it started (hangs instead of failing)"
        chat_stop "$caller" || true
        return 1
    fi
    took=$((SECONDS - FAIL_T0[$caller]))
    if [ "${CHAT_RC[$caller]}" -eq 1 ]; then
        chat_pass "$case: $caller exited 1 after ~${took}s (bound ${T_FAIL}s)"
    else
        chat_fail "$case: $caller exited with status ${CHAT_RC[$caller]} (want 1)"
    fi
    if grep -q 'hole punching failed' "$CHAT_WORK/$caller.err"; then
        chat_pass "$case: $caller says: $(grep -m1 'hole punching failed' "$CHAT_WORK/$caller.err")"
    else
        chat_fail "$case: $caller's stderr has no 'hole punching failed'"
    fi
    if grep -q '^connected ' "$CHAT_WORK/$caller.err" "$CHAT_WORK/$callee.err"; then
        chat_fail "$case: a connected line appeared although no direct path exists: $(grep -h '^connected ' "$CHAT_WORK/$caller.err" "$CHAT_WORK/$callee.err")"
    else
        chat_pass "$case: neither side claims a connection"
    fi
    # The callee learns of the failure from its own punch timeout.
    chat_wait_exit "$callee" 5 || true
    if _chat_alive "$callee"; then
        chat_log "info: $case: $callee still waiting for a peer; stopping it"
        chat_stop "$callee" || true
    elif [ "${CHAT_RC[$callee]}" -eq 1 ] && grep -q 'hole punching failed' "$CHAT_WORK/$callee.err"; then
        chat_pass "$case: $callee exited 1 with 'hole punching failed' too"
    else
        chat_fail "$case: $callee exited with status ${CHAT_RC[$callee]}, want 1 and 'hole punching failed'"
    fi
}

# d-tcp: the symmetric side calls. sam's SYNs leave rs from a fresh random
# port (not the one the rendezvous saw), which rb's filter drops; bob's SYNs
# go to the port the rendezvous saw, which rs has no entry for.
d_tcp_ok=0
fail_start d-tcp sam d-sam bob d-bob tcp && d_tcp_ok=1

# ---------------------------------------------------------------------------
# a-c: successful direct-tcp conversations
# ---------------------------------------------------------------------------
export CHAT_TRANSPORT=tcp CHAT_PATH=direct-tcp

chat_log "--- case a1: alice (behind ra) calls bob (behind rb)"
chat_talk "$RZ" alice a1-alice "$rb_wan" bob a1-bob "$ra_wan" || true
chat_log "--- case a2: bob (behind rb) calls alice (behind ra)"
chat_talk "$RZ" bob a2-bob "$ra_wan" alice a2-alice "$rb_wan" || true

chat_log "--- case b1: pub (public) calls bob (behind rb)"
chat_talk "$RZ" pub b1-pub "$rb_wan" bob b1-bob "$pub_ip" || true
chat_log "--- case b2: bob (behind rb) calls pub (public)"
chat_talk "$RZ" bob b2-bob "$pub_ip" pub b2-pub "$rb_wan" || true
chat_log "--- case b3: pubfw (public, firewalled) calls bob (behind rb)"
chat_talk "$RZ" pubfw b3-pubfw "$rb_wan" bob b3-bob "$pubfw_ip" || true

chat_log "--- case c1: alice calls carol, both behind ra (no hairpin): LAN addresses"
chat_talk "$RZ" alice c1-alice "$(natlab_host_ip carol)" carol c1-carol "$(natlab_host_ip alice)" || true
chat_log "--- case c2: carol calls alice, both behind ra"
chat_talk "$RZ" carol c2-carol "$(natlab_host_ip alice)" alice c2-alice "$(natlab_host_ip carol)" || true

# ---------------------------------------------------------------------------
chat_log "--- case d: checking the failures started above"
if [ "$d_tcp_ok" = 1 ]; then fail_check d-tcp d-sam d-bob || true; fi
chat_exit
