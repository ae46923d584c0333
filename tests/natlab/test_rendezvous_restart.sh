#!/usr/bin/env bash
# tests/natlab/test_rendezvous_restart.sh BINDIR
# The rendezvous dies (kill -9) while alice and bob, behind two
# port-restricted NATs, talk over a direct-udp path:
#  - their conversation goes on over the direct path meanwhile;
#  - both notice the loss and, once a rendezvous runs again on the same
#    address, register again by themselves within 30 s (jittered backoff);
#  - everything sent arrives once and in order; both exit 0 at the end.
# Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lab_test.sh
. "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"

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

chat_start_chat bob bob --server "$RZ" --name bob --keepalive 2 --timeout 20
chat_wait_grep bob err '^registered ' 10 || chat_fail "bob did not register"
chat_start_chat alice alice --server "$RZ" --name alice --peer bob --transport udp --keepalive 2 --timeout 20
chat_wait_grep alice err '^connected peer=bob path=direct-udp ' 15 || chat_fail "alice not connected over direct-udp"
chat_wait_grep bob err '^connected peer=alice path=direct-udp ' 5 || chat_fail "bob not connected over direct-udp"

: >"$CHAT_WORK/expect.alice"
: >"$CHAT_WORK/expect.bob"
talk() { # talk N: one line each way
    chat_send alice "line $1 from alice"
    printf 'alice: line %s from alice\n' "$1" >>"$CHAT_WORK/expect.bob"
    chat_send bob "line $1 from bob"
    printf 'bob: line %s from bob\n' "$1" >>"$CHAT_WORK/expect.alice"
}
talk 1
chat_wait_lines alice 1 5 && chat_wait_lines bob 1 5 || chat_fail "line 1 did not arrive"

# kill -9 the server itself (CHAT_PID is its `timeout` wrapper)
rz_pids=$(ip netns pids "$(natlab_ns inet)" | while read -r pid; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = punchline-rende ] && echo "$pid"; done || true)
if [ -z "$rz_pids" ]; then
    chat_fail "cannot find the rendezvous process"
else
    kill -9 $rz_pids
    chat_wait_exit rendezvous 5 || true
    chat_pass "rendezvous killed with SIGKILL (pid $rz_pids)"
fi
t_kill=$SECONDS

for r in alice bob; do
    if chat_wait_grep "$r" err 'registering again in [0-9.]+ s' 10; then
        chat_pass "$r: $(grep -m1 -o 'rendezvous: .*registering again in [0-9.]* s' "$CHAT_WORK/$r.err")"
    else
        chat_fail "$r did not notice the lost rendezvous"
    fi
done
# the direct path does not need the server
talk 2
chat_wait_lines alice 2 10 && chat_wait_lines bob 2 10 && chat_pass "line 2 crossed the direct path while the rendezvous was down" ||
    chat_fail "line 2 did not arrive while the rendezvous was down"

sleep 2 # down for a while: the peers' retries meet a closed port first
if ! chat_start_rendezvous inet 203.0.113.1 7350 rendezvous2; then
    chat_fail "the rendezvous did not come back up"
fi
# count_registered ROLE N SECONDS: until ROLE printed N 'registered' lines
count_registered() {
    local deadline=$((SECONDS + $3))
    while [ "$(grep -c '^registered ' "$CHAT_WORK/$1.err")" -lt "$2" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
for r in alice bob; do
    if count_registered "$r" 2 30; then
        chat_pass "$r registered again, $((SECONDS - t_kill)) s after the kill"
    else
        chat_fail "$r did not register again within 30 s of the restart"
    fi
done
if grep -q "peer alice registered" "$CHAT_WORK/rendezvous2.err" && grep -q "peer bob registered" "$CHAT_WORK/rendezvous2.err"; then
    chat_pass "the new rendezvous knows both peers"
else
    chat_fail "the new rendezvous does not list both peers as registered"
fi

talk 3
chat_wait_lines alice 3 10 && chat_wait_lines bob 3 10 || chat_fail "line 3 did not arrive"
chat_close alice
sleep 0.3
chat_close bob
for r in alice bob; do
    if chat_wait_exit "$r" 10 && [ "${CHAT_RC[$r]}" = 0 ]; then
        chat_pass "$r exited 0"
    else
        chat_fail "$r: exit ${CHAT_RC[$r]:-still running} (want 0)"
    fi
done
chat_check_output alice "$CHAT_WORK/expect.alice"
chat_check_output bob "$CHAT_WORK/expect.bob"
if [ "$(grep -c '^connected ' "$CHAT_WORK/alice.err")" = 1 ] && ! grep -q '^path ' "$CHAT_WORK/alice.err"; then
    chat_pass "one connection, one path, all along"
else
    chat_fail "alice's connection changed: $(grep -E '^(connected|path) ' "$CHAT_WORK/alice.err" | tr '\n' ' ')"
fi
chat_exit
