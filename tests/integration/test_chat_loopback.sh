#!/usr/bin/env bash
# tests/integration/test_chat_loopback.sh BINDIR
# punchline-chat end to end on 127.0.0.1 (no root needed): a rendezvous on a
# free port, bob waits, alice connects by name, a conversation both ways,
# clean exits on EOF; the same over --transport relay; the README example;
# the error paths (unknown peer, rendezvous that cannot bind), STUN with
# coturn's client, and --help of both binaries.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=loopback_test.sh
. "$here/loopback_test.sh" "${1:-}"
rz_bin="$CHAT_BIN_DIR/punchline-rendezvous"
chat_bin="$CHAT_BIN_DIR/punchline-chat"

# --help of both binaries: exit 0 and print a usage text (stdout or stderr).
for bin in punchline-rendezvous punchline-chat; do
    rc=0
    timeout 10 "$CHAT_BIN_DIR/$bin" --help >"$CHAT_WORK/help-$bin.out" 2>"$CHAT_WORK/help-$bin.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        chat_fail "$bin --help exited $rc (want 0)"
    elif ! cat "$CHAT_WORK/help-$bin.out" "$CHAT_WORK/help-$bin.err" | grep -qi usage; then
        chat_fail "$bin --help printed no usage text"
    else
        chat_pass "$bin --help"
    fi
done

# A free port: random in 20000-60000, not in use, and the rendezvous must
# actually bind it (it exits non-zero when it cannot; then try another).
if ! chat_start_rendezvous_any_port 127.0.0.1; then
    chat_fail "could not start punchline-rendezvous on 127.0.0.1"
    exit 1
fi
port=$CHAT_RZ_PORT
chat_pass "rendezvous listening on 127.0.0.1:$port"
server="127.0.0.1:$port"

chat_conversation "$server" - - 127.0.0.1 127.0.0.1 || true

# The README's library example (built from README.md as punchline-hello)
# against a waiting chat: hello sends "hello", prints the reply, half-closes.
hello_bin="$CHAT_BIN_DIR/punchline-hello"
if [ -x "$hello_bin" ]; then
    chat_start_chat - readme-bob --server "$server" --name readme-bob --timeout 20
    if ! chat_wait_grep readme-bob err '^registered ' 10; then
        chat_fail "readme-bob did not register"
    else
        chat_spawn - hello /dev/null "$hello_bin" "$server" readme-alice readme-bob
        if ! chat_wait_grep readme-bob out '^readme-alice: hello$' 10; then
            chat_fail "README example: 'hello' did not reach the chat"
        else
            chat_send readme-bob "hi from the chat"
            chat_close readme-bob
            if ! chat_wait_exit hello 10 || ! chat_wait_exit readme-bob 10; then
                chat_fail "README example or its chat peer still running"
            elif [ "${CHAT_RC[hello]}" -ne 0 ] || [ "${CHAT_RC[readme-bob]}" -ne 0 ]; then
                chat_fail "README example exited ${CHAT_RC[hello]}, chat ${CHAT_RC[readme-bob]} (want 0, 0)"
            elif ! grep -qx 'readme-bob says: hi from the chat' "$CHAT_WORK/hello.out"; then
                chat_fail "README example did not print the reply"
            else
                chat_pass "README example: hello sent, reply printed, both exit 0"
            fi
        fi
    fi
fi

# Unknown peer: exit 1 quickly with "unknown peer".
t0=$(date +%s%N)
chat_spawn - unknown /dev/null "$chat_bin" --server "$server" --name carol --peer nobody --timeout 20
if ! chat_wait_exit unknown 15; then
    chat_fail "chat --peer nobody still running after 15s (want a quick 'unknown peer' error)"
else
    ms=$((($(date +%s%N) - t0) / 1000000))
    if [ "${CHAT_RC[unknown]}" -ne 1 ]; then
        chat_fail "chat --peer nobody exited ${CHAT_RC[unknown]} (want 1)"
    elif ! grep -q 'unknown peer' "$CHAT_WORK/unknown.err" "$CHAT_WORK/unknown.out"; then
        chat_fail "chat --peer nobody: no 'unknown peer' message"
    elif [ "$ms" -gt 5000 ]; then
        chat_fail "chat --peer nobody took ${ms}ms (want well under the 20s timeout)"
    else
        chat_pass "unknown peer rejected in ${ms}ms"
    fi
fi

# --transport relay: the same conversation through the rendezvous relay
# (relay-udp; the remote both sides report is the rendezvous itself).
chat_log "--- --transport relay"
CHAT_TRANSPORT=relay CHAT_PATH=relay-udp \
    chat_talk "$server" - r-alice 127.0.0.1 - r-bob 127.0.0.1 || true

# A peer that vanishes (kill -9: no Close) is noticed: with keepalives every
# second and a 3 s path timeout, every path dies (direct ones by consent,
# relay-tcp never becomes ready again) and the survivor gives up with
# "the path stopped answering" within path timeout + path timeout, instead
# of waiting for ever on a pending attempt.
chat_log "--- a peer that vanishes"
chat_start_chat - v-bob --server "$server" --name v-bob --keepalive 1 --path-timeout 3 -v --timeout 20
if chat_wait_grep v-bob err '^registered ' 10; then
    chat_start_chat - v-alice --server "$server" --name v-alice --peer v-bob --keepalive 1 \
        --path-timeout 3 --timeout 20
    if chat_wait_grep v-bob err '^connected ' 10 && chat_wait_grep v-alice err '^connected ' 10; then
        # the chat itself, not its `timeout` wrapper (CHAT_PID)
        vpid=$(pgrep -P "${CHAT_PID[v-alice]}" -x punchline-chat || true)
        [ -n "$vpid" ] && kill -9 "$vpid"
        t0=$SECONDS
        if ! chat_wait_exit v-bob 15; then
            chat_fail "v-bob still running 15 s after its peer vanished"
            chat_stop v-bob || true
        elif [ "${CHAT_RC[v-bob]}" -ne 1 ] || ! grep -q 'stopped answering' "$CHAT_WORK/v-bob.err"; then
            chat_fail "v-bob: exit ${CHAT_RC[v-bob]} without 'stopped answering' (want 1 and the reason)"
        else
            chat_pass "a vanished peer is noticed: exit 1 after $((SECONDS - t0)) s ($(grep -m1 -o 'the path stopped answering.*' "$CHAT_WORK/v-bob.err"))"
        fi
    else
        chat_fail "v-alice and v-bob did not connect"
    fi
    chat_stop v-alice || true
else
    chat_fail "v-bob did not register"
fi

# STUN (RFC 8489): coturn's client learns its reflexive address from us.
if command -v turnutils_stunclient >/dev/null 2>&1; then
    if out=$(timeout 10 turnutils_stunclient -p "$port" 127.0.0.1 2>&1) &&
        grep -q 'UDP reflexive addr: 127.0.0.1:[0-9]' <<<"$out"; then
        chat_pass "turnutils_stunclient: $(grep -m1 -o 'UDP reflexive addr: [0-9.:]*' <<<"$out")"
    else
        chat_fail "turnutils_stunclient got no reflexive address: $out"
    fi
else
    chat_log "SKIP: turnutils_stunclient not installed (Debian coturn); scripts/deps.sh installs it"
fi

# The other direction: a peer learns its reflexive address from a standard
# STUN server (coturn's turnserver, STUN only) and offers it as a candidate.
if command -v turnserver >/dev/null 2>&1; then
    sport=$(shuf -i 20000-60000 -n 1)
    chat_spawn - turn /dev/null turnserver -n --listening-ip 127.0.0.1 --listening-port "$sport" \
        --stun-only --no-tls --no-dtls -m 0 --no-cli --log-file stdout
    sleep 0.5
    chat_start_chat - s-bob --server "$server" --name s-bob --stun "127.0.0.1:$sport" -v --timeout 20
    if chat_wait_grep s-bob err "STUN server 127.0.0.1:$sport: our reflexive address is 127.0.0.1:[0-9]+" 10 &&
        chat_wait_grep s-bob err '^registered ' 10; then
        sp=$(sed -n 's/.*our reflexive address is 127.0.0.1:\([0-9]*\).*/\1/p' "$CHAT_WORK/s-bob.err" | head -n1)
        rp=$(sed -n 's/^registered name=s-bob public=127.0.0.1:\([0-9]*\)$/\1/p' "$CHAT_WORK/s-bob.err")
        if [ -n "$sp" ] && [ "$sp" = "$rp" ]; then
            chat_pass "punchline-chat --stun (coturn turnserver): reflexive 127.0.0.1:$sp = the socket the rendezvous saw"
        else
            chat_fail "STUN reflexive port '$sp' differs from the registered public port '$rp'"
        fi
    else
        chat_fail "no reflexive address from turnserver via --stun"
    fi
    chat_stop s-bob || true
    chat_stop turn || true
else
    chat_log "SKIP: turnserver not installed (Debian coturn); scripts/deps.sh installs it"
fi

# A second rendezvous on the same address cannot bind: exit 1, with a message.
chat_spawn - rz-dup /dev/null "$rz_bin" --listen "$server"
if ! chat_wait_exit rz-dup 5; then
    chat_fail "second rendezvous on busy $server still running after 5s (want exit 1: cannot bind)"
    chat_stop rz-dup || true
elif [ "${CHAT_RC[rz-dup]}" -ne 1 ]; then
    chat_fail "second rendezvous on busy $server exited ${CHAT_RC[rz-dup]} (want 1)"
elif [ ! -s "$CHAT_WORK/rz-dup.err" ]; then
    chat_fail "second rendezvous on busy $server exited 1 without a message"
else
    chat_pass "rendezvous refuses a busy port: $(head -n 1 "$CHAT_WORK/rz-dup.err")"
fi

# SIGTERM: the rendezvous exits cleanly.  The signal goes to the server
# itself, not to its `timeout -k 2` wrapper (CHAT_PID), whose KILL two
# seconds later would turn a slow exit (a loaded machine, LeakSanitizer's
# exit scan) into a 137 that says nothing about the server.
rzpid=$(pgrep -P "${CHAT_PID[rendezvous]}" -x punchline-rende || true)
t0=$(date +%s%N)
if [ -n "$rzpid" ]; then kill -TERM "$rzpid"; else kill -TERM "${CHAT_PID[rendezvous]}"; fi
if ! chat_wait_exit rendezvous 10; then
    chat_fail "rendezvous did not exit within 10 s of SIGTERM"
    chat_stop rendezvous || true
elif [ "${CHAT_RC[rendezvous]}" -ne 0 ]; then
    chat_fail "rendezvous exited ${CHAT_RC[rendezvous]} on SIGTERM (want 0)"
else
    chat_pass "rendezvous exits 0 on SIGTERM ($((($(date +%s%N) - t0) / 1000000)) ms)"
fi

chat_exit
