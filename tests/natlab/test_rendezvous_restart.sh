#!/usr/bin/env bash
# tests/natlab/test_rendezvous_restart.sh BINDIR
# The rendezvous dies (kill -9) while alice and bob, behind two
# port-restricted NATs, talk over a direct-udp path, and six idle peers
# (three behind each NAT) wait for calls:
#  - the conversation goes on over the direct path meanwhile (a line each
#    way every 0.2 s for the whole outage);
#  - every peer notices the loss and, once a rendezvous runs again on the
#    same address, registers again by itself within 30 s;
#  - the backoff is jittered: every first wait is 1 s +-25%, not all the
#    same, and the eight re-registrations are spread out in time (no
#    thundering herd at the restarted server);
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

idle=(idle1 idle2 idle3 idle4 idle5 idle6)
for i in "${!idle[@]}"; do
    where=alice
    [ $((i % 2)) = 0 ] || where=bob
    chat_start_chat "$where" "${idle[$i]}" --server "$RZ" --name "${idle[$i]}" --timeout 60
done
for r in "${idle[@]}"; do
    chat_wait_grep "$r" err '^registered ' 10 || chat_fail "$r did not register"
done

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

all=(alice bob "${idle[@]}")
firsts=()
for r in "${all[@]}"; do
    if chat_wait_grep "$r" err 'registering again in [0-9.]+ s' 10; then
        first=$(grep -m1 -o 'registering again in [0-9.]* s' "$CHAT_WORK/$r.err" | awk '{print $4}')
        firsts+=("$first")
        # RETRY_FIRST_MS (1 s) +- 25% (peer/control.c)
        if awk -v d="$first" 'BEGIN { exit !(d >= 0.7 && d <= 1.3) }'; then
            chat_pass "$r noticed the loss; first wait $first s"
        else
            chat_fail "$r: first wait $first s, want 1 s +-25%"
        fi
    else
        chat_fail "$r did not notice the lost rendezvous"
    fi
done
if [ "$(printf '%s\n' "${firsts[@]}" | sort -u | wc -l)" -ge 2 ]; then
    chat_pass "the first waits are jittered: ${firsts[*]}"
else
    chat_fail "every peer waits the same: ${firsts[*]}"
fi

# The direct path does not need the server: lines go on during the whole
# outage (2 s down, then until every peer is registered again).
n=1
talk_until() { # talk_until SECONDS COND...: a line each way every 0.2 s
    local end=$((SECONDS + $1))
    shift
    while [ "$SECONDS" -lt "$end" ] && ! "$@"; do
        n=$((n + 1))
        talk "$n"
        sleep 0.2
    done
}
talk_until 2 false
if ! chat_start_rendezvous inet 203.0.113.1 7350 rendezvous2; then
    chat_fail "the rendezvous did not come back up"
fi
t_up=$SECONDS
# all_registered_again: every peer printed a second 'registered' line
all_registered_again() {
    local r
    for r in "${all[@]}"; do
        [ "$(grep -c '^registered ' "$CHAT_WORK/$r.err")" -ge 2 ] || return 1
    done
}
talk_until 30 all_registered_again
for r in "${all[@]}"; do
    if [ "$(grep -c '^registered ' "$CHAT_WORK/$r.err")" -ge 2 ]; then
        chat_pass "$r registered again ($((SECONDS - t_kill)) s after the kill at the latest)"
    else
        chat_fail "$r did not register again within 30 s of the restart ($((SECONDS - t_up)) s)"
    fi
done
for r in "${all[@]}"; do
    grep -q "peer $r registered" "$CHAT_WORK/rendezvous2.err" ||
        chat_fail "the new rendezvous does not list $r as registered"
done
# when the new server saw each registration (its log lines start HH:MM:SS.mmm)
spread=$(sed -n 's/^\([0-9:.]*\) .*peer [a-z0-9]* registered from .*/\1/p' "$CHAT_WORK/rendezvous2.err" |
    awk -F: '{ t = ($1 * 3600 + $2 * 60 + $3) * 1000; if (NR == 1 || t < lo) lo = t; if (t > hi) hi = t }
             END { printf "%d", hi - lo }')
chat_log "info: the ${#all[@]} re-registrations at the new server span ${spread:-?} ms"
if [ -n "$spread" ] && [ "$spread" -ge 100 ]; then
    chat_pass "re-registrations spread over $spread ms, not all at once"
else
    chat_fail "re-registrations span ${spread:-?} ms: no jitter?"
fi
if chat_wait_lines alice "$n" 10 && chat_wait_lines bob "$n" 10; then
    chat_pass "all $n lines each way crossed the direct path while the rendezvous was down or coming back"
else
    chat_fail "lines sent during the outage did not all arrive"
fi
for r in "${idle[@]}"; do chat_stop "$r" || true; done

n=$((n + 1))
talk "$n"
chat_wait_lines alice "$n" 10 && chat_wait_lines bob "$n" 10 || chat_fail "line $n did not arrive"
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
