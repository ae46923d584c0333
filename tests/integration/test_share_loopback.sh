#!/usr/bin/env bash
# tests/integration/test_share_loopback.sh BINDIR
# punchline-share end to end on 127.0.0.1 (no root needed), one rendezvous:
#  - --help of every form; usage errors exit 2 with a message (no command,
#    missing/directory/FIFO FILE, a file name with a control character,
#    bad --out DIR, options of the other form, bad --transport/--peer-id);
#  - a random file of SHARE_MB MiB (default 8) over --transport auto, tcp
#    and relay: both exit 0, both final lines right, hashes equal
#    sha256sum's, the copy is identical, no part file is left; an empty file;
#  - an existing file at the receiver: refused without --force (both exit 1,
#    the original untouched, no part file), replaced with --force;
#  - resume: the sender (throttled by PUNCHLINE_SHARE_TEST_RATE, a test-only
#    knob) is killed with SIGKILL mid-way; the receiver exits 1 keeping the
#    part file; the same transfer again resumes at that offset (both sides
#    say "resume ... offset=N", N > 0) and ends with the right hash;
#  - SIGTERM of the receiver mid-way: it exits 130 keeping the part file,
#    and the sender learns at once (exit 1);
#  - a part file that is not a prefix of the file is detected ("starting
#    over") and the transfer still ends right;
#  - a source file touched while it is sent: the sender refuses to vouch
#    for it (both exit 1, nothing stored).
# The receiver's name rule against hostile senders (which the CLI cannot
# produce) is unit-tested: tests/unit/examples/test_share_msg.c.
# Runs in about 15 s (longer under ASan).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=loopback_test.sh
. "$here/loopback_test.sh" "${1:-}"
# shellcheck source=share_common.sh
. "$here/share_common.sh"
share_setup
MB=${SHARE_MB:-8}

# ---- usage -----------------------------------------------------------------
# expect_usage DESCRIPTION STATUS MESSAGE_RE ARGS...: punchline-share ARGS
# exits STATUS quickly, saying something that matches MESSAGE_RE.
expect_usage() {
    local what=$1 want=$2 re=$3 rc=0 out
    shift 3
    out=$(timeout 10 "$SHARE_BIN" "$@" 2>&1 </dev/null) || rc=$?
    if [ "$rc" -ne "$want" ]; then
        chat_fail "$what: exit $rc (want $want): $(head -c 300 <<<"$out")"
    elif ! grep -Eq -- "$re" <<<"$out"; then
        chat_fail "$what: output does not match '$re': $(head -c 300 <<<"$out")"
    else
        chat_pass "$what: exit $rc, $(grep -Em1 -- "$re" <<<"$out")"
    fi
}
export XDG_CONFIG_HOME="$CHAT_WORK/config"
rz=127.0.0.1:9 # never reached: these all stop before any network
for form in "" send recv; do
    expect_usage "${form:-share} --help" 0 '^Usage: punchline-share' ${form:+"$form"} --help
done
expect_usage "no command" 2 'say send or recv' --server "$rz" --name a
expect_usage "unknown command" 2 "unknown command 'sned'" sned x
expect_usage "send without FILE" 2 'send needs one FILE' send --server "$rz" --name a --peer b
expect_usage "send two FILEs" 2 'one FILE, got more' send a b --server "$rz" --name a --peer b
expect_usage "send without --peer" 2 'needs --peer' send /etc/hostname --server "$rz" --name a
expect_usage "send missing file" 2 'nope.bin: No such file' send "$CHAT_WORK/nope.bin" --server "$rz" --name a --peer b
expect_usage "send a directory" 2 'is a directory' send "$CHAT_WORK" --server "$rz" --name a --peer b
mkfifo "$CHAT_WORK/fifo"
expect_usage "send a FIFO" 2 'not a regular file' send "$CHAT_WORK/fifo" --server "$rz" --name a --peer b
bad=$'bad\nname'
printf x >"$CHAT_WORK/$bad"
expect_usage "send a name with a newline" 2 'control characters' send "$CHAT_WORK/$bad" --server "$rz" --name a --peer b
expect_usage "send --out" 2 '--out and --force are for recv' send /etc/hostname --out /tmp --server "$rz" --name a --peer b
expect_usage "send bad --transport" 2 'auto, udp, tcp or relay' send /etc/hostname --transport quic --server "$rz" --name a --peer b
expect_usage "send bad --peer-id" 2 '52-character id' send /etc/hostname --peer-id abc --server "$rz" --name a --peer b
expect_usage "recv missing --out" 2 'No such file' recv --out "$CHAT_WORK/none" --server "$rz" --name a
expect_usage "recv --out a file" 2 'not a directory' recv --out /etc/hostname --server "$rz" --name a
expect_usage "recv with FILE" 2 'recv takes no FILE' recv somefile --server "$rz" --name a
expect_usage "recv --transport" 2 'are for send' recv --transport tcp --server "$rz" --name a
expect_usage "recv without --name" 2 'required' recv --server "$rz"
expect_usage "bad --timeout" 2 '0..86400' recv --timeout -1 --server "$rz" --name a

# ---- transfers -------------------------------------------------------------
if ! chat_start_rendezvous_any_port 127.0.0.1; then
    chat_fail "could not start punchline-rendezvous on 127.0.0.1"
    exit 1
fi
rz=127.0.0.1:$CHAT_RZ_PORT
chat_pass "rendezvous listening on $rz"

src="$CHAT_WORK/src"
mkdir -p "$src"
share_random_file "$src/data.bin" "$MB"
chat_log "--- $MB MiB over auto, tcp, relay"
for t in auto tcp relay; do
    mkdir -p "$CHAT_WORK/out-$t"
    case $t in
        auto) want='direct-udp|direct-tcp|relay-udp' ;;
        tcp) want=direct-tcp ;;
        relay) want=relay-udp ;;
    esac
    share_transfer "$t" - - "$rz" "$src/data.bin" "$CHAT_WORK/out-$t" "$want" --transport "$t" || true
done

chat_log "--- an empty file"
: >"$src/empty"
mkdir -p "$CHAT_WORK/out-empty"
share_transfer empty - - "$rz" "$src/empty" "$CHAT_WORK/out-empty" 'direct-udp|direct-tcp|relay-udp' || true

# ---- no overwrite without --force --------------------------------------------
chat_log "--- an existing file at the receiver"
out="$CHAT_WORK/out-exists"
mkdir -p "$out"
echo "precious original" >"$out/data.bin"
cp "$out/data.bin" "$CHAT_WORK/original"
if share_start_recv exists - "$rz" "$out"; then
    share_start_send exists - "$rz" "$src/data.bin"
    if ! share_wait_failed exists 30; then
        :
    elif ! cmp -s "$out/data.bin" "$CHAT_WORK/original"; then
        chat_fail "exists: the existing file was changed"
    elif [ -e "$out/.data.bin.punchline-part" ]; then
        chat_fail "exists: a part file was created for a refused offer"
    elif ! grep -q 'refused the transfer: a file of that name exists' "$CHAT_WORK/exists-send.err" ||
        ! grep -q "data.bin exists (--force replaces it)" "$CHAT_WORK/exists-recv.err"; then
        chat_fail "exists: no clear message on both sides"
    else
        chat_pass "exists: refused, both exit 1, original untouched: $(grep -m1 'refused' "$CHAT_WORK/exists-send.err")"
    fi
else
    chat_fail "exists: receiver did not register"
fi
SHARE_RECV_ARGS=--force share_transfer force - - "$rz" "$src/data.bin" "$out" 'direct-udp|direct-tcp|relay-udp' || true

# ---- resume --------------------------------------------------------------------
chat_log "--- resume after SIGKILL of the sender"
out="$CHAT_WORK/out-resume"
mkdir -p "$out"
size=$(stat -c %s "$src/data.bin")
# 2 MB/s: the kill at >= 1/4 of the file lands well before its end.
# --transport udp: a single path, whose death the receiver notices after
# its --path-timeout (3 s).
PUNCHLINE_SHARE_TEST_RATE=2000000 share_interrupt cut - - "$rz" "$src/data.bin" "$out" $((size / 4)) \
    --transport udp || true
if [ -s "$out/.data.bin.punchline-part" ]; then
    share_transfer resume - - "$rz" "$src/data.bin" "$out" 'direct-udp|direct-tcp|relay-udp' &&
        share_check_resumed resume || true
fi

chat_log "--- SIGTERM of the receiver mid-way"
out="$CHAT_WORK/out-term"
mkdir -p "$out"
if share_start_recv term - "$rz" "$out"; then
    PUNCHLINE_SHARE_TEST_RATE=4000000 share_start_send term - "$rz" "$src/data.bin"
    deadline=$((SECONDS + 30))
    while [ "$(share_part_size "$out" data.bin)" -lt $((size / 4)) ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.05
    done
    pkill -TERM -P "${CHAT_PID[term-recv]}" punchline-share || true
    # the sender is told at once (pl_conn_close), not after a path timeout
    if ! share_wait term 5; then
        chat_fail "term: sender still running 5 s after the receiver was stopped"
    elif [ "${CHAT_RC[term-recv]}" != 130 ] || [ "${CHAT_RC[term-send]}" != 1 ]; then
        chat_fail "term: exit status recv=${CHAT_RC[term-recv]} send=${CHAT_RC[term-send]} (want 130, 1)"
    elif ! grep -q 'bytes kept in .*/.data.bin.punchline-part' "$CHAT_WORK/term-recv.err"; then
        chat_fail "term: the receiver did not say what it kept"
    else
        chat_pass "term: receiver exits 130 keeping $(share_part_size "$out" data.bin) bytes; sender: $(grep -m1 'failed' "$CHAT_WORK/term-send.err")"
    fi
else
    chat_fail "term: receiver did not register"
fi

chat_log "--- a part file that is not a prefix of the file"
out="$CHAT_WORK/out-differs"
mkdir -p "$out"
head -c 100000 /dev/urandom >"$out/.data.bin.punchline-part"
share_transfer differs - - "$rz" "$src/data.bin" "$out" 'direct-udp|direct-tcp|relay-udp' || true
if grep -q 'differs from this file: starting over' "$CHAT_WORK/differs-send.err" &&
    grep -q 'differs from the partial one here: starting over' "$CHAT_WORK/differs-recv.err"; then
    chat_pass "differs: both sides saw the part file was not a prefix and started over"
else
    chat_fail "differs: no 'starting over' on both sides"
fi

chat_log "--- the source file is written to while it is sent"
out="$CHAT_WORK/out-changed"
mkdir -p "$out"
cp "$src/data.bin" "$src/changing.bin"
if share_start_recv changed - "$rz" "$out"; then
    PUNCHLINE_SHARE_TEST_RATE=4000000 share_start_send changed - "$rz" "$src/changing.bin"
    chat_wait_grep changed-recv err '^offer ' 20 || true
    sleep 0.5
    touch "$src/changing.bin"
    if ! share_wait_failed changed 30; then
        :
    elif ! grep -q 'changing.bin changed while it was being sent' "$CHAT_WORK/changed-send.err"; then
        chat_fail "changed: the sender did not say the file changed"
    elif [ -e "$out/changing.bin" ]; then
        chat_fail "changed: the receiver stored the file"
    else
        chat_pass "changed: $(grep -m1 'changed while' "$CHAT_WORK/changed-send.err"); both exit 1"
    fi
else
    chat_fail "changed: receiver did not register"
fi

chat_exit
