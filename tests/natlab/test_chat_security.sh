#!/usr/bin/env bash
# tests/natlab/test_chat_security.sh BINDIR
# End-to-end encryption and authentication, in the NAT lab:
#
#   alice 10.0.1.10 -- ra [port-restricted] 203.0.113.11 --+
#   bob   10.0.2.10 -- rb [port-restricted] 203.0.113.12 --+-- internet 203.0.113.1 (rendezvous)
#   mallory 203.0.113.66 (public host: capture point and attacker) --+
#
# 1. A packet capture on the public network during chats over direct-udp,
#    direct-tcp and the relay holds none of the chat text (and does hold the
#    plaintext registration names: the capture itself works); with the
#    control connection over TLS not even the names cross in clear.
# 2. Pinning: --peer-id with the right id connects and the verified id is
#    the one the peer printed; an impostor registered under the name (a
#    dishonest or tricked rendezvous) is refused with exit 1.
# 3. A third host spoofing bob's public endpoint (and the rendezvous, with
#    relay-wrapped datagrams) injects plain Data, Close, Ack, forged probes
#    and garbage DTLS records into a session that has both a direct and a
#    relay path up: the conversation goes on unchanged, nothing injected is
#    printed, neither side changes path, both exit 0.
# Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lab_test.sh
. "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"

if ! command -v tcpdump >/dev/null; then
    echo "SKIP: tcpdump is not installed (scripts/deps.sh installs it)"
    exit 77
fi

RZ=203.0.113.1:7350
natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10
natlab_add_public_host mallory 203.0.113.66
chat_log "lab $NATLAB_PREFIX: alice behind ra, bob behind rb, mallory public at 203.0.113.66"

if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on $RZ"
    exit 1
fi

# ---- 1. only ciphertext on the wire -------------------------------------------
# Capture everything crossing the internet bridge, full packets.
chat_spawn inet capture /dev/null tcpdump -i br0 -U -s 0 -n -w "$CHAT_WORK/wire.pcap"
sleep 1
for tr in udp tcp relay; do
    case $tr in
        udp) export CHAT_PATH=direct-udp sees_a=203.0.113.12 sees_b=203.0.113.11 ;;
        tcp) export CHAT_PATH=direct-tcp sees_a=203.0.113.12 sees_b=203.0.113.11 ;;
        relay) export CHAT_PATH='relay-udp|relay-tcp' sees_a=203.0.113.1 sees_b=203.0.113.1 ;;
    esac
    export CHAT_TRANSPORT=$tr
    chat_log "--- capture during a chat over $tr"
    chat_talk "$RZ" alice "c$tr-alice" "$sees_a" bob "c$tr-bob" "$sees_b" || true
done
# The control connection over TLS (a second rendezvous, TLS required):
# then not even the names cross in clear.
tls_fp=$("$CHAT_BIN_DIR/punchline-rendezvous" --tls-key "$CHAT_WORK/rz-tls.pem" --show-fingerprint)
if chat_start_rendezvous inet 203.0.113.1 7351 rz-tls --tls-key "$CHAT_WORK/rz-tls.pem" --tls-required; then
    export CHAT_PATH=direct-udp CHAT_TRANSPORT=udp CHAT_ARGS="--tls-fingerprint $tls_fp"
    chat_log "--- capture during a chat whose control connections run TLS"
    chat_talk 203.0.113.1:7351 alice "secretname-alice" 203.0.113.12 bob "secretname-bob" 203.0.113.11 || true
    unset CHAT_ARGS
else
    chat_fail "the TLS rendezvous did not come up on 203.0.113.1:7351"
fi
unset CHAT_PATH CHAT_TRANSPORT
sleep 0.5
kill -INT "${CHAT_PID[capture]}" 2>/dev/null || true
chat_wait_exit capture 5 || true
pcap="$CHAT_WORK/wire.pcap"
npk=$(tcpdump -r "$pcap" -n 2>/dev/null | wc -l)
if [ "$npk" -lt 50 ]; then
    chat_fail "capture holds only $npk packets: it did not see the chats"
else
    chat_pass "capture on the public network: $npk packets"
fi
# Positive control: registration names cross in clear (the control
# connection is not encrypted by default), so a grep would find plaintext.
if grep -aq "cudp-alice" "$pcap"; then
    chat_pass "capture sees plaintext where there is some (peer names in Register)"
else
    chat_fail "capture does not even contain the registered names: the check below would prove nothing"
fi
if grep -aq "secretname-" "$pcap"; then
    chat_fail "a peer name registered over TLS is visible on the wire"
else
    chat_pass "names registered over TLS are not on the wire"
fi
for text in "hello, secretname-bob" "hello, cudp-bob" "hello, ctcp-bob" "hello, crelay-bob" "last words from" "line 3 from"; do
    if grep -aq -- "$text" "$pcap"; then
        chat_fail "chat text '$text' is visible on the wire"
    else
        chat_pass "no '$text' on the wire"
    fi
done
# The UTF-8 text too (bytes of "grüße").
if grep -aq "grüße" "$pcap"; then
    chat_fail "chat text 'grüße' is visible on the wire"
else
    chat_pass "no 'grüße' on the wire"
fi

# ---- 2. pinning -------------------------------------------------------------
carol_id=$("$CHAT_BIN_DIR/punchline-chat" --show-id --identity "$CHAT_WORK/carol.pem")
mallory_id=$("$CHAT_BIN_DIR/punchline-chat" --show-id --identity "$CHAT_WORK/mallory.pem")
if [[ $carol_id =~ ^[a-z2-7]{52}$ ]] && [ "$carol_id" != "$mallory_id" ]; then
    chat_pass "--show-id prints a 52-character id ($carol_id)"
else
    chat_fail "--show-id printed '$carol_id' / '$mallory_id'"
fi
chat_start_chat bob carol --server "$RZ" --name carol --identity "$CHAT_WORK/carol.pem" --timeout 20
chat_wait_grep carol err registered 10 || chat_fail "carol did not register"
chat_start_chat alice pin-ok --server "$RZ" --name pin-ok --peer carol --peer-id "$carol_id" --timeout 20
if chat_wait_grep pin-ok err "^connected peer=carol .* id=$carol_id\$" 15; then
    chat_pass "pinned id: connected, verified id = carol's"
else
    chat_fail "pin-ok did not connect to carol with the pinned id"
fi
chat_close pin-ok
chat_close carol
chat_wait_exit pin-ok 10 || true
chat_wait_exit carol 10 || true

# An impostor holds the name "dave" (the real dave is not registered): the
# rendezvous honestly reports the impostor's key, which is not the pinned one.
dave_id=$("$CHAT_BIN_DIR/punchline-chat" --show-id --identity "$CHAT_WORK/dave.pem")
chat_start_chat mallory impostor --server "$RZ" --name dave --identity "$CHAT_WORK/mallory.pem" --timeout 20
chat_wait_grep impostor err registered 10 || chat_fail "impostor did not register"
chat_start_chat alice pin-bad --server "$RZ" --name pin-bad --peer dave --peer-id "$dave_id" --timeout 20
if chat_wait_exit pin-bad 15 && [ "${CHAT_RC[pin-bad]}" = 1 ]; then
    chat_pass "impostor refused: exit 1"
else
    chat_fail "pin-bad: want exit 1 within 15 s, got '${CHAT_RC[pin-bad]:-still running}'"
fi
if grep -q "is pinned" "$CHAT_WORK/pin-bad.err" && ! grep -q '^connected' "$CHAT_WORK/pin-bad.err"; then
    chat_pass "pin-bad says why: $(grep -m1 'is pinned' "$CHAT_WORK/pin-bad.err")"
else
    chat_fail "pin-bad: no clear pinning error on stderr"
fi
if grep -q '^connected' "$CHAT_WORK/impostor.err"; then
    chat_fail "the impostor got a connected line"
else
    chat_pass "the impostor never got connected"
fi
chat_stop impostor || true

# ---- 3. injection by a third host ---------------------------------------------
ip netns exec "$(natlab_ns mallory)" sysctl -qw net.ipv4.ip_nonlocal_bind=1
# The direct path under attack must be direct-udp: with TCP between the two
# routers open, auto mode may settle on direct-tcp (whichever tier-0 path is
# up first is kept), so drop TCP between ra and rb for this part.
natlab_exec ra nft insert rule ip filt forward ip daddr 203.0.113.12 meta l4proto tcp drop
natlab_exec rb nft insert rule ip filt forward ip daddr 203.0.113.11 meta l4proto tcp drop
chat_start_chat bob i-bob --server "$RZ" --name i-bob --timeout 20 -v
chat_wait_grep i-bob err registered 10 || chat_fail "i-bob did not register"
chat_start_chat alice i-alice --server "$RZ" --name i-alice --peer i-bob --transport auto --timeout 20 -v
chat_wait_grep i-alice err '^connected ' 15 || chat_fail "i-alice did not connect"
chat_wait_grep i-bob err '^connected ' 5 || chat_fail "i-bob did not connect"
# auto: relay first, then the upgrade; the relay path stays up beside it
chat_wait_grep i-alice err '^(connected|path) peer=i-bob path=direct-udp ' 10 || chat_fail "i-alice never went direct"
chat_wait_grep i-bob err '^(connected|path) peer=i-alice path=direct-udp ' 10 || chat_fail "i-bob never went direct"
# alice's view: bob's public endpoint; bob's view: alice's public endpoint
bob_pub=$(sed -n -E 's/^(connected|path) peer=i-bob path=direct-udp remote=([0-9.:]*) .*/\2/p' "$CHAT_WORK/i-alice.err" | tail -n1)
alice_pub=$(sed -n -E 's/^(connected|path) peer=i-alice path=direct-udp remote=([0-9.:]*) .*/\2/p' "$CHAT_WORK/i-bob.err" | tail -n1)
paths_before_a=$(grep -cE '^(connected|path) ' "$CHAT_WORK/i-alice.err" || true)
paths_before_b=$(grep -cE '^(connected|path) ' "$CHAT_WORK/i-bob.err" || true)
sid=$(sed -n 's/.*punching to i-bob .*session \([0-9a-f]*\)).*/\1/p' "$CHAT_WORK/i-alice.err" | head -n1)
: >"$CHAT_WORK/expect.i-alice"
: >"$CHAT_WORK/expect.i-bob"
say_lines() { # say_lines FROM TO FIRST LAST
    local i
    for ((i = $3; i <= $4; i++)); do
        chat_send "$1" "msg $i from $1"
        printf '%s: %s\n' "$1" "msg $i from $1" >>"$CHAT_WORK/expect.$2"
        sleep 0.05
    done
}
if [ -n "$bob_pub" ] && [ -n "$alice_pub" ] && [ -n "$sid" ]; then
    say_lines i-bob i-alice 1 3
    say_lines i-alice i-bob 1 3
    # What reaches alice's host (behind her NAT), to prove the attack arrived.
    chat_spawn alice acap /dev/null tcpdump -i eth0 -U -s 0 -n -w "$CHAT_WORK/alice.pcap" udp
    sleep 1
    # Spoof bob's public endpoint towards alice's, and alice's towards bob's.
    if natlab_exec mallory python3 "$(dirname "$0")/inject.py" "$bob_pub" "$alice_pub" "$sid" 20 \
        >"$CHAT_WORK/inject.out" 2>&1 &&
        natlab_exec mallory python3 "$(dirname "$0")/inject.py" "$alice_pub" "$bob_pub" "$sid" 20 \
            >>"$CHAT_WORK/inject.out" 2>&1 &&
        natlab_exec mallory python3 "$(dirname "$0")/inject.py" 203.0.113.1:7350 "$bob_pub" "$sid" 20 relay \
            >>"$CHAT_WORK/inject.out" 2>&1 &&
        natlab_exec mallory python3 "$(dirname "$0")/inject.py" 203.0.113.1:7350 "$alice_pub" "$sid" 20 relay \
            >>"$CHAT_WORK/inject.out" 2>&1; then
        while read -r l; do chat_pass "$l"; done <"$CHAT_WORK/inject.out"
    else
        chat_fail "injector failed: $(cat "$CHAT_WORK/inject.out")"
    fi
    sleep 0.5
    kill -INT "${CHAT_PID[acap]}" 2>/dev/null || true
    chat_wait_exit acap 5 || true
    if grep -aq "INJECTED" "$CHAT_WORK/alice.pcap"; then
        chat_pass "the spoofed datagrams crossed alice's NAT and reached her host"
    else
        chat_fail "no injected datagram reached alice's host: the attack proves nothing"
    fi
    say_lines i-bob i-alice 4 6
    say_lines i-alice i-bob 4 6
    chat_wait_lines i-alice 6 10 || chat_fail "i-alice got fewer than 6 lines after the injection"
    chat_wait_lines i-bob 6 10 || chat_fail "i-bob got fewer than 6 lines after the injection"
    chat_close i-alice
    sleep 0.3
    chat_close i-bob
    for r in i-alice i-bob; do
        if chat_wait_exit "$r" 10 && [ "${CHAT_RC[$r]}" = 0 ]; then
            chat_pass "$r exited 0 after the injection"
        else
            chat_fail "$r: exit '${CHAT_RC[$r]:-still running}' (want 0)"
        fi
        if grep -q INJECTED "$CHAT_WORK/$r.out" "$CHAT_WORK/$r.err"; then
            chat_fail "$r printed injected text"
        else
            chat_pass "$r printed nothing injected"
        fi
        before=$paths_before_a
        [ "$r" = i-bob ] && before=$paths_before_b
        after=$(grep -cE '^(connected|path) ' "$CHAT_WORK/$r.err" || true)
        if [ "$after" != "$before" ]; then
            chat_fail "$r changed path after the injection: $(grep -E '^(connected|path) ' "$CHAT_WORK/$r.err" | tail -n +"$((before + 1))" | tr '\n' ' ')"
        else
            chat_pass "$r stayed on its direct-udp path (relay path up beside it)"
        fi
    done
    chat_check_output i-alice "$CHAT_WORK/expect.i-alice"
    chat_check_output i-bob "$CHAT_WORK/expect.i-bob"
else
    chat_fail "could not read endpoints/session (bob_pub=$bob_pub alice_pub=$alice_pub sid=$sid)"
fi
chat_exit
