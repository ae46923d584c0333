#!/usr/bin/env bash
# tests/natlab/test_chat_relay.sh BINDIR
# The rendezvous relay and relay-first upgrade through real NATs:
#
#   alice 10.0.1.10 -- ra [port-restricted] 203.0.113.11 --+
#   bob   10.0.2.10 -- rb [port-restricted] 203.0.113.12 --+
#   sam   10.0.3.10 -- rs [symmetric]       203.0.113.13 --+-- internet 203.0.113.1
#   tom   10.0.4.10 -- rt [symmetric]       203.0.113.14 --+   (rendezvous :7350)
#   uma   10.0.5.10 -- ru [port-restricted, no UDP out]    +
#   una   10.0.6.10 -- rv [port-restricted, UDP out only   +
#                          to the rendezvous]              +
#   eve   203.0.113.66 (public host: the third party) -----+
#
# Cases (--transport auto, the default, unless said):
#  a. symmetric vs symmetric: no direct path; both sides connect over
#     relay-udp via the rendezvous, talk, exit 0, and stay on the relay.
#  b. uma can send no UDP at all: she registers without UDP ("public=none")
#     and still connects to bob: over relay-tcp or direct-tcp, ending on
#     direct-tcp (their NATs allow TCP simultaneous open).
#  c. una can send UDP only to the rendezvous, and calls sam (symmetric): no
#     direct path, so the connection runs over relay-udp.
#  d. upgrade: alice calls bob (TCP between their routers blocked, and
#     alice's first UDP probes to bob lost, so the direct path is UDP and
#     comes up ~0.35 s after the relay): the connection starts on the relay
#     while alice streams 300 numbered lines;
#     both sides print a `path ... path=direct-udp` line; bob receives 1..300
#     exactly once, in order; the rendezvous relayed some of them.
#  e. eve sends relayed datagrams with case d's real session id and with
#     guessed ones: nothing is forwarded (the rendezvous counts them as
#     bad-source and unknown-session drops) and eve gets no answer.
#  f. --transport relay between two port-restricted peers: relay-udp.
#  g. uma (no UDP at all) calls sam (symmetric): no direct path and no UDP,
#     so the conversation runs over relay-tcp.
#  h. fallback and re-upgrade: alice and bob (--keepalive 1 --path-timeout 3)
#     are on direct-udp; UDP between their routers is then blocked: both
#     move to the relay by themselves; the block is lifted: they punch again
#     (first retry 5 s after the direct path failed) and move back to
#     direct-udp; numbered lines sent throughout all arrive, in order.
# Needs root; exits 77 (skip) otherwise. Runs in about 40 s.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lab_test.sh
. "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"
RZ=203.0.113.1:7350

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_router rs 203.0.113.13 10.0.3.0/24 symmetric
natlab_add_router rt 203.0.113.14 10.0.4.0/24 symmetric
natlab_add_router ru 203.0.113.15 10.0.5.0/24 port-restricted
natlab_add_router rv 203.0.113.16 10.0.6.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10
natlab_add_host sam rs 10.0.3.10
natlab_add_host tom rt 10.0.4.10
natlab_add_host uma ru 10.0.5.10
natlab_add_host una rv 10.0.6.10
natlab_add_public_host eve 203.0.113.66

# Extra filters, inserted at the top of a router's forward chain (lib.sh's
# `table ip filt`; `insert` puts each rule first, so the last one inserted is
# evaluated first).
fw() { natlab_exec "$1" nft insert rule ip filt forward "${@:2}"; }
fw ru iifname lan meta l4proto udp drop                       # uma: no UDP out at all
fw rv iifname lan meta l4proto udp drop                       # una: UDP only...
fw rv iifname lan ip daddr 203.0.113.1 udp dport 7350 accept  # ...to the rendezvous
fw rb ip daddr 203.0.113.11 meta l4proto tcp drop             # case d: no TCP rb -> ra
# case d: the first 250 bytes of UDP from alice to bob's router are lost (3
# probes of ~85 bytes at +0, 50, 150 ms; the one at +350 ms passes), so the direct
# path comes up ~0.35 s after the relay, in the middle of the ~1.5 s stream.
fw ra iifname lan ip daddr 203.0.113.12 meta l4proto udp quota until 250 bytes drop
chat_log "lab $NATLAB_PREFIX: ra/rb port-restricted, rs/rt symmetric, ru no UDP out,"
chat_log "  rv UDP out only to the rendezvous, eve public; rb drops TCP to ra; ra drops"
chat_log "  alice's first 250 bytes of UDP to rb"

if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on $RZ"
    exit 1
fi
chat_pass "rendezvous listening on $RZ"
export CHAT_TRANSPORT=auto

# last_path ROLE: the path of the last connected/path line on ROLE's stderr.
last_path() {
    sed -n 's/^\(connected\|path\) peer=[^ ]* path=\([^ ]*\) .*/\2/p' "$CHAT_WORK/$1.err" | tail -n1
}
# expect_final CASE ROLE REGEX
expect_final() {
    local p
    p=$(last_path "$2")
    if [[ $p =~ ^($3)$ ]]; then
        chat_pass "$1: $2 ends on $p"
    else
        chat_fail "$1: $2 ends on '$p', want $3"
    fi
}
# rz_stats: the rendezvous' counter line, freshly dumped by SIGUSR1.
rz_stats() {
    local before
    before=$(grep -c 'relay: sessions' "$CHAT_WORK/rendezvous.err" || true)
    pkill -USR1 -P "${CHAT_PID[rendezvous]}" punchline-rend || true
    for _ in $(seq 50); do
        [ "$(grep -c 'relay: sessions' "$CHAT_WORK/rendezvous.err" || true)" -gt "$before" ] && break
        sleep 0.1
    done
    grep 'relay: sessions' "$CHAT_WORK/rendezvous.err" | tail -n1
}
# stat_of LINE NAME: the number after NAME= in a counter line.
stat_of() { sed -n "s/.*[ ;]$2=\([0-9]*\).*/\1/p" <<<"$1"; }

# ---------------------------------------------------------------------------
chat_log "--- case a: sam (symmetric) calls tom (symmetric)"
CHAT_PATH=relay-udp chat_talk "$RZ" sam a-sam 203.0.113.1 tom a-tom 203.0.113.1 || true
expect_final a a-sam relay-udp
expect_final a a-tom relay-udp

chat_log "--- case b: uma (no UDP at all) calls bob"
CHAT_PATH='relay-tcp|direct-tcp' CHAT_T_REGISTER=15 \
    chat_talk "$RZ" uma b-uma "203.0.113.1|$(natlab_wan_ip rb)" bob b-bob "203.0.113.1|$(natlab_wan_ip ru)" || true
if grep -q '^registered name=b-uma public=none$' "$CHAT_WORK/b-uma.err"; then
    chat_pass "b: uma registered without UDP (public=none)"
else
    chat_fail "b: uma's registered line: $(grep -m1 '^registered' "$CHAT_WORK/b-uma.err" || echo none)"
fi
expect_final b b-uma direct-tcp
expect_final b b-bob direct-tcp

chat_log "--- case c: una (UDP only to the rendezvous) calls sam (symmetric)"
CHAT_PATH='relay-udp|relay-tcp' \
    chat_talk "$RZ" una c-una 203.0.113.1 sam c-sam 203.0.113.1 || true
expect_final c c-una relay-udp
expect_final c c-sam relay-udp

# ---------------------------------------------------------------------------
chat_log "--- case d: alice calls bob, relay first, upgrade while 300 lines stream"
stats0=$(rz_stats)
udp0=$(stat_of "$stats0" packets)
chat_start_chat bob d-bob --server "$RZ" --name d-bob --timeout "$CHAT_T_CONNECT" -v
if chat_wait_grep d-bob err registered "$CHAT_T_REGISTER"; then
    chat_start_chat alice d-alice --server "$RZ" --name d-alice --peer d-bob --timeout "$CHAT_T_CONNECT" -v
    # 300 numbered lines, one every few ms from alice's start, so the stream
    # is in flight when the direct path takes over.
    for i in $(seq 1 300); do
        chat_send d-alice "$i"
        sleep 0.003
    done
    chat_close d-alice
else
    chat_fail "d: bob did not register"
fi
d_ok=1
chat_wait_lines d-bob 300 "$CHAT_T_LINES" || { chat_fail "d: bob got $(wc -l <"$CHAT_WORK/d-bob.out") of 300 lines"; d_ok=0; }
chat_close d-bob
chat_wait_exit d-alice "$CHAT_T_EXIT" || chat_fail "d: alice still running"
chat_wait_exit d-bob "$CHAT_T_EXIT" || chat_fail "d: bob still running"
seq 1 300 | sed 's/^/d-alice: /' >"$CHAT_WORK/d-expect"
if [ "$d_ok" = 1 ] && cmp -s "$CHAT_WORK/d-expect" "$CHAT_WORK/d-bob.out"; then
    chat_pass "d: bob received lines 1..300 exactly once, in order"
else
    chat_fail "d: bob's lines differ from 1..300 (first difference: $(diff "$CHAT_WORK/d-expect" "$CHAT_WORK/d-bob.out" | sed -n 2p))"
fi
for role in d-alice d-bob; do
    first=$(sed -n 's/^connected peer=[^ ]* path=\([^ ]*\) .*/\1/p' "$CHAT_WORK/$role.err")
    if [[ $first == relay-* ]]; then
        chat_pass "d: $role started on $first"
    else
        chat_fail "d: $role started on '$first', want a relay path first"
    fi
    if grep -q '^path peer=[^ ]* path=direct-udp remote=' "$CHAT_WORK/$role.err"; then
        chat_pass "d: $role: $(grep -m1 '^path peer=' "$CHAT_WORK/$role.err")"
    else
        chat_fail "d: $role printed no 'path ... path=direct-udp' line"
    fi
    [ "${CHAT_RC[$role]:-x}" = 0 ] && chat_pass "d: $role exited 0" || chat_fail "d: $role exited ${CHAT_RC[$role]:-?}"
done
stats1=$(rz_stats)
relayed=$(($(stat_of "$stats1" packets) - udp0))
# the relay-udp checks are about 4-8 datagrams; data and acks make it more
if [ "$relayed" -gt 50 ]; then
    chat_pass "d: the rendezvous relayed $relayed datagrams for this session before the upgrade"
else
    chat_fail "d: only $relayed datagrams relayed: the stream did not start on the relay"
fi

# ---------------------------------------------------------------------------
chat_log "--- case e: eve injects relayed datagrams (real and guessed session ids)"
sid=$(sed -n 's/.*session \([0-9a-f]\{16\}\): d-alice -> d-bob.*/\1/p' "$CHAT_WORK/rendezvous.err" | head -n1)
if [ -z "$sid" ]; then
    chat_fail "e: no session id for d-alice -> d-bob in the rendezvous log"
else
    bad0=$(stat_of "$stats1" bad_source)
    unk0=$(stat_of "$stats1" unknown_session)
    got=$(natlab_exec eve python3 - "$sid" <<'EOF'
import socket, struct, sys
sid = int(sys.argv[1], 16)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
inner = b"\x0c" + b"\x08\x01" + b"x" * 20   # marker + some bytes
for i in range(10):                         # the real session id
    s.sendto(b"\x0d" + struct.pack(">Q", sid) + inner, ("203.0.113.1", 7350))
for g in range(1, 11):                      # guesses next to it
    s.sendto(b"\x0d" + struct.pack(">Q", sid ^ g) + inner, ("203.0.113.1", 7350))
n = 0
try:
    while True:
        s.recvfrom(2048)
        n += 1
except socket.timeout:
    pass
print(n)
EOF
)
    stats2=$(rz_stats)
    bad=$(($(stat_of "$stats2" bad_source) - bad0))
    unk=$(($(stat_of "$stats2" unknown_session) - unk0))
    [ "$got" = 0 ] && chat_pass "e: eve got no answer" || chat_fail "e: eve received $got datagrams"
    [ "$bad" = 10 ] && chat_pass "e: 10 datagrams with the real session id dropped as bad source" ||
        chat_fail "e: bad_source drops went up by $bad, want 10 (stats: $stats2)"
    [ "$unk" = 10 ] && chat_pass "e: 10 guessed session ids dropped as unknown" ||
        chat_fail "e: unknown_session drops went up by $unk, want 10"
fi

# ---------------------------------------------------------------------------
chat_log "--- case f: alice calls bob with --transport relay"
CHAT_TRANSPORT=relay CHAT_PATH=relay-udp \
    chat_talk "$RZ" alice f-alice 203.0.113.1 bob f-bob 203.0.113.1 || true
expect_final f f-alice relay-udp
expect_final f f-bob relay-udp

# ---------------------------------------------------------------------------
chat_log "--- case g: uma (no UDP at all) calls sam (symmetric)"
CHAT_PATH=relay-tcp CHAT_T_REGISTER=15 \
    chat_talk "$RZ" uma g-uma 203.0.113.1 sam g-sam 203.0.113.1 || true
expect_final g g-uma relay-tcp
expect_final g g-sam relay-tcp

# ---------------------------------------------------------------------------
chat_log "--- case h: direct path lost and back: relay fallback, re-punch, upgrade"
# path_count ROLE PATH: how many connected/path lines name PATH
path_count() { grep -cE "^(connected|path) peer=[^ ]* path=$2 " "$CHAT_WORK/$1.err" || true; }
# wait_path ROLE PATH N SECONDS: until ROLE reported PATH N times
wait_path() {
    local end=$((SECONDS + $4))
    while [ "$(path_count "$1" "$2")" -lt "$3" ]; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}
# block ROUTER DST: drop UDP towards DST in ROUTER's forward chain; prints
# the rule handle for unblock
block() {
    natlab_exec "$1" nft -e -a insert rule ip filt forward ip daddr "$2" meta l4proto udp drop |
        sed -n 's/.*# handle \([0-9]*\).*/\1/p'
}
unblock() { natlab_exec "$1" nft delete rule ip filt forward handle "$2"; }
h_n=0
h_send() { # h_send COUNT: COUNT numbered lines from alice, 0.1 s apart
    local i
    for ((i = 0; i < $1; i++)); do
        h_n=$((h_n + 1))
        chat_send h-alice "$h_n"
        sleep 0.1
    done
}
h_opts=(--keepalive 1 --path-timeout 3 --timeout "$CHAT_T_CONNECT" -v)
chat_start_chat bob h-bob --server "$RZ" --name h-bob "${h_opts[@]}"
if ! chat_wait_grep h-bob err registered "$CHAT_T_REGISTER"; then
    chat_fail "h: bob did not register"
else
    chat_start_chat alice h-alice --server "$RZ" --name h-alice --peer h-bob "${h_opts[@]}"
    if wait_path h-alice direct-udp 1 15 && wait_path h-bob direct-udp 1 15; then
        chat_pass "h: both on direct-udp"
        h_send 5
        ha=$(block ra 203.0.113.12)
        hb=$(block rb 203.0.113.11)
        chat_log "info: h: UDP between ra and rb blocked (rule handles $ha, $hb)"
        h_send 60 # 6 s: the 3 s path timeout passes meanwhile
        if wait_path h-alice relay-udp 1 10 && wait_path h-bob relay-udp 1 10; then
            chat_pass "h: both fell back: $(grep '^path peer=.*relay-udp' "$CHAT_WORK/h-alice.err" | head -n1)"
        else
            chat_fail "h: no fallback to relay-udp after the direct path died"
        fi
        unblock ra "$ha"
        unblock rb "$hb"
        chat_log "info: h: block lifted"
        h_send 20
        if wait_path h-alice direct-udp 2 25 && wait_path h-bob direct-udp 2 25; then
            chat_pass "h: both back on direct-udp after re-punching: $(grep '^path peer=.*direct-udp' "$CHAT_WORK/h-alice.err" | tail -n1)"
        else
            chat_fail "h: not back on direct-udp within 25 s of lifting the block"
        fi
        h_send 5
    else
        chat_fail "h: not on direct-udp at the start"
    fi
    chat_close h-alice
    if chat_wait_lines h-bob "$h_n" "$CHAT_T_LINES" &&
        cmp -s <(seq 1 "$h_n" | sed 's/^/h-alice: /') "$CHAT_WORK/h-bob.out"; then
        chat_pass "h: bob received all $h_n lines in order across both switches"
    else
        chat_fail "h: bob's lines differ from 1..$h_n ($(wc -l <"$CHAT_WORK/h-bob.out") lines)"
    fi
    chat_close h-bob
    for role in h-alice h-bob; do
        if chat_wait_exit "$role" "$CHAT_T_EXIT" && [ "${CHAT_RC[$role]}" = 0 ]; then
            chat_pass "h: $role exited 0"
        else
            chat_fail "h: $role exit status ${CHAT_RC[$role]:-still running}"
        fi
    done
fi

chat_exit
