# shellcheck shell=bash
# tests/integration/chat_common.sh - shared harness for the punchline-chat
# end-to-end tests (tests/integration/test_chat_loopback.sh and
# tests/natlab/test_chat_*.sh).
#
# Every process is started through a "where" argument: "-" runs it in the
# current network namespace, anything else is a NAT-lab node name (run with
# `ip netns exec`, see tests/natlab/lib.sh). Every wait is bounded, every
# process is wrapped in `timeout` as a last resort, and chat_finish prints all
# logs when anything failed.
#
# Usage (see the tests):
#   trap chat_finish EXIT; trap 'exit 130' INT   # (and TERM, HUP, PIPE)
#   chat_setup "$1"                         # binary dir; sets CHAT_WORK
#   chat_start_rendezvous - 127.0.0.1 "$port"
#   chat_conversation 127.0.0.1:"$port" - - 127.0.0.1 127.0.0.1
#   chat_exit                               # exit 0 iff no check failed
#
# Several conversations in one script: chat_talk takes the peer names, which
# are also the roles (log files, pids), so give every conversation its own
# names (e.g. a1-alice/a1-bob, then a2-alice/a2-bob) and they can share one
# rendezvous and one work directory.
#
# Environment: CHAT_TRANSPORT is passed to the caller's --transport (default
# udp); CHAT_PATH is the path regex the connected lines must show (default
# direct-udp); CHAT_AFTER_REGISTER runs (eval) once the callee registered.

# Bounds (seconds). Generous enough for ASan builds on 2 slow cores.
CHAT_T_REGISTER=${CHAT_T_REGISTER:-10} # bob's "registered" line
CHAT_T_CONNECT=${CHAT_T_CONNECT:-20}   # both "connected" lines (also --timeout)
CHAT_T_LINES=${CHAT_T_LINES:-10}       # all messages delivered
CHAT_T_EXIT=${CHAT_T_EXIT:-10}         # exit after stdin EOF
CHAT_T_HARD=${CHAT_T_HARD:-90}         # `timeout` wrapped around every process

CHAT_BIN_DIR=""
CHAT_WORK=""
CHAT_FAILURES=0
CHAT_PIDS=()               # every background pid we started (for cleanup)
declare -gA CHAT_PID=()    # role -> pid
declare -gA CHAT_FD=()     # role -> fd of the stdin FIFO held open by us
declare -gA CHAT_RC=()     # role -> exit status once reaped

chat_log() { printf '%s\n' "$*"; }
chat_pass() { printf 'PASS: %s\n' "$*"; }
chat_fail() {
    printf 'FAIL: %s\n' "$*"
    CHAT_FAILURES=$((CHAT_FAILURES + 1))
}

# chat_setup BINDIR: check the binaries and make a work directory.
chat_setup() {
    CHAT_BIN_DIR=${1:-}
    if [ -z "$CHAT_BIN_DIR" ]; then
        echo "usage: $0 BINARY_DIR (containing punchline-rendezvous and punchline-chat)" >&2
        exit 2
    fi
    CHAT_BIN_DIR=$(cd "$CHAT_BIN_DIR" && pwd)
    local b
    for b in punchline-rendezvous punchline-chat; do
        if [ ! -x "$CHAT_BIN_DIR/$b" ]; then
            echo "ERROR: $CHAT_BIN_DIR/$b not found or not executable" >&2
            exit 2
        fi
    done
    CHAT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/punchline-test.XXXXXX")
    # Identity keys of chats started without --identity land here, never in
    # the invoking user's home.
    export XDG_CONFIG_HOME="$CHAT_WORK/config"
}

# _chat_prefix WHERE: sets the array _pre to the command prefix for WHERE.
_chat_prefix() {
    _pre=()
    if [ "$1" != - ]; then
        _pre=(ip netns exec "$(natlab_ns "$1")")
    fi
}

# _chat_close_fds: close every FIFO fd we hold (run in children, so a chat
# never holds the write end of its own stdin and EOF really reaches it).
_chat_close_fds() {
    local fd
    for fd in "${CHAT_FD[@]}"; do
        eval "exec ${fd}>&-"
    done
}

# chat_spawn WHERE ROLE STDIN CMD...: start CMD in the background with
# stdout/stderr in $CHAT_WORK/ROLE.out/.err, wrapped in `timeout`. The pid is
# the timeout process (it forwards signals and returns CMD's status).
chat_spawn() {
    local where=$1 role=$2 stdin=$3 _pre
    shift 3
    _chat_prefix "$where"
    (
        _chat_close_fds
        exec "${_pre[@]}" timeout -k 2 "$CHAT_T_HARD" "$@"
    ) <"$stdin" >"$CHAT_WORK/$role.out" 2>"$CHAT_WORK/$role.err" &
    CHAT_PID[$role]=$!
    CHAT_PIDS+=("$!")
}

_chat_alive() { kill -0 "${CHAT_PID[$1]}" 2>/dev/null; }

# _chat_ss WHERE PORT: does anything listen on PORT (tcp or udp) in WHERE?
_chat_ss() {
    local _pre
    _chat_prefix "$1"
    [ -n "$("${_pre[@]}" ss -Htuln "sport = :$2" 2>/dev/null)" ]
}

# chat_start_rendezvous WHERE IP PORT [ROLE [OPTIONS...]]: start punchline-rendezvous and
# wait until the port is bound. Returns 0 ready, 1 it exited (could not bind;
# its status is in CHAT_RC[ROLE]), 2 the port never showed up.
chat_start_rendezvous() {
    local where=$1 ip=$2 port=$3 role=${4:-rendezvous} i
    shift $(($# < 4 ? $# : 4)) # the rest: extra server options
    chat_spawn "$where" "$role" /dev/null "$CHAT_BIN_DIR/punchline-rendezvous" \
        --listen "$ip:$port" --log-level debug "$@"
    for i in $(seq 100); do
        if ! _chat_alive "$role"; then
            chat_reap "$role"
            return 1
        fi
        # bound, and still alive a moment later (a bind failure exits at once)
        if _chat_ss "$where" "$port"; then
            sleep 0.1
            _chat_alive "$role" && return 0
        fi
        sleep 0.1
    done
    return 2
}

# chat_start_rendezvous_any_port IP: start punchline-rendezvous (role
# "rendezvous") on IP and a random free port in 20000-60000, trying another
# port when it cannot bind (up to 8 attempts; failed attempts' logs are kept
# as rendezvous-attemptN.err). Sets CHAT_RZ_PORT; returns 1 if none worked.
chat_start_rendezvous_any_port() {
    local ip=$1 attempt p rc
    CHAT_RZ_PORT=""
    for attempt in 1 2 3 4 5 6 7 8; do
        p=$(shuf -i 20000-60000 -n 1)
        if _chat_ss - "$p"; then continue; fi
        rc=0
        chat_start_rendezvous - "$ip" "$p" || rc=$?
        if [ "$rc" -eq 0 ]; then
            CHAT_RZ_PORT=$p
            return 0
        fi
        chat_log "rendezvous on port $p failed (attempt $attempt, rc=$rc), retrying"
        chat_stop rendezvous || true
        mv "$CHAT_WORK/rendezvous.err" "$CHAT_WORK/rendezvous-attempt$attempt.err"
        unset 'CHAT_RC[rendezvous]'
    done
    return 1
}

# chat_start_chat WHERE ROLE ARGS...: start punchline-chat with its stdin on a
# FIFO whose write end we keep open in CHAT_FD[ROLE].
chat_start_chat() {
    local where=$1 role=$2 fifo fd
    shift 2
    fifo="$CHAT_WORK/$role.in"
    mkfifo "$fifo"
    # O_RDWR on a FIFO never blocks, and keeps a writer alive until we close it.
    exec {fd}<>"$fifo"
    CHAT_FD[$role]=$fd
    # Each role has its own identity key (kept across restarts of the role).
    local idargs=()
    [[ " $* " == *" --identity "* ]] || idargs=(--identity "$CHAT_WORK/$role.pem")
    chat_spawn "$where" "$role" "$fifo" "$CHAT_BIN_DIR/punchline-chat" "${idargs[@]}" "$@"
}

# chat_send ROLE TEXT: one line on ROLE's stdin.
chat_send() {
    printf '%s\n' "$2" >&"${CHAT_FD[$1]}"
}

# chat_close ROLE: close our end of ROLE's stdin FIFO -> EOF for the chat.
chat_close() {
    local fd=${CHAT_FD[$1]:-}
    [ -n "$fd" ] || return 0
    eval "exec ${fd}>&-"
    unset "CHAT_FD[$1]"
}

# chat_reap ROLE: collect ROLE's exit status into CHAT_RC[ROLE].
chat_reap() {
    local rc=0
    [ -z "${CHAT_RC[$1]:-}" ] || return 0
    wait "${CHAT_PID[$1]}" 2>/dev/null || rc=$?
    CHAT_RC[$1]=$rc
}

# chat_wait_exit ROLE SECONDS: 0 if ROLE exited in time (status in CHAT_RC).
chat_wait_exit() {
    local role=$1 deadline=$((SECONDS + $2))
    while _chat_alive "$role"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
    chat_reap "$role"
}

# chat_wait_grep ROLE FILE-SUFFIX ERE SECONDS: wait until $CHAT_WORK/ROLE.SUFFIX
# has a line matching ERE. Fails early if ROLE exited.
chat_wait_grep() {
    local role=$1 file="$CHAT_WORK/$1.$2" re=$3 deadline=$((SECONDS + $4))
    while ! grep -Eq -- "$re" "$file" 2>/dev/null; do
        if ! _chat_alive "$role"; then
            grep -Eq -- "$re" "$file" 2>/dev/null && return 0
            return 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# chat_wait_lines ROLE N SECONDS: wait until ROLE's stdout has N lines.
chat_wait_lines() {
    local role=$1 n=$2 deadline=$(($3 + SECONDS))
    while [ "$(wc -l <"$CHAT_WORK/$role.out")" -lt "$n" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# chat_check_connected ROLE PEER IP: ROLE's stderr has exactly one
# "connected ..." line, matching the contract, with path=$CHAT_PATH (default
# direct-udp) and a remote address IP:<port> (IP may list alternatives as
# "A|B", e.g. a direct address or the rendezvous for a relay path).
chat_check_connected() {
    local role=$1 peer=$2 ip=$3 err="$CHAT_WORK/$1.err" n line re remote
    local path=${CHAT_PATH:-direct-udp}
    n=$(grep -c '^connected ' "$err" || true)
    if [ "$n" -ne 1 ]; then
        chat_fail "$role: expected exactly one 'connected' line on stderr, got $n"
        return 1
    fi
    line=$(grep '^connected ' "$err")
    re="^connected peer=$peer path=($path) remote=([0-9.]+):([0-9]+) ms=[0-9]+ id=([a-z2-7]{52})\$"
    if ! [[ $line =~ $re ]]; then
        chat_fail "$role: bad connected line: '$line' (want peer=$peer path=$path remote=$ip:PORT ms=N id=ID)"
        return 1
    fi
    # The id verified in the handshake is the one the peer printed at start.
    local gotid=${BASH_REMATCH[4]} peerid
    peerid=$(sed -n 's/^identity id=\([a-z2-7]*\) .*/\1/p' "$CHAT_WORK/$peer.err" 2>/dev/null | head -n1)
    if [ -f "$CHAT_WORK/$peer.err" ] && [ -z "$peerid" ]; then
        chat_fail "$role: $peer printed no 'identity id=' line to compare the verified id with"
        return 1
    fi
    if [ -n "$peerid" ] && [ "$peerid" != "$gotid" ]; then
        chat_fail "$role: verified peer id $gotid, but $peer printed identity $peerid"
        return 1
    fi
    local rip=${BASH_REMATCH[2]} rport=${BASH_REMATCH[3]}
    remote="$rip:$rport"
    if ! [[ $rip =~ ^($ip)$ ]] || [ "$rport" -lt 1 ] || [ "$rport" -gt 65535 ]; then
        chat_fail "$role: connected to $remote, expected $ip:PORT"
        return 1
    fi
    chat_pass "$role: $line"
}

# chat_check_output ROLE EXPECTED_FILE: ROLE's stdout is exactly that.
chat_check_output() {
    if diff -u "$2" "$CHAT_WORK/$1.out" >"$CHAT_WORK/$1.diff" 2>&1; then
        chat_pass "$1 received all $(wc -l <"$2") lines in order"
    else
        chat_fail "$1: stdout differs from what was sent:"
        sed 's/^/    /' "$CHAT_WORK/$1.diff"
    fi
}

# chat_conversation RZ_ADDR BOB_WHERE ALICE_WHERE ALICE_SEES BOB_SEES
# The classic scenario: bob waits, alice calls him (chat_talk with the names
# alice and bob).
chat_conversation() {
    chat_talk "$1" "$3" alice "$4" "$2" bob "$5"
}

# chat_talk RZ_ADDR CALLER_WHERE CALLER CALLER_SEES CALLEE_WHERE CALLEE CALLEE_SEES
# The full scenario, with the rendezvous already running at RZ_ADDR. CALLER
# and CALLEE are the peer names and the roles (log files $CHAT_WORK/NAME.*):
#  the callee registers and waits, the caller connects by name (with
#  --transport $CHAT_TRANSPORT); both print one connected line (the caller's
#  remote IP must be CALLER_SEES, the callee's CALLEE_SEES, the path
#  $CHAT_PATH); 5 numbered lines each way, interleaved, arrive in order as
#  "<name>: <text>"; the caller closes stdin first and must keep running and
#  still receive the callee's last line; then the callee closes; both exit 0.
chat_talk() {
    local rz=$1 caller_where=$2 caller=$3 caller_sees=$4 callee_where=$5 callee=$6 callee_sees=$7 i
    local to_callee="$CHAT_WORK/expect.$callee" to_caller="$CHAT_WORK/expect.$caller"
    : >"$to_callee"
    : >"$to_caller"

    local extra=() # CHAT_ARGS: more options for both chats (space-separated)
    read -ra extra <<<"${CHAT_ARGS:-}"
    chat_start_chat "$callee_where" "$callee" --server "$rz" --name "$callee" --timeout "$CHAT_T_CONNECT" \
        "${extra[@]}"
    if ! chat_wait_grep "$callee" err registered "$CHAT_T_REGISTER"; then
        chat_fail "$callee did not print 'registered' within ${CHAT_T_REGISTER}s"
        return 1
    fi
    chat_pass "$callee registered"
    # CHAT_AFTER_REGISTER: a command to run now (e.g. make the network lossy
    # once the callee is registered; tests/natlab/test_lossy.sh)
    [ -z "${CHAT_AFTER_REGISTER:-}" ] || eval "$CHAT_AFTER_REGISTER"
    chat_start_chat "$caller_where" "$caller" --server "$rz" --name "$caller" --peer "$callee" \
        --transport "${CHAT_TRANSPORT:-udp}" --timeout "$CHAT_T_CONNECT" "${extra[@]}"

    local ok=1
    chat_wait_grep "$caller" err '^connected ' "$CHAT_T_CONNECT" || { chat_fail "$caller not connected within ${CHAT_T_CONNECT}s"; ok=0; }
    chat_wait_grep "$callee" err '^connected ' "$CHAT_T_CONNECT" || { chat_fail "$callee not connected within ${CHAT_T_CONNECT}s"; ok=0; }
    [ "$ok" = 1 ] || return 1
    chat_check_connected "$caller" "$callee" "$caller_sees" || ok=0
    chat_check_connected "$callee" "$caller" "$callee_sees" || ok=0

    # Interleaved conversation; text has ": ", spaces and UTF-8 on purpose.
    for i in 1 2 3 4 5; do
        chat_send "$caller" "line $i from $caller: hello, $callee!"
        printf '%s: %s\n' "$caller" "line $i from $caller: hello, $callee!" >>"$to_callee"
        sleep 0.05
        chat_send "$callee" "line $i from $callee: grüße, $caller"
        printf '%s: %s\n' "$callee" "line $i from $callee: grüße, $caller" >>"$to_caller"
        sleep 0.05
    done
    chat_wait_lines "$callee" 5 "$CHAT_T_LINES" || chat_fail "$callee got fewer than 5 lines within ${CHAT_T_LINES}s"
    chat_wait_lines "$caller" 5 "$CHAT_T_LINES" || chat_fail "$caller got fewer than 5 lines within ${CHAT_T_LINES}s"

    # Half close: the caller is done sending but must keep receiving.
    chat_close "$caller"
    sleep 0.5
    if _chat_alive "$caller"; then
        chat_pass "$caller keeps running after its stdin EOF while $callee is still sending"
    else
        chat_fail "$caller exited right after its stdin EOF although $callee had not finished"
    fi
    chat_send "$callee" "last words from $callee"
    printf '%s: %s\n' "$callee" "last words from $callee" >>"$to_caller"
    chat_wait_lines "$caller" 6 "$CHAT_T_LINES" || chat_fail "$caller did not get $callee's line sent after its EOF"
    chat_close "$callee"

    local role
    for role in "$caller" "$callee"; do
        if ! chat_wait_exit "$role" "$CHAT_T_EXIT"; then
            chat_fail "$role still running ${CHAT_T_EXIT}s after both stdins were closed"
        elif [ "${CHAT_RC[$role]}" -ne 0 ]; then
            chat_fail "$role exited with status ${CHAT_RC[$role]} (want 0)"
        else
            chat_pass "$role exited 0 after EOF"
        fi
    done
    chat_check_output "$callee" "$to_callee"
    chat_check_output "$caller" "$to_caller"
}

# chat_stop ROLE: SIGTERM ROLE and reap it (bounded).
chat_stop() {
    _chat_alive "$1" && kill -TERM "${CHAT_PID[$1]}" 2>/dev/null
    chat_wait_exit "$1" 5
}

# chat_dump_logs: every log file, with a header.
chat_dump_logs() {
    local f
    [ -n "$CHAT_WORK" ] && [ -d "$CHAT_WORK" ] || return 0
    for f in "$CHAT_WORK"/*.err "$CHAT_WORK"/*.out; do
        [ -e "$f" ] || continue
        printf -- '----- %s (%s lines) -----\n' "$(basename "$f")" "$(wc -l <"$f")"
        cat "$f"
    done
    printf -- '----- end of logs -----\n'
}

# chat_finish: EXIT trap. On failure print logs (and the lab state when a lab
# exists), then kill whatever is left and remove the work directory. Set
# PL_KEEP_LOGS=1 to keep it.
chat_finish() {
    local rc=$? pid fd
    trap - EXIT INT TERM HUP PIPE
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ "${CHAT_NO_DUMP:-0}" != 1 ]; then
        chat_dump_logs
        if declare -F natlab_dump >/dev/null && [ -n "${NATLAB_PREFIX:-}" ]; then
            natlab_dump || true
        fi
    fi
    for fd in "${CHAT_FD[@]}"; do eval "exec ${fd}>&-" || true; done
    for pid in "${CHAT_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    if declare -F natlab_cleanup >/dev/null; then
        natlab_cleanup
    fi
    for pid in "${CHAT_PIDS[@]}"; do
        # bounded: timeout -k escalates to SIGKILL on its own
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$CHAT_WORK" ]; then
        if [ "${PL_KEEP_LOGS:-0}" = 1 ]; then
            echo "logs kept in $CHAT_WORK"
        else
            rm -rf "$CHAT_WORK"
        fi
    fi
    exit "$rc"
}

# chat_exit: final verdict.
chat_exit() {
    if [ "$CHAT_FAILURES" -ne 0 ]; then
        echo "RESULT: $CHAT_FAILURES check(s) failed"
        exit 1
    fi
    echo "RESULT: all checks passed"
    exit 0
}
