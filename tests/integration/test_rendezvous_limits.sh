#!/bin/bash
# tests/integration/test_rendezvous_limits.sh BIN_DIR - resource limits of
# punchline-rendezvous as a process (docs/SECURITY.md, "Limits and defaults"):
#  1. accept() failing with EMFILE (open-file limit 64 via prlimit, --max-conns
#     above it) does not make the server spin: little CPU over 3 s while 200
#     connections wait, UDP (STUN) is still answered, and new connections are
#     accepted again once the others close;
#  2. memory stays bounded under a mixed flood (registrations past
#     --max-peers, connect-request floods, keepalives never read, slowloris,
#     UDP garbage; punchline-test-flood mixed): peak RSS under a stated bound,
#     and a second round of the same flood adds (almost) nothing: no leak.
# Loopback only, every process it starts is stopped on exit; ~15 s.
set -u
BIN=${1:?usage: $0 BIN_DIR}
RZ=$BIN/punchline-rendezvous
FLOOD=$BIN/punchline-test-flood
for b in "$RZ" "$FLOOD"; do
    [ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
command -v prlimit >/dev/null || { echo "SKIP: prlimit (util-linux) missing"; exit 77; }

TMP=$(mktemp -d /tmp/pl-rz-limits.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

RZ_PID="" RZ_ADDR="" LOG=""
fail() {
    echo "FAIL: $*"
    [ -n "$LOG" ] && [ -f "$LOG" ] && { echo "--- $LOG (last lines)"; tail -20 "$LOG"; }
    exit 1
}

# The sanitizer build holds freed memory in a quarantine (256 MiB by default)
# and keeps shadow memory: smaller quarantine, larger bounds.
ASAN=0
if ldd "$RZ" 2>/dev/null | grep -q libasan; then
    ASAN=1
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8:thread_local_quarantine_size_kb=64"
fi

# start_rz LOGNAME [prlimit args --] ARGS...: start the server on a free
# loopback port; sets RZ_PID, RZ_ADDR, LOG.
start_rz() {
    LOG=$TMP/$1.log
    shift
    "$@" --listen 127.0.0.1:0 2>"$LOG" &
    RZ_PID=$!
    PIDS+=("$RZ_PID")
    local i
    for i in $(seq 100); do
        RZ_ADDR=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\) .*/\1/p' "$LOG")
        [ -n "$RZ_ADDR" ] && return 0
        kill -0 "$RZ_PID" 2>/dev/null || fail "the server did not start"
        sleep 0.05
    done
    fail "no 'listening on' line"
}

# Stop the server; its log must hold no sanitizer report (a leak shows at exit).
stop_rz() {
    kill "$RZ_PID" 2>/dev/null
    wait "$RZ_PID" 2>/dev/null
    if grep -qE 'LeakSanitizer|AddressSanitizer|runtime error' "$LOG"; then
        cat "$LOG"
        fail "sanitizer report in the server's log"
    fi
}

# CPU time of a process in clock ticks (utime + stime, /proc/PID/stat).
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# VmHWM / VmRSS of a process in KiB.
mem_kb() {
    awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# ---- 1. EMFILE ---------------------------------------------------------
HZ=$(getconf CLK_TCK)
start_rz emfile prlimit --nofile=64:64 -- "$RZ" --max-conns 1000 --per-ip-pending 1000 \
    --per-ip-rate 100000 --register-timeout 60 --log-level warn
"$FLOOD" hold "$RZ_ADDR" 200 4500 >"$TMP/hold.out" 2>&1 &
HOLD=$!
PIDS+=("$HOLD")
sleep 0.7
grep -q 'pausing accepts' "$LOG" || fail "the server never ran out of descriptors (no 'pausing accepts')"
t1=$(cpu_ticks "$RZ_PID")
"$FLOOD" stun "$RZ_ADDR" 2000 || fail "STUN not answered while accepts are paused"
sleep 3
t2=$(cpu_ticks "$RZ_PID")
used=$((t2 - t1))
pauses=$(grep -c 'pausing accepts' "$LOG")
echo "EMFILE: server CPU over 3 s with 200 connections waiting at 64 descriptors: $used ticks" \
     "(HZ=$HZ); 'pausing accepts' logged $pauses times"
# a spinning accept loop would take every tick (3 * HZ); allow 10%
[ "$used" -le $((3 * HZ / 10)) ] || fail "busy loop on EMFILE: $used ticks in 3 s"
wait "$HOLD" || fail "hold failed"
"$FLOOD" hello "$RZ_ADDR" 5000 || fail "accepts did not resume after the connections closed"
kill -0 "$RZ_PID" 2>/dev/null || fail "the server died"
stop_rz
echo "EMFILE: accepts resumed, a new connection got its ServerHello"

# ---- 2. memory under a mixed flood -------------------------------------
# --max-peers 200: registrations past it get SERVER_FULL; the flood's
# connect requests fill the relay table (1000) with sessions nobody uses, of
# which those older than --relay-unused 2 give way to the honest pair; the
# default register timeout (10 s) keeps every slowloris connection for the
# whole run.
start_rz flood "$RZ" --max-peers 200 --relay-unused 2 --log-level error
rss0=$(mem_kb "$RZ_PID" VmRSS)
"$FLOOD" mixed "$RZ_ADDR" 3000 || fail "round 1: the honest peer was not served"
hwm1=$(mem_kb "$RZ_PID" VmHWM)
sleep 0.5
"$FLOOD" mixed "$RZ_ADDR" 3000 || fail "round 2: the honest peer was not served"
hwm2=$(mem_kb "$RZ_PID" VmHWM)
rss2=$(mem_kb "$RZ_PID" VmRSS)
kill -0 "$RZ_PID" 2>/dev/null || fail "the server died"
kill -USR1 "$RZ_PID"
sleep 0.2
grep 'stats' "$LOG" | sed 's/^/  /'
stop_rz
# Stated bounds (docs/SECURITY.md): 32 MiB peak (release; 160 MiB under
# ASan+UBSan), and at most 4 MiB (16 MiB) more after the second round.
bound=$((32 * 1024)) growth=$((4 * 1024))
[ "$ASAN" = 1 ] && bound=$((160 * 1024)) growth=$((16 * 1024))
echo "flood: RSS at start ${rss0} KiB, peak after round 1 ${hwm1} KiB, after round 2 ${hwm2} KiB" \
     "(now ${rss2} KiB); bound ${bound} KiB, growth bound ${growth} KiB"
[ "$hwm2" -le "$bound" ] || fail "peak RSS ${hwm2} KiB above ${bound} KiB"
[ $((hwm2 - hwm1)) -le "$growth" ] || fail "RSS grew by $((hwm2 - hwm1)) KiB in round 2: a leak?"
echo "PASS: no busy loop on EMFILE, memory bounded under the flood"
